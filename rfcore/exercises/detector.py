"""Exercises of notebook 08: matching with the forced best anchor, Eq. 1 for one image, decoding, two variants.

These are the parts the capstone (:mod:`rfcore.exercises.capstone`) trains and detects with. Matching
works on the ``(A, F)`` IoU matrix of an image's anchors with its faces, so it does not depend on how the
IoU was computed. The variants are the public recipe's forcing floor (biubug6/Pytorch_Retinaface,
utils/box_utils.py ``match``) and the balanced L1 loss of Libra R-CNN (Pang et al., CVPR 2019, §3.3).
Every checker here also compares the type and dtype of the answer (:func:`typed`).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torchvision.ops import box_iou

from rfcore.boxes import IGNORED, NEGATIVE, POSITIVE, decode_boxes, decode_landmarks, label_anchors
from rfcore.config import get_config
from rfcore.exercises.check import Case, Comparison, Verdict, compare_tensors, random_boxes, run_check, seeded
from rfcore.exercises.encoding import VARIANCES, random_anchors
from rfcore.loss import multitask_loss
from rfcore.matching import AnchorTargets
from rfcore.model.retinaface import RetinaFaceOutput


def typed(compare: Comparison = compare_tensors) -> Comparison:
    """``compare``, after checking that each tensor of the answer has the reference's type and dtype."""

    def compare_typed(expected, got) -> str | None:
        pairs = zip(expected, got) if isinstance(expected, tuple) and isinstance(got, (tuple, list)) else [(expected, got)]
        for i, (e, g) in enumerate(pairs):
            where = f"value {i} of the tuple: " if isinstance(expected, tuple) else ""
            if isinstance(e, torch.Tensor) and not isinstance(g, torch.Tensor):
                return f"{where}expected a torch.Tensor, got {type(g).__name__}"
            if isinstance(e, torch.Tensor) and g.dtype != e.dtype:
                return f"{where}expected dtype {e.dtype}, got {g.dtype}"
        return compare(expected, got)

    return compare_typed


# ---------------------------------------------------------------- matching


def reference_match(iou: torch.Tensor, pos_iou: float, neg_iou: float) -> tuple[torch.Tensor, torch.Tensor]:
    """rfcore's rule (:func:`rfcore.boxes.label_anchors`) on an IoU matrix; ties go to the lowest anchor index."""
    if iou.shape[1] == 0:
        return torch.full((len(iou),), NEGATIVE), torch.full((len(iou),), -1)
    return tuple(label_anchors(iou, torch.zeros_like(iou), pos_iou, neg_iou))


def random_iou(anchors: int, faces: int, generator: torch.Generator) -> torch.Tensor:
    """``(anchors, faces)`` IoU of random boxes with random faces, as an image's matching sees it."""
    return box_iou(random_boxes(anchors, generator, 60), random_boxes(faces, generator, 60))


def matching_cases(generator: torch.Generator) -> list[Case]:
    """Cases of both matching exercises, at the paper's thresholds (0.5, 0.3)."""
    def iou(*rows):
        return torch.tensor(rows, dtype=torch.float32)

    return [
        Case("one face: above, below and between the thresholds", (iou([0.7], [0.1], [0.4]), 0.5, 0.3),
             "IoU >= pos_iou: positive (1), matched to the face; < neg_iou: negative (0); in between: ignored "
             "(-1); matched is -1 wherever the label is not positive"),
        Case("an anchor overlapping two faces", (iou([0.6, 0.8], [0.2, 0.1], [0.0, 0.55]), 0.5, 0.3),
             "a positive anchor is matched to the face it overlaps most"),
        Case("a face below every threshold", (iou([0.1], [0.25], [0.05]), 0.5, 0.3),
             "every face is forced onto its best anchor, whatever its IoU: that anchor becomes positive"),
        Case("two faces forcing the same anchor", (iou([0.2, 0.25], [0.1, 0.05], [0.05, 0.2]), 0.5, 0.3),
             "when two faces pick the same best anchor, the face with the higher IoU gets it"),
        Case("a face that overlaps no anchor", (iou([0.6, 0.0], [0.2, 0.0]), 0.5, 0.3),
             "a face with IoU 0 everywhere is not forced anywhere (it has no best anchor worth the name)"),
        Case("an image without faces", (torch.zeros(4, 0), 0.5, 0.3),
             "with no face every anchor is negative: labels 0, matched -1, both (A,) int64"),
        Case("60 anchors and 4 faces", (random_iou(60, 4, generator), 0.5, 0.3)),
    ]


def check_match(student_match) -> Verdict:
    """Check ``match(iou (A, F), pos_iou, neg_iou) -> (labels (A,), matched (A,))`` int64 [paper §4.2].

    The paper's rule: positive from ``pos_iou``, negative below ``neg_iou``, ignored in between, and every
    face forced onto its best anchor.
    """
    return run_check("match", student_match, reference_match, matching_cases(seeded(20)), typed())


def reference_match_forcing_floor(iou: torch.Tensor, pos_iou: float, neg_iou: float,
                                  floor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The public recipe's forcing: only faces whose best anchor has IoU ``>= floor`` are forced.

    biubug6/Pytorch_Retinaface, utils/box_utils.py ``match``: ``valid_gt_idx = best_prior_overlap >= 0.2``;
    the other faces keep only the anchors their IoU makes positive. The forced pairs are rfcore's on the
    IoU matrix with the faces below the floor zeroed and thresholds nobody reaches.
    """
    by_iou = labels_by_iou(iou, pos_iou, neg_iou)
    forceable = iou.max(dim=0).values >= floor if iou.shape[1] else torch.zeros(0, dtype=torch.bool)  # (F,)
    forced = reference_match(iou * forceable, UNREACHABLE, UNREACHABLE)
    is_forced = forced[0] == POSITIVE
    return torch.where(is_forced, POSITIVE, by_iou[0]), torch.where(is_forced, forced[1], by_iou[1])


UNREACHABLE = 2.0
"""An IoU threshold no anchor reaches: matching with it only forces."""


def labels_by_iou(iou: torch.Tensor, pos_iou: float, neg_iou: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels and matched faces from the thresholds alone, no forcing: ``(A, F) -> (A,), (A,)`` int64."""
    if iou.shape[1] == 0:
        return reference_match(iou, pos_iou, neg_iou)
    best_iou, best_face = iou.max(dim=1)
    labels = torch.full((len(iou),), NEGATIVE)
    labels[best_iou >= neg_iou] = IGNORED
    labels[best_iou >= pos_iou] = POSITIVE
    return labels, torch.where(labels == POSITIVE, best_face, -1)


def check_match_forcing_floor(student_match_forcing_floor) -> Verdict:
    """Check ``match_forcing_floor(iou (A, F), pos_iou, neg_iou, floor) -> (labels (A,), matched (A,))``.

    A variant: the public recipe forces a face onto its best anchor only if that IoU reaches ``floor`` (0.2).
    """
    def iou(*rows):
        return torch.tensor(rows, dtype=torch.float32)

    generator = seeded(21)
    paper = matching_cases(generator)
    cases = [
        Case("a face whose best anchor has IoU 0.15", (iou([0.1], [0.15], [0.05]), 0.5, 0.3, 0.2),
             "below the floor a face is not forced: it stays unmatched, every anchor negative"),
        Case("a face whose best anchor has IoU 0.25", (iou([0.1], [0.25], [0.05]), 0.5, 0.3, 0.2),
             "at or above the floor the face is forced onto its best anchor, as in the paper's rule"),
        Case("best IoU exactly at the floor", (iou([0.2], [0.1]), 0.5, 0.3, 0.2), "the floor itself counts: >="),
        Case("two faces, one under the floor", (iou([0.1, 0.6], [0.15, 0.2], [0.05, 0.4]), 0.5, 0.3, 0.2),
             "the floor applies per face: the other faces are matched as usual"),
        *(dataclasses.replace(case, args=(*case.args, 0.2)) for case in paper[-2:]),
        Case("60 anchors and 6 faces, floor 0.3", (random_iou(60, 6, generator), 0.5, 0.3, 0.3)),
    ]
    return run_check("match_forcing_floor", student_match_forcing_floor, reference_match_forcing_floor, cases,
                     typed())


# ---------------------------------------------------------------- Eq. 1 for one image


def reference_image_loss(logits, box_deltas, landmark_deltas, labels, box_targets, landmark_targets, landmark_valid,
                         ohem_ratio, lambdas) -> tuple[torch.Tensor, ...]:
    """:func:`rfcore.loss.multitask_loss` on a batch of one image: ``(total, cls, box, pts)`` scalars."""
    lambda_cls, lambda_box, lambda_pts = lambdas
    cfg = dataclasses.replace(get_config("mobilenet0.25"), ohem_ratio=ohem_ratio, lambda_cls=lambda_cls,
                              lambda_box=lambda_box, lambda_pts=lambda_pts)
    output = RetinaFaceOutput(logits[None], box_deltas[None], landmark_deltas[None])
    matched = torch.where(labels == POSITIVE, 0, -1)  # the loss never reads which face
    targets = AnchorTargets(labels[None], matched[None], box_targets[None], landmark_targets[None],
                            landmark_valid[None])
    return tuple(multitask_loss(output, targets, cfg)[:4])


def loss_case(name: str, labels: list[int], generator: torch.Generator, hint: str = "", ratio: int = 3,
              lambdas: tuple = (1.0, 2.0, 1.0), no_landmarks: tuple[int, ...] = (), exact: bool = False) -> Case:
    """One image of ``len(labels)`` anchors with random outputs; positives get random targets.

    Args:
        no_landmarks: Anchors (positives) whose face has no landmarks.
        exact: The positives' box and landmark outputs equal their targets.
    """
    labels = torch.tensor(labels)
    count = len(labels)
    positive = labels == POSITIVE
    logits = torch.randn(count, 2, generator=generator) * 2
    box_targets = torch.randn(count, 4, generator=generator) * positive[:, None]
    landmark_valid = positive.clone()
    landmark_valid[list(no_landmarks)] = False
    landmark_targets = torch.randn(count, 10, generator=generator) * 2 * landmark_valid[:, None]
    box_deltas = box_targets.clone() if exact else torch.randn(count, 4, generator=generator) * 1.5
    landmark_deltas = landmark_targets.clone() if exact else torch.randn(count, 10, generator=generator) * 1.5
    args = (logits, box_deltas, landmark_deltas, labels, box_targets, landmark_targets, landmark_valid, ratio, lambdas)
    return Case(name, args, hint)


def check_image_loss(student_image_loss) -> Verdict:
    """Check ``image_loss(logits (A, 2), box_deltas (A, 4), landmark_deltas (A, 10), labels (A,), box_targets (A, 4),
    landmark_targets (A, 10), landmark_valid (A,), ohem_ratio, lambdas) -> (total, cls, box, pts)`` [paper Eq. 1].

    ``lambdas`` is ``(lambda_cls, lambda_box, lambda_pts)``; the four answers are scalar float32 tensors.
    """
    generator = seeded(22)
    P, N, I = POSITIVE, NEGATIVE, IGNORED
    cases = [
        loss_case("one positive whose outputs equal its targets", [P, N, N, N], generator,
                  "box and pts are smooth-L1 of output minus target over the positives: 0 here; cls is the softmax "
                  "cross-entropy of the positive (class 1) and of the mined negatives (class 0)", exact=True),
        loss_case("the weights of Eq. 1", [P, N, N, N], generator,
                  "total = lambda_cls cls + lambda_box box + lambda_pts pts; cls, box, pts are returned unweighted",
                  lambdas=(0.5, 0.25, 0.1)),
        loss_case("OHEM keeps the hardest negatives", [P, *[N] * 11], generator,
                  "only ohem_ratio negatives per positive train L_cls: those of largest cross-entropy", ratio=2),
        loss_case("ignored anchors", [P, P, I, I, I, N, N, N, N, N, N, N, N], generator,
                  "ignored anchors (-1) are neither positives nor negatives: no term, never mined"),
        loss_case("sums divided by the number of positives", [P, P, P, N, N, N, N, N, N, N, N, N, N, N], generator,
                  "L_cls and L_box are sums over the anchors divided by the number of positives, not means"),
        loss_case("a positive whose face has no landmarks", [P, P, N, N, N, N, N, N], generator,
                  "L_pts sums over the positives with landmarks and divides by their number", no_landmarks=(1,)),
        loss_case("an image without positives", [N] * 8 + [I] * 2, generator,
                  "no positive: L_box and L_pts are 0 and OHEM still keeps ratio * 1 negatives (divide by max(P, 1))"),
        loss_case("60 anchors", torch.tensor([P] * 4 + [I] * 6 + [N] * 50)[torch.randperm(60, generator=generator)]
                  .tolist(), generator, ratio=7),
    ]
    return run_check("image_loss", student_image_loss, reference_image_loss, cases, typed())


# ---------------------------------------------------------------- decoding


def reference_decode(box_deltas, landmark_deltas, anchors, variances) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`rfcore.boxes.decode_boxes` and :func:`rfcore.boxes.decode_landmarks`: ``(N, 4) xyxy, (N, 5, 2)``."""
    return decode_boxes(box_deltas, anchors, variances), decode_landmarks(landmark_deltas, anchors, variances)


def check_decode(student_decode) -> Verdict:
    """Check ``decode(box_deltas (N, 4), landmark_deltas (N, 10), anchors (N, 4) cxcywh, variances)
    -> (boxes (N, 4) xyxy, landmarks (N, 5, 2))``: the network's outputs back to pixels."""
    generator = seeded(23)
    anchor = torch.tensor([[50.0, 40.0, 16.0, 32.0]])
    boxes = random_boxes(5, generator)
    anchors = random_anchors(boxes, generator)
    cases = [
        Case("zero outputs", (torch.zeros(1, 4), torch.zeros(1, 10), anchor, VARIANCES),
             "zero deltas give the anchor itself as an (x1, y1, x2, y2) box, and five points on its centre"),
        Case("a shifted centre", (torch.tensor([[1.0, -2.0, 0.0, 0.0]]), torch.zeros(1, 10), anchor, VARIANCES),
             "the centre moves by t_x v_0 a_w and t_y v_0 a_h"),
        Case("a larger box", (torch.tensor([[0.0, 0.0, 2.0, -1.0]]), torch.zeros(1, 10), anchor, VARIANCES),
             "the size is a_w exp(t_w v_1): the targets hold the log of the size ratio"),
        Case("five points", (torch.zeros(1, 4), torch.arange(10.0)[None] - 5, anchor, VARIANCES),
             "point k is the anchor centre plus (l_kx v_0 a_w, l_ky v_0 a_h); the ten numbers are x, y pairs"),
        Case("unequal variances", (torch.randn(5, 4, generator=generator), torch.randn(5, 10, generator=generator),
                                   anchors, (0.5, 0.25)),
             "v_0 scales the centre and the points, v_1 the log size"),
        Case("five random anchors", (torch.randn(5, 4, generator=generator), torch.randn(5, 10, generator=generator),
                                     anchors, VARIANCES)),
    ]
    return run_check("decode", student_decode, reference_decode, cases, typed())


# ---------------------------------------------------------------- a variant of L_box


def reference_balanced_l1(x: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Balanced L1 of ``x`` against zero [Libra R-CNN, Pang et al. 2019, §3.3], elementwise, in float64.

    ``L_b(x) = alpha / b (b |x| + 1) ln(b |x| + 1) - alpha |x|`` for ``|x| < 1``, ``gamma |x| + C`` above,
    with ``alpha ln(b + 1) = gamma`` (equal slopes at 1) and ``C`` making ``L_b`` continuous at 1.
    """
    b = math.exp(gamma / alpha) - 1
    inner = alpha / b * (b + 1) * math.log(b + 1) - alpha  # L_b(1) of the inner branch
    constant = inner - gamma
    magnitude = x.double().abs()
    loss = torch.where(magnitude < 1, alpha / b * (b * magnitude + 1) * torch.log1p(b * magnitude) - alpha * magnitude,
                       gamma * magnitude + constant)
    return loss.to(x.dtype)


def check_balanced_l1(student_balanced_l1) -> Verdict:
    """Check ``balanced_l1(x, alpha, gamma) -> x.shape``, a variant of smooth-L1 that lifts the small errors."""
    generator = seeded(24)
    edges = torch.tensor([-3.0, -1.0, -0.5, -0.1, 0.0, 0.1, 0.5, 1.0, 3.0])
    cases = [
        Case("Libra R-CNN's alpha 0.5, gamma 1.5", (edges, 0.5, 1.5),
             "b = exp(gamma / alpha) - 1 makes the slopes of both branches meet at |x| = 1"),
        Case("alpha 1, gamma 1", (edges, 1.0, 1.0),
             "the constant C = alpha / b (b + 1) ln(b + 1) - alpha - gamma joins the branches at |x| = 1"),
        Case("a (3, 4) batch of random values", (torch.randn(3, 4, generator=generator) * 2, 0.5, 1.5),
             "elementwise, keeping the input's shape and dtype"),
    ]
    return run_check("balanced_l1", student_balanced_l1, reference_balanced_l1, cases, typed())
