"""Boxes and landmarks relative to anchors: IoU, matching, encoding, decoding.

Conventions used across rfcore:

* anchors are ``(cx, cy, w, h)`` in pixels (see :mod:`rfcore.anchors`);
* face boxes are ``(x1, y1, x2, y2)`` in pixels;
* landmarks are ``(5, 2)`` points per face: left eye, right eye, nose tip, left and right mouth corner;
  all ten coordinates ``-1`` mean no landmark annotation;
* encoded targets are flat: 4 numbers per box, 10 per face's landmarks, as the heads emit them.

The encoding is Fast R-CNN's / SSD's with the variances of biubug6/Pytorch_Retinaface
(utils/box_utils.py): for an anchor with centre ``(a_x, a_y)`` and size ``(a_w, a_h)``

    t_x = (g_x - a_x) / (v_0 a_w)        t_w = log(g_w / a_w) / v_1
    l_kx = (p_kx - a_x) / (v_0 a_w)      (and the same for y with a_h)

so a face the size of its anchor, centred on it, has target zero whatever the
pyramid level.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torchvision.ops import box_iou

POSITIVE, NEGATIVE, IGNORED = 1, 0, -1
"""Anchor labels produced by matching."""

IOU_TIE_TOLERANCE = 1e-5
"""Relative difference below which two IoUs count as a tie when forcing faces."""

MISSING = -1.0
"""Every landmark coordinate of a face without landmark annotation (WIDER FACE's mark)."""

FLIP_ORDER = [1, 0, 2, 4, 3]
"""Landmark order after a horizontal flip: the left and right eyes and mouth corners swap."""


def as_boxes(boxes, what: str = "boxes") -> torch.Tensor:
    """Validate face boxes and return them as a floating tensor.

    Args:
        boxes: ``(..., 4)`` array-like of ``(x1, y1, x2, y2)``.
        what: Name used in error messages.

    Returns:
        The boxes as a floating ``torch.Tensor`` (float32 unless already floating).

    Raises:
        ValueError: Wrong shape, a non-finite coordinate, or ``x2 < x1`` /
            ``y2 < y1``; the message names the first offending box.
    """
    boxes = _as_float_tensor(boxes, what)
    if boxes.ndim < 1 or boxes.shape[-1] != 4:
        raise ValueError(f"{what} must have shape (..., 4) as (x1, y1, x2, y2), got {tuple(boxes.shape)}")
    _check_finite(boxes.reshape(-1, 4), what)
    flat = boxes.reshape(-1, 4)
    inverted = (flat[:, 2] < flat[:, 0]) | (flat[:, 3] < flat[:, 1])
    if inverted.any():
        i = int(inverted.nonzero()[0])
        raise ValueError(f"{what}: box {i} has x2 < x1 or y2 < y1: {flat[i].tolist()}")
    return boxes


def as_landmarks(landmarks, num_faces: int, what: str = "landmarks") -> torch.Tensor:
    """Validate landmarks and return them as a ``(F, 5, 2)`` floating tensor.

    Args:
        landmarks: ``(F, 5, 2)`` or ``(F, 10)`` array-like; ``None`` means no
            face is annotated (all coordinates ``-1``).
        num_faces: Expected ``F``.
        what: Name used in error messages.

    Raises:
        ValueError: Wrong shape or a non-finite coordinate.
    """
    if landmarks is None:
        return torch.full((num_faces, 5, 2), -1.0)
    landmarks = _as_float_tensor(landmarks, what)
    if landmarks.shape not in ((num_faces, 5, 2), (num_faces, 10)):
        raise ValueError(
            f"{what} must have shape ({num_faces}, 5, 2) or ({num_faces}, 10), got {tuple(landmarks.shape)}"
        )
    landmarks = landmarks.reshape(num_faces, 5, 2)
    _check_finite(landmarks.reshape(num_faces, 10), what)
    return landmarks


def has_landmarks(landmarks):
    """``(F, 5, 2) -> (F,)`` bool: False where all ten coordinates are :data:`MISSING` (torch or numpy, as given)."""
    return ~(landmarks == MISSING).reshape(-1, 10).all(1)  # (F, 5, 2) -> (F, 10) -> (F,)


def _as_float_tensor(values, what: str) -> torch.Tensor:
    try:
        tensor = torch.as_tensor(values)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{what} cannot be read as a tensor: {exc}") from None
    return tensor if tensor.is_floating_point() else tensor.float()


def _check_finite(rows: torch.Tensor, what: str) -> None:
    bad = ~torch.isfinite(rows).all(dim=1)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ValueError(f"{what}: entry {i} has a NaN or infinite coordinate: {rows[i].tolist()}")


def flip_boxes(boxes, width: float):
    """``(..., 4)`` boxes ``(x1, y1, x2, y2)`` of an image mirrored left to right: ``x -> width - x``.

    Works on numpy arrays and tensors alike and returns a new one; pixel ``i`` spans ``[i, i + 1]``, so
    flipping twice gives the boxes back.
    """
    flipped = boxes[..., [2, 1, 0, 3]]  # fancy indexing copies
    flipped[..., [0, 2]] = width - flipped[..., [0, 2]]
    return flipped


def flip_landmarks(landmarks, width: float):
    """``(..., 5, 2)`` landmarks of an image mirrored left to right: ``x -> width - x`` and :data:`FLIP_ORDER`.

    The image's left eye becomes its right eye, so the pairs swap to keep "left" meaning the smaller ``x``.
    Works on numpy arrays and tensors alike and returns a new one.
    """
    flipped = landmarks[..., FLIP_ORDER, :]  # fancy indexing copies
    flipped[..., 0] = width - flipped[..., 0]
    return flipped


def image_left_first(landmarks):
    """``(..., 5, 2)`` points with each eye pair and mouth-corner pair ordered by image ``x``, the smaller first.

    WIDER FACE names the points by where they lie in the image, not by the face's own left and right; points
    projected from a 3D face (its left eye is the image's right one when it faces the camera) are put in that
    order. Works on numpy arrays and tensors alike and returns a new one.
    """
    xp = torch if isinstance(landmarks, torch.Tensor) else np
    eyes = landmarks[..., 0, 0] > landmarks[..., 1, 0]  # (...,)
    mouth = landmarks[..., 3, 0] > landmarks[..., 4, 0]
    swap = xp.stack([eyes, eyes, xp.zeros_like(eyes), mouth, mouth], -1)[..., None]  # (..., 5, 1)
    return xp.where(swap, landmarks[..., FLIP_ORDER, :], landmarks)


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` ``(cx, cy, w, h)`` -> ``(x1, y1, x2, y2)``."""
    centre, size = boxes[..., :2], boxes[..., 2:]
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` ``(x1, y1, x2, y2)`` -> ``(cx, cy, w, h)``."""
    corner1, corner2 = boxes[..., :2], boxes[..., 2:]
    return torch.cat([(corner1 + corner2) / 2, corner2 - corner1], dim=-1)


def paired_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """IoU of corresponding boxes, ``(P, 4), (P, 4) -> (P,)`` (both ``xyxy``).

    Computed by :func:`torchvision.ops.box_iou` on 1x1 blocks, so each value is
    bit-for-bit the entry the full IoU matrix would hold.
    """
    # (P, 1, 4) x (P, 1, 4) -> (P, 1, 1) -> (P,)
    return box_iou(boxes1[:, None], boxes2[:, None]).reshape(-1)


def centre_distance2(anchors: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Squared distance between anchor and box centres, broadcasting.

    Args:
        anchors: ``(..., 4)`` ``(cx, cy, w, h)``.
        boxes: ``(..., 4)`` ``(x1, y1, x2, y2)``, broadcastable with ``anchors``.

    Returns:
        ``(...)`` squared distances in pixels squared.
    """
    dx = anchors[..., 0] - (boxes[..., 0] + boxes[..., 2]) / 2
    dy = anchors[..., 1] - (boxes[..., 1] + boxes[..., 3]) / 2
    return dx * dx + dy * dy


def best_anchor_per_face(iou: torch.Tensor, distance2: torch.Tensor) -> torch.Tensor:
    """The anchor each face is forced onto, ``(A, F), (A, F) -> (F,)``.

    The anchor with the highest IoU; among equal IoUs (a tiny face inside
    several anchors of one size) the one whose centre is nearest the face
    centre, then the lowest anchor index. IoUs within a relative
    :data:`IOU_TIE_TOLERANCE` count as equal: the areas of equal anchors at
    different places round differently in float32.
    """
    top = iou.max(dim=0, keepdim=True).values
    distance2 = distance2.masked_fill(iou < top * (1 - IOU_TIE_TOLERANCE), float("inf"))
    return distance2.argmin(dim=0)  # argmin returns the first of equal minima


class Match(NamedTuple):
    """Per-anchor result of matching one image.

    Attributes:
        labels: ``(A,)`` int64, :data:`POSITIVE`, :data:`NEGATIVE` or :data:`IGNORED`.
        matched_idxs: ``(A,)`` int64 index of the matched face for positive
            anchors, ``-1`` elsewhere.
    """

    labels: torch.Tensor
    matched_idxs: torch.Tensor


def match_anchors(anchors: torch.Tensor, boxes: torch.Tensor, pos_iou: float, neg_iou: float) -> Match:
    """Label every anchor of one image from its IoU with the faces.

    The rule [paper §4.2]: an anchor whose best IoU with any face is
    ``>= pos_iou`` is positive and matches that face (the lowest face index on
    ties); ``< neg_iou`` is negative; in between it is ignored. Then every face
    with any overlap is forced onto its best anchor (:func:`best_anchor_per_face`)
    so that no face goes unmatched; when several faces pick the same anchor,
    the face with the highest IoU with it wins.

    This dense version computes the whole ``(A, F)`` IoU matrix: it is the
    definition, used for teaching and as the reference in tests.
    :class:`rfcore.matching.TargetAssigner` gives identical results on a batch
    far faster by only looking near each face.

    Args:
        anchors: ``(A, 4)`` anchors ``(cx, cy, w, h)``.
        boxes: ``(F, 4)`` faces ``(x1, y1, x2, y2)``; ``F`` may be 0.
        pos_iou: Positive threshold.
        neg_iou: Negative threshold (``<= pos_iou``).

    Returns:
        A :class:`Match`.
    """
    if anchors.ndim != 2 or anchors.shape[1] != 4:
        raise ValueError(f"anchors must have shape (A, 4) as (cx, cy, w, h), got {tuple(anchors.shape)}")
    boxes = as_boxes(boxes, "faces")
    if boxes.ndim != 2:
        raise ValueError(f"faces must have shape (F, 4), got {tuple(boxes.shape)}")
    num_anchors, num_faces = anchors.shape[0], boxes.shape[0]
    labels = torch.full((num_anchors,), NEGATIVE, dtype=torch.long)
    matched = torch.full((num_anchors,), -1, dtype=torch.long)
    if num_faces == 0:
        return Match(labels, matched)

    iou = box_iou(cxcywh_to_xyxy(anchors), boxes)  # (A, F)
    return label_anchors(iou, centre_distance2(anchors[:, None], boxes[None]), pos_iou, neg_iou)


def label_anchors(iou: torch.Tensor, distance2: torch.Tensor, pos_iou: float, neg_iou: float) -> Match:
    """The rule of :func:`match_anchors` on a given ``(A, F)`` IoU matrix, with ``F >= 1`` faces.

    Args:
        iou: ``(A, F)`` IoU of every anchor with every face.
        distance2: ``(A, F)`` squared centre distances, which break ties among
            a face's best anchors (:func:`best_anchor_per_face`); zeros leave
            them to the lowest anchor index.
        pos_iou: Positive threshold.
        neg_iou: Negative threshold (``<= pos_iou``).

    Returns:
        A :class:`Match`.
    """
    num_anchors, num_faces = iou.shape
    labels = torch.full((num_anchors,), NEGATIVE, dtype=torch.long)
    best_iou, best_face = iou.max(dim=1)  # max returns the first of equal maxima
    labels[best_iou >= neg_iou] = IGNORED
    labels[best_iou >= pos_iou] = POSITIVE

    forced_anchor = best_anchor_per_face(iou, distance2)
    faces = torch.arange(num_faces)
    overlapping = iou[forced_anchor, faces] > 0
    forced = torch.zeros_like(iou, dtype=torch.bool)
    forced[forced_anchor[overlapping], faces[overlapping]] = True
    forced_face = iou.masked_fill(~forced, -1.0).argmax(dim=1)
    is_forced = forced.any(dim=1)
    labels[is_forced] = POSITIVE
    best_face = torch.where(is_forced, forced_face, best_face)

    matched = torch.where(labels == POSITIVE, best_face, -1)
    return Match(labels, matched)


def encode_boxes(boxes: torch.Tensor, anchors: torch.Tensor, variances: tuple[float, float]) -> torch.Tensor:
    """Regression targets of faces relative to their anchors.

    Args:
        boxes: ``(..., 4)`` faces ``(x1, y1, x2, y2)`` with positive size.
        anchors: ``(..., 4)`` matching anchors ``(cx, cy, w, h)``.
        variances: ``(v_0, v_1)`` scale factors for centre and size.

    Returns:
        ``(..., 4)`` targets ``(t_x, t_y, t_w, t_h)``.
    """
    faces = xyxy_to_cxcywh(boxes)
    centre = (faces[..., :2] - anchors[..., :2]) / (variances[0] * anchors[..., 2:])
    size = torch.log(faces[..., 2:] / anchors[..., 2:]) / variances[1]
    return torch.cat([centre, size], dim=-1)


def decode_boxes(deltas: torch.Tensor, anchors: torch.Tensor, variances: tuple[float, float]) -> torch.Tensor:
    """Inverse of :func:`encode_boxes`: ``(..., 4)`` deltas -> ``(..., 4)`` ``xyxy`` boxes."""
    centre = anchors[..., :2] + deltas[..., :2] * variances[0] * anchors[..., 2:]
    size = anchors[..., 2:] * torch.exp(deltas[..., 2:] * variances[1])
    return cxcywh_to_xyxy(torch.cat([centre, size], dim=-1))


def encode_landmarks(
    landmarks: torch.Tensor, anchors: torch.Tensor, variances: tuple[float, float]
) -> torch.Tensor:
    """Landmark targets: offsets from the anchor centre in units of ``v_0`` anchor sizes.

    Args:
        landmarks: ``(..., 5, 2)`` points in pixels.
        anchors: ``(..., 4)`` matching anchors ``(cx, cy, w, h)``.
        variances: ``(v_0, v_1)``; only ``v_0`` is used.

    Returns:
        ``(..., 10)`` targets ``(l_1x, l_1y, ..., l_5x, l_5y)``.
    """
    centre, size = anchors[..., None, :2], anchors[..., None, 2:]
    # (..., 5, 2) -> (..., 10)
    return ((landmarks - centre) / (variances[0] * size)).flatten(-2)


def decode_landmarks(
    deltas: torch.Tensor, anchors: torch.Tensor, variances: tuple[float, float]
) -> torch.Tensor:
    """Inverse of :func:`encode_landmarks`: ``(..., 10)`` -> ``(..., 5, 2)`` points in pixels."""
    centre, size = anchors[..., None, :2], anchors[..., None, 2:]
    # (..., 10) -> (..., 5, 2)
    points = deltas.unflatten(-1, (5, 2))
    return centre + points * variances[0] * size
