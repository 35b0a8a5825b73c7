"""Exercises of notebook 01: the IoU of two sets of boxes, the anchors of one pyramid level, and three variants.

The variants extend the paper's anchors and IoU: anchors with several aspect ratios (Faster R-CNN, Ren et al.
2015), the distance IoU (DIoU, Zheng et al. 2020), which also scores boxes that do not overlap, and densified
anchors (FaceBoxes, Zhang et al. 2017), several anchors of one size tiled inside each cell.
"""

from __future__ import annotations

import torch
from torchvision.ops import box_iou, distance_box_iou

from rfcore.anchors import AnchorLevel
from rfcore.exercises.check import Case, Verdict, random_boxes, run_check, seeded


def check_iou(iou) -> Verdict:
    """Check ``iou(boxes1 (N, 4), boxes2 (M, 4)) -> (N, M)`` for ``xyxy`` boxes against torchvision's ``box_iou``."""
    generator = seeded(1)
    box = torch.tensor([[0.0, 0.0, 4.0, 4.0]])
    cases = [
        Case("a box with itself", (box, box.clone())),
        Case("disjoint boxes", (box, torch.tensor([[10.0, 10.0, 12.0, 12.0]]))),
        Case("boxes that touch along an edge", (box, torch.tensor([[4.0, 0.0, 8.0, 4.0]])),
             "coordinates are continuous: a box spans x2 - x1 pixels, with no + 1, so touching boxes share no area"),
        Case("a box inside another", (box, torch.tensor([[1.0, 1.0, 3.0, 2.0]]))),
        Case("half overlap", (box, torch.tensor([[2.0, 0.0, 6.0, 4.0]])),
             "the intersection is (min of x2 - max of x1) times the same in y, clamped at 0"),
        Case("3 x 5 random whole-pixel boxes",
             (random_boxes(3, generator, 20, integer=True), random_boxes(5, generator, 20, integer=True)),
             "the answer has one row per box of the first set and one column per box of the second"),
        Case("40 x 7 random boxes", (random_boxes(40, generator), random_boxes(7, generator))),
    ]
    return run_check("iou", iou, box_iou, cases)


def reference_level_anchors(rows: int, cols: int, stride: int, sizes: tuple) -> torch.Tensor:
    """rfcore's anchors of one level, :meth:`rfcore.anchors.AnchorLevel.anchors`, with the exercise's signature."""
    return AnchorLevel(name="P", stride=stride, sizes=tuple(sizes), grid=(rows, cols), start=0).anchors()


def check_level_anchors(level_anchors) -> Verdict:
    """Check ``level_anchors(rows, cols, stride, sizes) -> (rows * cols * len(sizes), 4)`` ``(cx, cy, w, h)``."""
    cases = [
        Case("one cell, one size", (1, 1, 8, (16.0,)),
             "cell (i, j) looks at the image point ((j + 0.5) * stride, (i + 0.5) * stride)"),
        Case("one row of three cells", (1, 3, 8, (16.0,)), "x follows the column index j and y the row index i"),
        Case("two rows of two cells", (2, 2, 16, (32.0,)),
             "row-major order: the cells of row 0 from left to right, then those of row 1"),
        Case("two sizes per cell", (1, 2, 32, (64.0, 128.0)),
             "the order is row, then column, then anchor size: the sizes of one cell are consecutive"),
        Case("the paper's three sizes on a 4 x 5 grid", (4, 5, 4, (16.0, 20.16, 25.4))),
    ]
    return run_check("level_anchors", level_anchors, reference_level_anchors, cases)


def reference_ratio_anchors(rows: int, cols: int, stride: int, sizes: tuple, ratios: tuple) -> torch.Tensor:
    """Anchors of one level with several aspect ratios, from the formula [Ren et al. 2015, §3.1.1].

    An anchor of side ``s`` and aspect ratio ``r = h / w`` keeps the area ``s^2``: ``w = s / sqrt(r)``,
    ``h = s sqrt(r)``. Order: row, column, size, ratio.

    Returns:
        ``(rows * cols * len(sizes) * len(ratios), 4)`` float32 ``(cx, cy, w, h)``.
    """
    side = torch.tensor(sizes, dtype=torch.float32)[:, None]  # (S, 1)
    root = torch.tensor(ratios, dtype=torch.float32).sqrt()[None, :]  # (1, R)
    shapes = torch.stack([(side / root).flatten(), (side * root).flatten()], dim=1)  # (S*R, 2) w, h
    cy, cx = torch.meshgrid((torch.arange(rows) + 0.5) * stride, (torch.arange(cols) + 0.5) * stride, indexing="ij")
    centres = torch.stack([cx.flatten(), cy.flatten()], dim=1).float()  # (rows*cols, 2)
    # (rows*cols, 1, 2) and (1, S*R, 2) -> (rows*cols, S*R, 4) -> (rows*cols*S*R, 4)
    return torch.cat(torch.broadcast_tensors(centres[:, None], shapes[None]), dim=2).reshape(-1, 4)


def check_ratio_anchors(ratio_anchors) -> Verdict:
    """Check ``ratio_anchors(rows, cols, stride, sizes, ratios) -> (rows * cols * S * R, 4)`` ``(cx, cy, w, h)``."""
    cases = [
        Case("ratio 1 is the square anchor", (1, 1, 8, (16.0,), (1.0,)),
             "with r = 1 the anchor is the square of notebook 01: w = h = s"),
        Case("a face-shaped anchor, ratio 1.5", (1, 1, 8, (16.0,), (1.5,)),
             "r = h / w at the area s^2: w = s / sqrt(r), h = s * sqrt(r); taller than wide for r > 1"),
        Case("two ratios per size", (1, 1, 16, (32.0,), (1.0, 2.0)),
             "the ratios of one size are consecutive"),
        Case("two sizes and two ratios on a 2 x 2 grid", (2, 2, 16, (32.0, 64.0), (0.5, 2.0)),
             "order: row, column, size, then ratio"),
        Case("three sizes and three ratios on a 3 x 4 grid", (3, 4, 8, (16.0, 20.16, 25.4), (1.0, 1.25, 1.5))),
    ]
    return run_check("ratio_anchors", ratio_anchors, reference_ratio_anchors, cases)


def check_diou(diou) -> Verdict:
    """Check ``diou(boxes1 (N, 4), boxes2 (M, 4)) -> (N, M)`` against torchvision's ``distance_box_iou``.

    DIoU [Zheng et al. 2020, Eq. 6] is ``IoU - rho^2 / c^2``: ``rho`` the distance of the two box centres,
    ``c`` the diagonal of the smallest box that encloses both.
    """
    generator = seeded(11)
    box = torch.tensor([[0.0, 0.0, 4.0, 4.0]])
    cases = [
        Case("a box with itself", (box, box.clone()), "same centre: the penalty is 0 and DIoU = IoU = 1"),
        Case("a box inside another, same centre", (box, torch.tensor([[1.0, 1.0, 3.0, 3.0]])),
             "same centre: DIoU equals the IoU"),
        Case("disjoint boxes", (box, torch.tensor([[8.0, 0.0, 12.0, 4.0]])),
             "IoU is 0, but the penalty rho^2 / c^2 still grows with the distance: centres 8 apart, the "
             "enclosing box 12 x 4, so c^2 = 12^2 + 4^2"),
        Case("half overlap", (box, torch.tensor([[2.0, 0.0, 6.0, 4.0]])),
             "the penalty uses squared distances: rho^2 / c^2, not rho / c"),
        Case("3 x 5 random boxes", (random_boxes(3, generator, 20), random_boxes(5, generator, 20)),
             "c is the diagonal of the box enclosing both boxes of the pair"),
    ]
    return run_check("diou", diou, distance_box_iou, cases)


def reference_dense_anchors(rows: int, cols: int, stride: int, size: float, density: int) -> torch.Tensor:
    """Square anchors of one size densified ``density`` times [FaceBoxes, Zhang et al. 2017, §3.3].

    Each cell holds ``density^2`` anchors on a regular sub-grid centred on the cell centre: sub-anchor
    ``(a, b)`` of cell ``(i, j)`` is centred at ``((j + (b + 0.5) / n) s, (i + (a + 0.5) / n) s)``, so
    ``n = 1`` is the anchor of :func:`reference_level_anchors`. Order: row, column, sub-row, sub-column.

    Returns:
        ``(rows * cols * density^2, 4)`` float32 ``(cx, cy, w, h)``.
    """
    offsets = (torch.arange(density) + 0.5) / density  # (n,) sub-cell centres within a cell, in cells
    y = (torch.arange(rows)[:, None] + offsets[None, :]).flatten() * stride  # (rows*n,) row-major: cell, sub-row
    x = (torch.arange(cols)[:, None] + offsets[None, :]).flatten() * stride  # (cols*n,)
    cy, cx = torch.meshgrid(y, x, indexing="ij")  # (rows*n, cols*n) each
    # (rows, n, cols, n) -> (rows, cols, n, n): cell first, then its sub-grid
    centres = torch.stack([cx, cy], dim=-1).reshape(rows, density, cols, density, 2).permute(0, 2, 1, 3, 4)
    sides = torch.full((rows * cols * density**2, 2), float(size))
    return torch.cat([centres.reshape(-1, 2), sides], dim=1).float()


def check_dense_anchors(dense_anchors) -> Verdict:
    """Check ``dense_anchors(rows, cols, stride, size, density) -> (rows * cols * density^2, 4)`` ``(cx, cy, w, h)``."""
    cases = [
        Case("density 1 is the ordinary anchor", (1, 1, 8, 16.0, 1),
             "with n = 1 the single anchor sits on the cell centre ((j + 0.5) s, (i + 0.5) s)"),
        Case("density 2 in one cell", (1, 1, 8, 32.0, 2),
             "n^2 = 4 anchors at offsets (b + 0.5) / n of a cell: x and y in {2, 6} for stride 8, ordered by "
             "sub-row then sub-column, so that their mean is the cell centre"),
        Case("density 2 on a row of two cells", (1, 2, 8, 32.0, 2),
             "all the anchors of one cell are consecutive: cell (0, 0)'s four, then cell (0, 1)'s"),
        Case("density 4 on a 2 x 3 grid", (2, 3, 4, 16.0, 4),
             "FaceBoxes densifies its 32-px anchors 4 times: 16 anchors per cell, each of the given size"),
        Case("density 3 on a 3 x 2 grid", (3, 2, 16, 24.0, 3)),
    ]
    return run_check("dense_anchors", dense_anchors, reference_dense_anchors, cases)
