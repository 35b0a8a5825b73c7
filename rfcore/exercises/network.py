"""Exercises of notebook 05: the receptive field of a stack of layers, where it is centred, and the FPN's merge.

Two exercises are variants: with the padding of each layer the recurrence also gives the centre of the first
output cell's field (Araujo et al. 2019), which says where a cell looks in the image; and the top-down merge with
bilinear up-sampling on half-pixel centres, as in the semantic branch of Panoptic FPN (Kirillov et al. 2019),
instead of the nearest neighbour.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from rfcore.exercises.check import Case, Verdict, run_check, seeded
from rfcore.model.fpn import FPN
from rfcore.model.receptive import stack_receptive_field


def reference_receptive_field(layers: list[tuple[int, int, int]]) -> tuple[int, int]:
    """:func:`rfcore.model.receptive.stack_receptive_field` as a ``(size, jump)`` pair."""
    field = stack_receptive_field(layers)
    return field.size, field.jump


def check_receptive_field(receptive_field) -> Verdict:
    """Check ``receptive_field(layers) -> (size, jump)`` for ``layers`` a list of ``(kernel, stride, dilation)``."""
    generator = seeded(5)
    kernels = torch.tensor([1, 3, 5, 7])[torch.randint(0, 4, (8,), generator=generator)]
    strides = torch.randint(1, 3, (8,), generator=generator)
    dilations = torch.randint(1, 3, (8,), generator=generator)
    random_stack = [(int(k), int(s), int(d)) for k, s, d in zip(kernels, strides, dilations)]
    mobilenet_start = [(3, 2, 1), (3, 1, 1), (1, 1, 1), (3, 2, 1), (1, 1, 1)]  # stem, then two depthwise + pointwise
    cases = [
        Case("no layer at all", ([],), "an input pixel sees itself: start from size 1 and jump 1"),
        Case("one 3x3 convolution", ([(3, 1, 1)],), "a k x k kernel sees k pixels"),
        Case("two 3x3 convolutions", ([(3, 1, 1), (3, 1, 1)],), "each 3x3 layer adds (3 - 1) = 2 pixels"),
        Case("a 1x1 convolution with stride 2", ([(1, 2, 1)],),
             "a 1x1 kernel adds nothing to the size, but its stride multiplies the jump"),
        Case("a 3x3 with stride 2, then a 3x3", ([(3, 2, 1), (3, 1, 1)],),
             "after a stride-2 layer neighbouring cells are 2 pixels apart, so the next 3x3 adds 2 * 2: multiply "
             "by the jump of the layer's input, the product of the strides before it, not by its own stride"),
        Case("a dilated 3x3", ([(3, 1, 2)],), "dilation d puts the taps d cells apart: the kernel spans (k - 1) d + 1"),
        Case("the start of MobileNet", (mobilenet_start,)),
        Case("eight random layers", (random_stack,)),
    ]
    return run_check("receptive_field", receptive_field, reference_receptive_field, cases)


def reference_top_down(coarse: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
    """What rfcore's :class:`~rfcore.model.fpn.FPN` adds before its 3x3 merge, read from the module itself.

    A two-level FPN whose 1x1 laterals and 3x3 merge are identities (and whose batch norms do nothing)
    returns ``lateral + upsample(coarse)`` on its finer level.
    """
    channels = lateral.shape[1]
    fpn = FPN((channels, channels), channels, negative_slope=None).eval()
    with torch.no_grad():
        for conv, bn in (fpn.output1, fpn.output2, fpn.merge1):
            conv.weight.zero_()
            centre = conv.weight.shape[-1] // 2
            conv.weight[range(channels), range(channels), centre, centre] = 1.0
            bn.running_var.fill_(1.0 - bn.eps)  # (x - 0) / sqrt(1 - eps + eps) * 1 + 0 = x
        return fpn([lateral, coarse])[0]


def map_drawer(seed: int):
    """``maps(coarse_size, fine_size, batch=1, channels=1) -> (coarse, lateral)``: random maps, drawn in turn from one seed."""
    generator = seeded(seed)

    def maps(coarse_size, fine_size, batch=1, channels=1):
        coarse = torch.randn(batch, channels, *coarse_size, generator=generator)
        return coarse, torch.randn(batch, channels, *fine_size, generator=generator)

    return maps


def check_top_down(top_down) -> Verdict:
    """Check ``top_down(coarse (N, C, h, w), lateral (N, C, H, W)) -> (N, C, H, W)``: lateral plus up-sampled coarse."""
    maps = map_drawer(9)

    cases = [
        Case("a 1x1 map onto 2x2", maps((1, 1), (2, 2)), "every finer cell gets the coarse value added"),
        Case("2x2 onto 4x4", maps((2, 2), (4, 4)),
             "nearest-neighbour: each coarse cell is copied to a 2x2 block (mode='nearest', not bilinear)"),
        Case("3x3 onto 5x5 (an odd input size)", maps((3, 3), (5, 5)),
             "a 5-cell map is not twice a 3-cell one: up-sample to exactly the lateral's size, "
             "size=lateral.shape[-2:], rather than by scale_factor=2"),
        Case("3x4 onto 5x8, two images, three channels", maps((3, 4), (5, 8), batch=2, channels=3)),
    ]
    return run_check("top_down", top_down, reference_top_down, cases)



def reference_receptive_field_start(layers: list[tuple[int, int, int, int]]) -> tuple[int, int, float]:
    """``(size, jump, start)`` of a cell after ``(kernel, stride, dilation, padding)`` layers, in closed form.

    With ``J_l`` the product of the strides before layer ``l`` [Araujo et al. 2019, Eqs. 2 and 4 with
    dilation]: ``size = 1 + sum_l (k_l - 1) d_l J_l``, ``jump = prod_l s_l`` and
    ``start = 0.5 + sum_l ((k_l - 1) d_l / 2 - p_l) J_l``, the x (or y) coordinate of the centre of output cell
    0's field, input pixel ``i`` covering ``[i, i + 1]``.
    """
    jumps = [math.prod(layer[1] for layer in layers[:index]) for index in range(len(layers))]
    size = 1 + sum((k - 1) * d * j for (k, _, d, _), j in zip(layers, jumps))
    start = 0.5 + sum(((k - 1) * d / 2 - p) * j for (k, _, d, p), j in zip(layers, jumps))
    return size, math.prod(layer[1] for layer in layers), float(start)


def check_receptive_field_start(receptive_field_start) -> Verdict:
    """Check ``receptive_field_start(layers) -> (size, jump, start)``, layers ``(kernel, stride, dilation, padding)``."""
    generator = seeded(17)
    kernels = torch.tensor([1, 3, 5, 7])[torch.randint(0, 4, (6,), generator=generator)]
    strides = torch.randint(1, 3, (6,), generator=generator)
    random_stack = [(int(k), int(s), 1, int(k) // 2) for k, s in zip(kernels, strides)]
    mobilenet_to_p3 = [(3, 2, 1, 1), (3, 1, 1, 1), (3, 2, 1, 1), (3, 1, 1, 1), (3, 2, 1, 1)]  # depthwise 3x3s
    cases = [
        Case("no layer at all", ([],), "an input pixel i covers [i, i + 1]: pixel 0 is centred at 0.5"),
        Case("a 3x3 convolution padded by 1", ([(3, 1, 1, 1)],),
             "output cell 0 reads input cells -1, 0 and 1: its field is centred on pixel 0, at 0.5"),
        Case("a 3x3 convolution without padding", ([(3, 1, 1, 0)],),
             "without padding cell 0 reads cells 0, 1, 2: the centre moves by ((k - 1) d / 2 - p) input jumps"),
        Case("a dilated 3x3, padded by 2", ([(3, 1, 2, 2)],), "dilation spreads the taps: the centre of the taps "
             "of cell 0 lies (k - 1) d / 2 cells after the first one, which sits p cells before 0"),
        Case("a 2x2 stride-2 pooling, then a 3x3 padded by 1", ([(2, 2, 1, 0), (3, 1, 1, 1)],),
             "a layer adds to the size and moves the start in units of its input's jump: multiply by the jump "
             "before the layer's own stride, then update the jump"),
        Case("stride 8 as in MobileNet's P3", (mobilenet_to_p3,),
             "compare the start with the anchor centre (0 + 0.5) * 8 of notebook 01"),
        Case("six random padded layers", (random_stack,)),
    ]
    return run_check("receptive_field_start", receptive_field_start, reference_receptive_field_start, cases)


def reference_top_down_bilinear(coarse: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
    """``lateral + up(coarse)`` with bilinear up-sampling to the lateral's size, half-pixel centres.

    Output cell ``x`` reads the coarse map at ``(x + 0.5) w / W - 0.5``, clamped to ``[0, w - 1]``
    (``F.interpolate(..., mode="bilinear", align_corners=False)``); the same in ``y``.
    """
    return lateral + F.interpolate(coarse, size=lateral.shape[-2:], mode="bilinear", align_corners=False)


def check_top_down_bilinear(top_down_bilinear) -> Verdict:
    """Check ``top_down_bilinear(coarse (N, C, h, w), lateral (N, C, H, W)) -> (N, C, H, W)``."""
    maps = map_drawer(27)

    cases = [
        Case("a row of 2 onto a row of 4", (torch.tensor([[[[0.0, 4.0]]]]), torch.zeros(1, 1, 1, 4)),
             "half-pixel centres: output x reads the input at (x + 0.5) * 2 / 4 - 0.5 = -0.25, 0.25, 0.75, 1.25, "
             "clamped to [0, 1], giving 0, 1, 3, 4 (align_corners=True would give 0, 4/3, 8/3, 4)"),
        Case("a 1x1 map onto 2x2", maps((1, 1), (2, 2)), "a single coarse value is added everywhere"),
        Case("2x2 onto 4x4", maps((2, 2), (4, 4)),
             "interpolate between the two nearest coarse cells in x and in y; the border cells clamp"),
        Case("3x3 onto 5x5 (an odd input size)", maps((3, 3), (5, 5)),
             "up-sample to exactly the lateral's size: the coordinate scale is w / W = 3 / 5, not 1 / 2"),
        Case("3x4 onto 5x8, two images, three channels", maps((3, 4), (5, 8), batch=2, channels=3)),
    ]
    return run_check("top_down_bilinear", top_down_bilinear, reference_top_down_bilinear, cases)
