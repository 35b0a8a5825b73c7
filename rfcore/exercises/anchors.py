"""Exercises of notebook 01: the IoU of two sets of boxes and the anchors of one pyramid level."""

from __future__ import annotations

import torch
from torchvision.ops import box_iou

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
