"""Plausible mistakes, one per part of the capstone, each a small change to a solution.

:data:`MISTAKES` maps a part of :class:`rfcore.exercises.capstone.Parts` to a wrong version of it: the
capstone must name that part before it trains (``tests/exercises/test_capstone.py``), and notebook 08 trains with
one of them unchecked to show what it does to learning.
"""

from __future__ import annotations

import torch

from rfcore.exercises import solutions


def anchors_without_half_cell(rows, cols, stride, sizes):
    """Anchor centres at ``j * stride`` instead of ``(j + 0.5) * stride``."""
    return solutions.level_anchors(rows, cols, stride, sizes) - torch.tensor([0.5, 0.5, 0.0, 0.0]) * stride


def iou_plus_one(boxes1, boxes2):
    """The pixel-count convention of old VOC code, widths ``x2 - x1 + 1``, in continuous coordinates."""
    return solutions.iou(boxes1, boxes2 + torch.tensor([0.0, 0.0, 1.0, 1.0]))


def match_without_forcing(iou, pos_iou, neg_iou):
    """Thresholds only: a face no anchor reaches ``pos_iou`` with stays unmatched."""
    return solutions.match_forcing_floor(iou, pos_iou, neg_iou, floor=float("inf"))


def encode_boxes_without_variances(boxes, anchors, variances):
    """Box targets ``(g - a) / a_w`` and ``log(g_w / a_w)``, not divided by ``v_0`` and ``v_1``."""
    return solutions.encode_boxes(boxes, anchors, (1.0, 1.0))


def encode_landmarks_with_v1(landmarks, anchors, variances):
    """Landmark offsets divided by ``v_1`` (the size variance) instead of ``v_0``."""
    return solutions.encode_landmarks(landmarks, anchors, (variances[1], variances[1]))


def image_loss_without_ohem(logits, box_deltas, landmark_deltas, labels, box_targets, landmark_targets,
                            landmark_valid, ohem_ratio, lambdas):
    """Every negative trains ``L_cls``: a ratio larger than any image's negatives switches the mining off."""
    return solutions.image_loss(logits, box_deltas, landmark_deltas, labels, box_targets, landmark_targets,
                                landmark_valid, len(labels) + 1, lambdas)


def decode_without_exp(box_deltas, landmark_deltas, anchors, variances):
    """Box sizes ``a_w (1 + t_w v_1)`` instead of ``a_w exp(t_w v_1)``."""
    _, landmarks = solutions.decode(box_deltas, landmark_deltas, anchors, variances)
    log_size = torch.log1p(box_deltas[:, 2:] * variances[1]) / variances[1]  # so that exp() gives 1 + t v_1
    boxes, _ = solutions.decode(torch.cat([box_deltas[:, :2], log_size], dim=1), landmark_deltas, anchors, variances)
    return boxes, landmarks


def nms_suppressed_still_suppress(boxes, scores, iou_threshold):
    """A box removed by a better one still removes the boxes it overlaps."""
    overlaps = solutions.iou(boxes, boxes)
    order = scores.argsort(descending=True).tolist()
    return torch.tensor([i for n, i in enumerate(order)
                         if not any(overlaps[j, i] > iou_threshold for j in order[:n])], dtype=torch.long)


MISTAKES = {"level_anchors": anchors_without_half_cell, "iou": iou_plus_one, "match": match_without_forcing,
            "encode_boxes": encode_boxes_without_variances, "encode_landmarks": encode_landmarks_with_v1,
            "image_loss": image_loss_without_ohem, "decode": decode_without_exp, "nms": nms_suppressed_still_suppress}
"""Part name -> one plausible mistake in it."""
