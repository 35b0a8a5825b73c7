"""Exercises of notebook 02: smooth-L1 and its gradient, and online hard example mining."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rfcore.boxes import IGNORED, NEGATIVE, POSITIVE
from rfcore.exercises.check import Case, Verdict, run_check, seeded
from rfcore.loss import ohem_select

EDGES = torch.tensor([-3.0, -1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0, 3.0])
"""Values on both sides of ``beta = 1`` and ``beta = 0.5`` and at the kinks themselves."""


def reference_smooth_l1(x: torch.Tensor, beta: float) -> torch.Tensor:
    """Elementwise smooth-L1 of ``x`` against zero, :func:`torch.nn.functional.smooth_l1_loss`."""
    return F.smooth_l1_loss(x, torch.zeros_like(x), reduction="none", beta=beta)


def reference_smooth_l1_grad(x: torch.Tensor, beta: float) -> torch.Tensor:
    """``d smooth_l1(x) / dx`` elementwise, by autograd through :func:`reference_smooth_l1`."""
    x = x.clone().requires_grad_(True)
    reference_smooth_l1(x, beta).sum().backward()
    return x.grad


def smooth_l1_cases() -> list[Case]:
    generator = seeded(2)
    return [
        Case("beta = 1 around the kink", (EDGES, 1.0),
             "below |x| = beta the loss is the parabola 0.5 x^2 / beta, above it the line |x| - 0.5 beta"),
        Case("beta = 0.5 around the kink", (EDGES, 0.5), "beta appears in both branches, and in the test |x| < beta"),
        Case("a (3, 4) batch of random values", (torch.randn(3, 4, generator=generator) * 2, 1.0),
             "work elementwise and keep the input's shape"),
    ]


def check_smooth_l1(smooth_l1) -> Verdict:
    """Check ``smooth_l1(x, beta) -> x.shape``, the elementwise Fast R-CNN loss of ``x`` against zero."""
    return run_check("smooth_l1", smooth_l1, reference_smooth_l1, smooth_l1_cases())


def check_smooth_l1_grad(smooth_l1_grad) -> Verdict:
    """Check ``smooth_l1_grad(x, beta) -> x.shape``, the derivative of smooth-L1, against autograd."""
    return run_check("smooth_l1_grad", smooth_l1_grad, reference_smooth_l1_grad, smooth_l1_cases())


def _labels(*counts: tuple[int, int]) -> list[int]:
    """A flat label list from ``(label, count)`` runs."""
    return [label for label, count in counts for _ in range(count)]


def ohem_cases() -> list[Case]:
    generator = seeded(3)

    def case(name, labels, ratio, hint="", hardest_ignored=False):
        labels = torch.tensor(labels, dtype=torch.long)
        # distinct losses, so "the hardest" is never a tie
        loss = torch.randperm(labels.numel(), generator=generator).reshape(labels.shape).float() / labels.numel()
        if hardest_ignored:  # the ignored anchors have the largest losses of all
            loss = torch.where(labels == IGNORED, loss + 2, loss)
        return Case(name, (loss, labels, ratio), hint)

    return [
        case("1 positive, 10 negatives, ratio 3", [_labels((POSITIVE, 1), (NEGATIVE, 10))], 3,
             "keep the ratio * (number of positives) negatives with the largest loss"),
        case("ignored anchors with the largest losses", [_labels((POSITIVE, 2), (IGNORED, 4), (NEGATIVE, 12))], 3,
             "ignored anchors (label -1) are never mined, however large their loss", hardest_ignored=True),
        case("fewer negatives than the quota", [_labels((POSITIVE, 3), (NEGATIVE, 5), (IGNORED, 2))], 3,
             "when an image has fewer negatives than the quota, keep all of them"),
        case("an image without positives", [_labels((NEGATIVE, 9), (IGNORED, 1))], 3,
             "rfcore keeps ratio * max(positives, 1) negatives: an image without faces still trains"),
        case("two images, mined separately", [_labels((POSITIVE, 1), (NEGATIVE, 11)),
                                                _labels((POSITIVE, 3), (NEGATIVE, 9))], 2,
             "each image gets its own quota from its own positives"),
        case("positives are not negatives", [_labels((NEGATIVE, 6), (POSITIVE, 2), (NEGATIVE, 6))], 1,
             "only anchors labelled 0 can be selected; the positives are trained anyway"),
    ]


def check_ohem_select(student_ohem_select) -> Verdict:
    """Check ``ohem_select(cls_loss (B, A), labels (B, A), ratio) -> (B, A)`` bool against rfcore's."""
    return run_check("ohem_select", student_ohem_select, ohem_select, ohem_cases())
