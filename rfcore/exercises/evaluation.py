"""Exercises of notebook 07: non-maximum suppression and the VOC average precision."""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import nms

from rfcore.evaluation.protocol import voc_ap
from rfcore.exercises.check import Case, Verdict, random_boxes, run_check, seeded


def check_nms(student_nms) -> Verdict:
    """Check ``nms(boxes (N, 4) xyxy, scores (N,), iou_threshold) -> (K,)`` int64 indices against torchvision."""
    generator = seeded(8)
    chain = torch.tensor([[0.0, 0.0, 10.0, 10.0], [4.0, 0.0, 14.0, 10.0], [8.0, 0.0, 18.0, 10.0]])
    cluster = random_boxes(5, generator, 30)
    cases = [
        Case("two overlapping boxes", (chain[:2], torch.tensor([0.6, 0.9]), 0.3),
             "keep the highest score first; return indices into the input, best first"),
        Case("a chain: A overlaps B, B overlaps C, A and C do not", (chain, torch.tensor([0.9, 0.8, 0.7]), 0.3),
             "a suppressed box suppresses nothing: C survives because B was removed by A"),
        Case("IoU exactly at the threshold", (torch.tensor([[0.0, 0.0, 3.0, 1.0], [1.0, 0.0, 4.0, 1.0]]),
                                              torch.tensor([0.9, 0.8]), 0.5),
             "a box is dropped only when its IoU is above the threshold"),
        Case("20 random boxes in clusters", (torch.cat([cluster + 2 * torch.rand(cluster.shape, generator=generator)
                                                        for _ in range(4)]),
                                             torch.randperm(20, generator=generator).float() / 20, 0.4)),
    ]
    return run_check("nms", student_nms, nms, cases)


def check_voc_ap(student_voc_ap) -> Verdict:
    """Check ``voc_ap(recall (T,), precision (T,)) -> float``, the area under the precision envelope."""
    rng = np.random.default_rng(9)
    recall = np.sort(rng.uniform(0, 0.9, 30))
    cases = [
        Case("a perfect detector", (np.array([0.5, 1.0]), np.array([1.0, 1.0]))),
        Case("recall that stops at 0.6", (np.array([0.2, 0.4, 0.6]), np.array([1.0, 1.0, 1.0])),
             "recall beyond the last point adds nothing: the envelope there is 0"),
        Case("precision that rises again", (np.array([0.25, 0.5, 0.75]), np.array([1.0, 0.5, 0.75])),
             "each precision is replaced by the largest precision at any equal or higher recall (the envelope)"),
        Case("repeated recall values", (np.array([0.2, 0.2, 0.5, 0.5, 0.8]), np.array([1.0, 0.6, 0.7, 0.4, 0.5])),
             "sum (r_(i+1) - r_i) times the envelope at r_(i+1), starting from recall 0"),
        Case("30 random points", (recall, rng.uniform(0.2, 1.0, 30))),
    ]
    return run_check("voc_ap", student_voc_ap, voc_ap, cases)
