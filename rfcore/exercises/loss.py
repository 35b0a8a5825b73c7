"""Exercises of notebook 02: smooth-L1 and its gradient, online hard example mining, and four variants.

The variants replace a term of Eq. 1: the focal loss (Lin et al. 2017) or the quality focal loss (Li et al.
2020), whose target is the box's IoU, in place of OHEM for ``L_cls``, and the GIoU loss (Rezatofighi et al.
2019) or the CIoU loss (Zheng et al. 2020) in place of smooth-L1 for ``L_box``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision.ops import complete_box_iou_loss, generalized_box_iou_loss, sigmoid_focal_loss

from rfcore.boxes import IGNORED, NEGATIVE, POSITIVE
from rfcore.exercises.check import Case, Verdict, random_boxes, run_check, seeded
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


def reference_focal_loss(logits: torch.Tensor, labels: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Focal loss of every anchor [Lin et al. 2017, Eq. 5], 0 on ignored anchors.

    With two classes the softmax face probability is ``sigmoid(z_1 - z_0)``, so torchvision's
    ``sigmoid_focal_loss`` of that logit is the loss ``-alpha_t (1 - p_t)^gamma log p_t``.

    Args:
        logits: ``(B, A, 2)`` background / face logits.
        labels: ``(B, A)`` 1 positive, 0 negative, -1 ignored.
        alpha: Weight of the positives; the negatives get ``1 - alpha``.
        gamma: Focusing exponent.

    Returns:
        ``(B, A)`` per-anchor losses.
    """
    face = (labels == POSITIVE).to(logits.dtype)
    loss = sigmoid_focal_loss(logits[..., 1] - logits[..., 0], face, alpha=alpha, gamma=gamma, reduction="none")
    return loss.masked_fill(labels == IGNORED, 0.0)


def check_focal_loss(focal_loss) -> Verdict:
    """Check ``focal_loss(logits (B, A, 2), labels (B, A), alpha, gamma) -> (B, A)`` per-anchor losses."""
    generator = seeded(12)
    easy = torch.tensor([[[3.0, -3.2], [0.0, 0.0], [1.0, 2.0], [-2.0, 1.0]]])  # (1, 4, 2)
    labels = torch.tensor([[NEGATIVE, POSITIVE, POSITIVE, NEGATIVE]])
    mixed = torch.tensor([_labels((POSITIVE, 3), (IGNORED, 3), (NEGATIVE, 6)), _labels((NEGATIVE, 10), (IGNORED, 2))])
    cases = [
        Case("gamma 0, alpha 0.5: half the cross-entropy", (easy, labels, 0.5, 0.0),
             "p_t is the probability of the true class, softmax over the two logits; with gamma = 0 the loss is "
             "alpha_t times the cross-entropy -log p_t"),
        Case("gamma 2 down-weights the easy anchors", (easy, labels, 0.5, 2.0),
             "multiply by (1 - p_t)^gamma, with p_t the probability of the anchor's own class, not of 'face'"),
        Case("alpha 0.25 weighs positives by alpha, negatives by 1 - alpha", (easy, labels, 0.25, 2.0),
             "alpha_t = alpha for a positive, 1 - alpha for a negative"),
        Case("ignored anchors cost nothing", (torch.randn(2, 12, 2, generator=generator), mixed, 0.25, 2.0),
             "anchors labelled -1 get loss 0"),
    ]
    return run_check("focal_loss", focal_loss, reference_focal_loss, cases)


def check_giou_loss(giou_loss) -> Verdict:
    """Check ``giou_loss(boxes (P, 4), targets (P, 4)) -> (P,)``, ``1 - GIoU`` of corresponding ``xyxy`` boxes.

    GIoU [Rezatofighi et al. 2019, Alg. 1] is ``IoU - (|C| - |A u B|) / |C|`` with ``C`` the smallest box
    enclosing both; torchvision's ``generalized_box_iou_loss`` is the reference.
    """
    generator = seeded(13)
    cases = [
        Case("a box on its target", (torch.tensor([[0.0, 0.0, 4.0, 4.0]]), torch.tensor([[0.0, 0.0, 4.0, 4.0]])),
             "GIoU = IoU = 1 for identical boxes: the loss is 0"),
        Case("disjoint boxes", (torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[4.0, 0.0, 6.0, 2.0]])),
             "IoU is 0 but the enclosing box C (6 x 2) is a third empty of A and B: GIoU = 0 - (12 - 8) / 12, "
             "and the loss 1 - GIoU is above 1"),
        Case("a box inside its target", (torch.tensor([[1.0, 1.0, 3.0, 3.0]]), torch.tensor([[0.0, 0.0, 4.0, 4.0]])),
             "the enclosing box is the target itself: GIoU = IoU"),
        Case("six random pairs", (random_boxes(6, generator, 40), random_boxes(6, generator, 40)),
             "one loss per pair of corresponding boxes, (P,), not a (P, P) matrix"),
    ]
    return run_check("giou_loss", giou_loss, generalized_box_iou_loss, cases)


def check_ciou_loss(ciou_loss) -> Verdict:
    """Check ``ciou_loss(boxes (P, 4), targets (P, 4)) -> (P,)``, the complete-IoU loss of corresponding boxes.

    CIoU [Zheng et al. 2020, Eqs. 9-11] is ``1 - IoU + rho^2 / c^2 + alpha v``, with ``v = 4 / pi^2 (arctan(w* / h*)
    - arctan(w / h))^2`` and ``alpha = v / ((1 - IoU) + v)``; torchvision's ``complete_box_iou_loss`` is the reference.
    """
    generator = seeded(24)
    square = torch.tensor([[0.0, 0.0, 4.0, 4.0]])
    cases = [
        Case("a box on its target", (square, square.clone()), "IoU 1, same centre, same shape: the loss is 0"),
        Case("a smaller box of the same shape, same centre", (torch.tensor([[1.0, 1.0, 3.0, 3.0]]), square),
             "same centre and aspect ratio: no distance and no shape term, the loss is 1 - IoU"),
        Case("disjoint boxes of the same shape", (torch.tensor([[0.0, 0.0, 2.0, 2.0]]),
                                                  torch.tensor([[4.0, 0.0, 6.0, 2.0]])),
             "IoU 0, centres 4 apart, the enclosing box 6 x 2: rho^2 / c^2 = 16 / 40, squared distances"),
        Case("same centre, another aspect ratio", (torch.tensor([[1.0, 0.0, 3.0, 4.0]]), square),
             "v = 4 / pi^2 (arctan(w*/h*) - arctan(w/h))^2 and alpha = v / ((1 - IoU) + v): add alpha * v"),
        Case("six random pairs", (random_boxes(6, generator, 40), random_boxes(6, generator, 40)),
             "one loss per pair of corresponding boxes, (P,), not a (P, P) matrix"),
    ]
    return run_check("ciou_loss", ciou_loss, complete_box_iou_loss, cases)


def reference_quality_focal_loss(logits: torch.Tensor, quality: torch.Tensor, beta: float) -> torch.Tensor:
    """Quality focal loss of every anchor [Generalized Focal Loss, Li et al. 2020].

    ``-|y - sigma|^beta ((1 - y) log(1 - sigma) + y log sigma)`` with ``sigma = sigmoid(z_1 - z_0)``, the
    two-class softmax face probability, and ``y`` the anchor's quality target: the cross-entropy against a soft
    target, scaled by the distance to it.

    Args:
        logits: ``(B, A, 2)`` background / face logits.
        quality: ``(B, A)`` targets in ``[0, 1]``: the IoU of a positive's box with its face, 0 for negatives.
        beta: Focusing exponent.

    Returns:
        ``(B, A)`` per-anchor losses.
    """
    face_logit = logits[..., 1] - logits[..., 0]  # (B, A)
    cross_entropy = F.binary_cross_entropy_with_logits(face_logit, quality, reduction="none")
    return (quality - face_logit.sigmoid()).abs() ** beta * cross_entropy


def check_quality_focal_loss(quality_focal_loss) -> Verdict:
    """Check ``quality_focal_loss(logits (B, A, 2), quality (B, A), beta) -> (B, A)`` per-anchor losses."""
    generator = seeded(29)
    logits = torch.tensor([[[2.0, -1.0], [0.0, 0.0], [-1.0, 1.5], [0.5, 0.5 + math.log(1.5)]]])  # (1, 4, 2)
    hard = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    soft = torch.tensor([[0.0, 0.3, 0.9, 0.6]])  # anchor 3's face probability is 0.6
    cases = [
        Case("hard targets, beta 0: the cross-entropy", (logits, hard, 0.0),
             "with y in {0, 1} and beta = 0 the loss is -log sigma for y = 1 and -log(1 - sigma) for y = 0, "
             "sigma = sigmoid(z_1 - z_0) the softmax face probability"),
        Case("soft targets, beta 0", (logits, soft, 0.0),
             "the target is the quality y itself, not 1: -((1 - y) log(1 - sigma) + y log sigma)"),
        Case("soft targets, beta 2", (logits, soft, 2.0),
             "scale by |y - sigma|^beta: a face probability equal to its target (anchor 3, 0.6) costs nothing, "
             "whereas the focal loss's (1 - p_t)^gamma would not vanish there"),
        Case("a batch of random qualities", (torch.randn(2, 10, 2, generator=generator),
                                             torch.rand(2, 10, generator=generator) * (torch.rand(2, 10,
                                                                                   generator=generator) < 0.4), 2.0),
             "one loss per anchor, (B, A)"),
    ]
    return run_check("quality_focal_loss", quality_focal_loss, reference_quality_focal_loss, cases)
