"""Exercises of notebook 03: box and landmark targets relative to anchors, their decoding, and three variants.

The variants: the box as its distances to the anchor centre (the ``(l, t, r, b)`` of FCOS, Tian et al.
2019) instead of centre and log size, the Wing loss for landmarks (Feng et al. 2018) instead of smooth-L1, and
landmarks read from heat maps by a soft-argmax (integral regression, Sun et al. 2018) instead of from offsets.
"""

from __future__ import annotations

import torch

from rfcore.boxes import decode_landmarks, encode_boxes, encode_landmarks, xyxy_to_cxcywh
from rfcore.exercises.check import Case, Verdict, random_boxes, run_check, seeded

VARIANCES = (0.1, 0.2)
"""The variances of the public RetinaFace recipe; the cases also use others, to tell v_0 from v_1."""


def random_anchors(boxes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``(N, 4)`` anchors ``(cx, cy, w, h)`` near each box, as a matched anchor would be."""
    faces = xyxy_to_cxcywh(boxes)
    jitter = 1 + 0.3 * (torch.rand(boxes.shape, generator=generator) - 0.5)  # (N, 4) factors in [0.85, 1.15]
    return faces * jitter


def random_landmarks(boxes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``(N, 5, 2)`` points inside each box."""
    where = torch.rand(boxes.shape[0], 5, 2, generator=generator)
    return boxes[:, None, :2] + where * (boxes[:, None, 2:] - boxes[:, None, :2])


def check_encode_boxes(student_encode_boxes) -> Verdict:
    """Check ``encode_boxes(boxes (N, 4) xyxy, anchors (N, 4) cxcywh, variances) -> (N, 4)`` targets."""
    generator = seeded(4)
    boxes = random_boxes(6, generator)
    cases = [
        Case("a face equal to its anchor", (torch.tensor([[10.0, 20.0, 30.0, 60.0]]),
                                            torch.tensor([[20.0, 40.0, 20.0, 40.0]]), VARIANCES),
             "a face the size of its anchor and centred on it has target zero"),
        Case("a face shifted and twice as wide", (torch.tensor([[12.0, 20.0, 52.0, 60.0]]),
                                                   torch.tensor([[20.0, 40.0, 20.0, 40.0]]), VARIANCES),
             "t_x = (g_x - a_x) / (v_0 a_w): the centre offset in units of v_0 anchor widths; "
             "t_w = log(g_w / a_w) / v_1"),
        Case("unequal variances", (boxes, random_anchors(boxes, generator), (0.5, 0.25)),
             "v_0 scales the centre offsets, v_1 the log size ratios"),
        Case("six random faces", (boxes, random_anchors(boxes, generator), VARIANCES)),
    ]
    return run_check("encode_boxes", student_encode_boxes, encode_boxes, cases)


def landmark_cases(generator: torch.Generator) -> list[tuple]:
    """Arguments ``(landmarks (N, 5, 2), anchors (N, 4), variances)`` for the landmark exercises."""
    boxes = random_boxes(4, generator)
    anchor = torch.tensor([[50.0, 50.0, 20.0, 40.0]])
    return [
        (anchor[:, None, :2].expand(1, 5, 2).clone(), anchor, VARIANCES),
        (torch.tensor([[[40.0, 40.0], [60.0, 40.0], [50.0, 50.0], [42.0, 60.0], [58.0, 60.0]]]), anchor, VARIANCES),
        (random_landmarks(boxes, generator), random_anchors(boxes, generator), (0.5, 0.25)),
        (random_landmarks(boxes, generator), random_anchors(boxes, generator), VARIANCES),
    ]


LANDMARK_CASES = ("five points on the anchor centre", "a face on a 20 x 40 anchor", "unequal variances",
                  "four random faces")
LANDMARK_HINTS = ("a point on the anchor centre has target zero",
                  "x offsets divide by v_0 times the anchor width, y offsets by v_0 times its height; the result "
                  "is flat: (l_1x, l_1y, ..., l_5x, l_5y)",
                  "landmarks use v_0 only; v_1 is for the log of the box size", "")


def check_encode_landmarks(student_encode_landmarks) -> Verdict:
    """Check ``encode_landmarks(landmarks (N, 5, 2), anchors (N, 4), variances) -> (N, 10)`` targets."""
    args = landmark_cases(seeded(5))
    cases = [Case(name, a, hint) for name, a, hint in zip(LANDMARK_CASES, args, LANDMARK_HINTS)]
    return run_check("encode_landmarks", student_encode_landmarks, encode_landmarks, cases)


def check_decode_landmarks(student_decode_landmarks) -> Verdict:
    """Check ``decode_landmarks(targets (N, 10), anchors (N, 4), variances) -> (N, 5, 2)``: the round trip.

    The targets are rfcore's encodings of known landmarks, so a right answer gives those landmarks back.
    """
    args = landmark_cases(seeded(5))
    cases = [Case(f"round trip: {name}", (encode_landmarks(*a), a[1], a[2]),
                  "decoding undoes encoding: multiply by v_0 times the anchor size, then add the anchor centre")
             for name, a in zip(LANDMARK_CASES, args)]
    return run_check("decode_landmarks", student_decode_landmarks, decode_landmarks, cases)


def reference_encode_ltrb(boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Distances from the anchor centre to the four sides of the face, in anchor sizes [after Tian et al. 2019].

    Args:
        boxes: ``(N, 4)`` faces ``(x1, y1, x2, y2)``.
        anchors: ``(N, 4)`` anchors ``(cx, cy, w, h)``.

    Returns:
        ``(N, 4)`` ``(l, t, r, b) = ((a_x - x1) / a_w, (a_y - y1) / a_h, (x2 - a_x) / a_w, (y2 - a_y) / a_h)``.
    """
    centre, size = anchors[:, :2].repeat(1, 2), anchors[:, 2:].repeat(1, 2)  # (N, 4) each
    sign = torch.tensor([-1.0, -1.0, 1.0, 1.0])  # the left and top sides lie before the centre
    return sign * (boxes - centre) / size


def check_encode_ltrb(encode_ltrb) -> Verdict:
    """Check ``encode_ltrb(boxes (N, 4) xyxy, anchors (N, 4) cxcywh) -> (N, 4)`` ``(l, t, r, b)`` targets."""
    generator = seeded(14)
    boxes = random_boxes(5, generator)
    cases = [
        Case("a face equal to its anchor", (torch.tensor([[10.0, 20.0, 30.0, 60.0]]),
                                            torch.tensor([[20.0, 40.0, 20.0, 40.0]])),
             "each side lies half an anchor size from the centre: (0.5, 0.5, 0.5, 0.5)"),
        Case("a face shifted to the right", (torch.tensor([[14.0, 20.0, 34.0, 60.0]]),
                                              torch.tensor([[20.0, 40.0, 20.0, 40.0]])),
             "l = (a_x - x1) / a_w and r = (x2 - a_x) / a_w: both distances are positive while the centre is "
             "inside the face"),
        Case("a 20 x 40 anchor", (torch.tensor([[0.0, 0.0, 40.0, 40.0]]), torch.tensor([[20.0, 20.0, 20.0, 40.0]])),
             "x distances divide by the anchor's width, y distances by its height; order (l, t, r, b)"),
        Case("five random faces", (boxes, random_anchors(boxes, generator))),
    ]
    return run_check("encode_ltrb", encode_ltrb, reference_encode_ltrb, cases)


def reference_wing_loss(x: torch.Tensor, width: float, epsilon: float) -> torch.Tensor:
    """The Wing loss of errors ``x`` [Feng et al. 2018, Eq. 5], elementwise.

    ``w ln(1 + |x| / epsilon)`` for ``|x| < w``, else ``|x| - C`` with ``C = w - w ln(1 + w / epsilon)``,
    which joins the two pieces continuously at ``|x| = w``.
    """
    size = x.abs()
    join = width - width * torch.log1p(torch.tensor(width / epsilon, dtype=x.dtype))
    return torch.where(size < width, width * torch.log1p(size / epsilon), size - join)


WING_ERRORS = torch.tensor([-12.0, -10.0, -3.0, -0.5, 0.0, 0.5, 3.0, 9.9, 10.0, 25.0])
"""Errors on both sides of the paper's ``w = 10`` and at the join itself."""


def check_wing_loss(wing_loss) -> Verdict:
    """Check ``wing_loss(x, width, epsilon) -> x.shape``, the elementwise Wing loss of landmark errors ``x``."""
    generator = seeded(15)
    cases = [
        Case("the paper's w = 10, epsilon = 2 around the join", (WING_ERRORS, 10.0, 2.0),
             "w ln(1 + |x| / epsilon) below |x| = w, and |x| - C above it, with C = w - w ln(1 + w / epsilon)"),
        Case("w = 1, epsilon = 0.5 on the same errors", (WING_ERRORS, 1.0, 0.5),
             "use the absolute error |x|: the loss is symmetric"),
        Case("a (3, 10) batch of small errors", (torch.randn(3, 10, generator=generator), 10.0, 2.0),
             "work elementwise and keep the input's shape"),
    ]
    return run_check("wing_loss", wing_loss, reference_wing_loss, cases)


def reference_soft_argmax(heatmaps: torch.Tensor, stride: float) -> torch.Tensor:
    """Landmarks as the expected cell centre under the softmax of each heat map [Sun et al. 2018].

    Args:
        heatmaps: ``(N, K, H, W)`` logits, one map per landmark.
        stride: Pixels between neighbouring cells; cell ``(i, j)`` is centred at ``((j + 0.5) s, (i + 0.5) s)``.

    Returns:
        ``(N, K, 2)`` points ``(x, y)`` in pixels.
    """
    height, width = heatmaps.shape[-2:]
    # (N, K, H, W) -> (N, K, H*W) -> softmax over the cells -> (N, K, H, W)
    p = heatmaps.flatten(2).softmax(dim=2).reshape(heatmaps.shape)
    x = (torch.arange(width, dtype=heatmaps.dtype) + 0.5) * stride  # (W,) centres of the columns
    y = (torch.arange(height, dtype=heatmaps.dtype) + 0.5) * stride  # (H,) centres of the rows
    return torch.stack([(p.sum(dim=2) * x).sum(dim=2), (p.sum(dim=3) * y).sum(dim=2)], dim=2)


def check_soft_argmax(soft_argmax) -> Verdict:
    """Check ``soft_argmax(heatmaps (N, K, H, W), stride) -> (N, K, 2)`` points ``(x, y)`` in pixels."""
    generator = seeded(25)
    peak = torch.zeros(1, 1, 3, 4)
    peak[0, 0, 1, 2] = 50.0
    twin = torch.zeros(1, 1, 3, 4)
    twin[0, 0, 0, 0] = twin[0, 0, 2, 2] = 50.0
    cases = [
        Case("one sharp peak", (peak, 4.0),
             "a single dominant cell (i, j) = (1, 2) gives its centre ((j + 0.5) s, (i + 0.5) s) = (10, 6), x first"),
        Case("a flat map", (torch.zeros(1, 1, 3, 4), 4.0),
             "softmax of equal logits is uniform: the expected point is the map's centre (W s / 2, H s / 2) = (8, 6), "
             "not the first cell an argmax would pick"),
        Case("two equal peaks", (twin, 4.0), "the expectation lies half-way between the two peaks' centres"),
        Case("logits of different heights", (torch.tensor([[[[0.0, 1.0, 2.0]]]]), 10.0),
             "softmax first: p_j = exp(z_j) / sum exp(z), then the sum of p_j times the cell centres"),
        Case("two images, five maps of 6 x 7", (3 * torch.randn(2, 5, 6, 7, generator=generator), 8.0),
             "one softmax per map over all H * W cells, not per row or per column"),
    ]
    return run_check("soft_argmax", soft_argmax, reference_soft_argmax, cases)
