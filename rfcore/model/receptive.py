"""Receptive fields: which input pixels a cell of a feature map can see.

A cell of a map with *jump* ``j`` (pixels between neighbouring cells) that sees ``r`` pixels, fed through
a ``k x k`` convolution with stride ``s`` and dilation ``d``, gives a cell that sees

    r' = r + (k - 1) d j,        j' = j s,

from a single pixel, ``r = j = 1`` (Araujo et al. 2019, "Computing receptive fields of convolutional
networks"). Where branches meet a cell sees the largest field of its inputs; nearest-neighbour
up-sampling keeps the field while the jump shrinks. :func:`stack_receptive_field` applies the recurrence
to a list of layers; :func:`traced_receptive_fields` to the operations a function really performs
(``torch.fx.experimental.proxy_tensor.make_fx``), so the fields follow the code, branches and all;
:func:`level_receptive_fields` does it stage by stage for a RetinaFace. A deformable convolution counts as
its regular ``k x k`` grid, and the result says ``deformable=True``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.fx.experimental.proxy_tensor import make_fx
from torch.utils._pytree import tree_leaves

from rfcore.model.retinaface import RetinaFace


@dataclass(frozen=True)
class ReceptiveField:
    """The field of view of one cell of a feature map.

    Attributes:
        size: Side of the square of input pixels the cell depends on.
        jump: Input pixels between neighbouring cells (the stride so far).
        deformable: A deformable convolution lies on the way, so offsets can
            move the taps beyond ``size``.
    """

    size: int
    jump: int
    deformable: bool = False

    def after(self, kernel: int, stride: int = 1, dilation: int = 1) -> ReceptiveField:
        """The field after a ``kernel x kernel`` convolution or pooling with ``stride`` and ``dilation``."""
        return replace(self, size=self.size + (kernel - 1) * dilation * self.jump, jump=self.jump * stride)


PIXEL = ReceptiveField(size=1, jump=1)
"""The field of an input pixel."""


def stack_receptive_field(layers: Iterable[tuple[int, int, int]], start: ReceptiveField = PIXEL) -> ReceptiveField:
    """The field after a chain of layers.

    Args:
        layers: ``(kernel, stride, dilation)`` of each layer, input side first.
        start: Field of the chain's input.

    Returns:
        The field of a cell of the chain's output.

    Raises:
        ValueError: If a kernel, stride or dilation is not a positive integer.
    """
    field = start
    for index, layer in enumerate(layers):
        if len(layer) != 3 or any(not isinstance(v, int) or v < 1 for v in layer):
            raise ValueError(f"layer {index}: expected positive integers (kernel, stride, dilation), got {layer}")
        field = field.after(*layer)
    return field


# aten operations that act on each cell separately, or join same-sized maps cell by cell
_POINTWISE = {
    "aten.add.Tensor", "aten.add_.Tensor", "aten.mul.Tensor", "aten.mul_.Tensor", "aten.cat.default",
    "aten.relu.default", "aten.relu_.default", "aten.leaky_relu.default", "aten.leaky_relu_.default",
    "aten.native_batch_norm.default", "aten._native_batch_norm_legit_no_training.default",
    "aten.clone.default", "aten.detach.default", "aten.alias.default", "aten.sigmoid.default",
}


@torch.no_grad()
def traced_receptive_fields(
    fn: Callable, inputs: Sequence[torch.Tensor], fields: Sequence[ReceptiveField]
) -> list[ReceptiveField]:
    """Receptive field of every tensor ``fn(*inputs)`` returns, from the operations it performs.

    Args:
        fn: A function of tensors (a module, or a lambda around one); it may
            return a tensor or a list or tuple of them.
        inputs: Example inputs ``(N, C, H, W)`` (or lists of them); sizes
            must let every up-sampling be by a whole factor. Modules must be
            in eval mode.
        fields: Field of a cell of each input, nested like ``inputs``.

    Returns:
        One field per returned tensor, in order.

    Raises:
        ValueError: If ``fields`` does not match ``inputs``, or ``fn`` performs
            an operation whose effect on the field is not known here (the
            message names it).
    """
    if len(tree_leaves(list(inputs))) != len(tree_leaves(list(fields))):
        raise ValueError(f"inputs and fields differ in number: {len(inputs)} inputs, {len(fields)} fields")
    graph = make_fx(lambda *xs: fn(*xs))(*inputs).graph
    known: dict[torch.fx.Node, ReceptiveField] = {}
    placeholders = [node for node in graph.nodes if node.op == "placeholder"]
    known.update(zip(placeholders, tree_leaves(list(fields))))  # one placeholder per tensor, lists flattened
    outputs = []
    for node in graph.nodes:
        if node.op == "call_function":
            field = _field_after(node, known)
            if field is not None:
                known[node] = field
        elif node.op == "output":
            outputs = [known[arg] for arg in _flat_nodes(node.args)]
    return outputs


def _field_after(node: torch.fx.Node, known: dict) -> ReceptiveField | None:
    """The field of ``node``'s output, or ``None`` if none of its inputs has one (a constant)."""
    inputs = [known[arg] for arg in _flat_nodes(node.args) if arg in known]
    if not inputs:
        return None
    name = str(node.target)
    if name == "aten.convolution.default":
        _, weight, _, stride, _, dilation, transposed, *_ = node.args
        if transposed:
            raise ValueError(f"{node.name}: transposed convolution is not supported")
        return known[node.args[0]].after(_square(weight.meta["val"].shape[-2:], node), _square(stride, node),
                                         _square(dilation, node))
    if name == "torchvision.deform_conv2d.default":
        x, weight, offset, *_ = node.args
        stride_h, stride_w, _, _, dilation_h, dilation_w = node.args[5:11]
        field = known[x].after(_square(weight.meta["val"].shape[-2:], node), _square((stride_h, stride_w), node),
                               _square((dilation_h, dilation_w), node))
        offsets_see = known[offset].size if offset in known else 0
        return replace(field, size=max(field.size, offsets_see), deformable=True)
    if name == "aten.max_pool2d_with_indices.default":
        # (input, kernel, stride=kernel, padding=0, dilation=1, ...)
        args = [*node.args, *[[], 0, 1][len(node.args) - 2 :]]  # defaults for the arguments left out
        x, kernel, stride, _, dilation = args[:5]
        return known[x].after(_square(kernel, node), _square(stride or kernel, node), _square(dilation, node))
    if name == "aten.upsample_nearest2d.default":
        return _upsampled(node, known[node.args[0]])
    if name == "aten.native_batch_norm.default" and node.args[5]:
        raise ValueError(f"{node.name}: a batch norm in training mode mixes all cells; trace in eval mode")
    if name in _POINTWISE or node.target is operator.getitem:
        return _joined(inputs, node)
    raise ValueError(f"{node.name}: the receptive field after {name} is not known")


def _upsampled(node: torch.fx.Node, field: ReceptiveField) -> ReceptiveField:
    """Nearest up-sampling by a whole factor: same size, smaller jump."""
    height_in, height_out = node.args[0].meta["val"].shape[-2], node.meta["val"].shape[-2]
    width_in, width_out = node.args[0].meta["val"].shape[-1], node.meta["val"].shape[-1]
    if height_out % height_in or width_out % width_in or height_out * width_in != width_out * height_in:
        raise ValueError(
            f"{node.name}: up-sampling {height_in}x{width_in} to {height_out}x{width_out} is not by one whole "
            "factor; choose an input size divisible by the coarsest stride"
        )
    factor = height_out // height_in
    if field.jump % factor:
        raise ValueError(f"{node.name}: up-sampling by {factor} a map of jump {field.jump}")
    return replace(field, jump=field.jump // factor)


def _joined(inputs: list[ReceptiveField], node: torch.fx.Node) -> ReceptiveField:
    """Cells of maps with the same jump, joined: the union of what they see."""
    jumps = {field.jump for field in inputs}
    if len(jumps) > 1:
        raise ValueError(f"{node.name}: joins maps of different jumps {sorted(jumps)}")
    return ReceptiveField(max(f.size for f in inputs), jumps.pop(), any(f.deformable for f in inputs))


def _square(pair, node: torch.fx.Node) -> int:
    """One integer from a kernel, stride or dilation given as an int or an equal pair."""
    values = [int(v) for v in (pair if isinstance(pair, (list, tuple, torch.Size)) else [pair])]
    if len(set(values)) != 1:
        raise ValueError(f"{node.name}: only square kernels, strides and dilations are supported, got {values}")
    return values[0]


def _flat_nodes(args) -> list[torch.fx.Node]:
    """The fx nodes in a nest of lists and tuples, in order."""
    if isinstance(args, torch.fx.Node):
        return [args]
    if isinstance(args, (list, tuple)):
        return [node for arg in args for node in _flat_nodes(arg)]
    return []


def level_receptive_fields(model: RetinaFace, image_size: tuple[int, int] = (128, 128)) -> list[dict]:
    """Receptive field of a cell of every pyramid level, after each stage.

    The stages are traced one after the other, each starting from the fields
    the previous one produced: the backbone from single pixels, the FPN from
    the backbone maps, each context module from its pyramid level.

    Args:
        model: A RetinaFace (``RetinaFace.from_config``); its weights do not matter.
        image_size: ``(height, width)`` of the blank input traced; each side a
            multiple of the coarsest stride.

    Returns:
        One dict per level, finest first: ``level`` (``"P3"``), ``stride``,
        and the field side in pixels after ``backbone`` (``None`` for a level
        the FPN adds above the backbone), ``FPN`` and ``context``;
        ``deformable`` says whether a deformable convolution lies on the way.

    Raises:
        ValueError: If a side is not a multiple of the coarsest stride.
    """
    coarsest = model.strides[-1]
    if any(side % coarsest for side in image_size):
        raise ValueError(f"image_size {tuple(image_size)}: each side must be a multiple of {coarsest}")
    parameter = next(model.parameters())
    image = torch.zeros(1, 3, *image_size, dtype=parameter.dtype, device=parameter.device)
    modes = {module: module.training for module in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            maps = model.body(image)[model.first_level :]
            pyramid = model.fpn(maps)
        body_fields = traced_receptive_fields(model.body, [image], [PIXEL])[model.first_level :]
        fpn_fields = traced_receptive_fields(model.fpn, [maps], [body_fields])
        context_fields = [
            traced_receptive_fields(getattr(model, f"ssh{k}"), [level], [field])[0]
            for k, (level, field) in enumerate(zip(pyramid, fpn_fields), start=1)
        ]
    finally:
        for module, training in modes.items():
            module.training = training
    body_sizes = [field.size for field in body_fields] + [None] * (len(model.strides) - len(body_fields))
    return [
        {"level": f"P{int(math.log2(stride))}", "stride": stride, "backbone": body, "FPN": fpn.size,
         "context": context.size, "deformable": context.deformable}
        for stride, body, fpn, context in zip(model.strides, body_sizes, fpn_fields, context_fields)
    ]


def layer_table(layers: Iterable[tuple[str, nn.Module]], images: torch.Tensor) -> list[dict]:
    """Output shape, jump, receptive field and parameters after each layer of a chain.

    Args:
        layers: ``(name, module)`` pairs in eval mode that, applied one after
            the other, make the network (such as a backbone's stages).
        images: ``(1, 3, H, W)`` example input.

    Returns:
        One dict per layer: ``layer``, ``output`` ``(C, H, W)``, ``stride``
        (the jump), ``receptive field`` (side in pixels) and ``parameters``.
    """
    x, field, rows = images, PIXEL, []
    for name, layer in layers:
        field = traced_receptive_fields(layer, [x], [field])[0]
        with torch.no_grad():
            x = layer(x)
        parameters = sum(p.numel() for p in layer.parameters())
        rows.append({"layer": name, "output": tuple(x.shape[1:]), "stride": field.jump,
                     "receptive field": field.size, "parameters": parameters})
    return rows
