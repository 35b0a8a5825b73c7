"""Pictures of notebook 03: a face's best anchor and its normalised box and landmark targets.

See :mod:`rfcore.viz` for the conventions (images, figures, bad input).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from torchvision.ops import box_iou

from rfcore.anchors import make_anchors
from rfcore.boxes import (
    as_landmarks,
    best_anchor_per_face,
    centre_distance2,
    cxcywh_to_xyxy,
    encode_boxes,
    encode_landmarks,
    has_landmarks,
    paired_iou,
)
from rfcore.config import RetinaFaceConfig
from rfcore.viz.draw import (
    FACE_COLOR,
    LANDMARK_COLORS,
    BadInput,
    Rendering,
    check_image,
    checked_face,
    draw_boxes,
    draw_landmarks,
    failed,
)


def place_face(box, landmarks, centre, scale):
    """Scale a face about its box centre and move that centre to ``centre``.

    Broadcasts over leading dimensions of ``centre`` and ``scale``, so one
    face can be turned into many.

    Args:
        box: ``(4,)`` face ``(x1, y1, x2, y2)``.
        landmarks: ``(5, 2)`` points of that face.
        centre: ``(..., 2)`` new box centre(s) in pixels.
        scale: ``(...)`` size factor(s).

    Returns:
        ``boxes`` ``(..., 4)`` and ``landmarks`` ``(..., 5, 2)``, float32.
    """
    box = torch.as_tensor(box, dtype=torch.float32)
    landmarks = torch.as_tensor(landmarks, dtype=torch.float32)
    centre = torch.as_tensor(centre, dtype=torch.float32)
    scale = torch.as_tensor(scale, dtype=torch.float32)[..., None]  # (..., 1)
    old_centre = (box[:2] + box[2:]) / 2
    corners = box.view(2, 2) - old_centre  # (2, 2) corners relative to the centre
    # (..., 1, 1) * (2, 2) + (..., 1, 2) -> (..., 2, 2) -> (..., 4)
    boxes = (scale[..., None] * corners + centre[..., None, :]).flatten(-2)
    points = scale[..., None] * (landmarks - old_centre) + centre[..., None, :]
    return boxes, points


def render_landmark_encoding(image, face_box, landmarks, cfg: RetinaFaceConfig, anchor=None) -> Rendering:
    """A face, its five landmarks and an anchor, with the targets the anchor must predict.

    Draws the anchor (white) with its centre, a line from the anchor centre
    to every landmark, the face box and the landmarks. The targets are
    :func:`rfcore.boxes.encode_boxes` and :func:`rfcore.boxes.encode_landmarks`
    with ``cfg.variances``.

    Args:
        image: ``(H, W, 3)`` uint8 RGB image.
        face_box: ``(4,)`` face ``(x1, y1, x2, y2)`` inside the image.
        landmarks: ``(5, 2)`` points of that face (not all ``-1``).
        cfg: Preset with the anchor layout and variances.
        anchor: ``(4,)`` anchor ``(cx, cy, w, h)``; default the face's best
            anchor in ``cfg``'s layout for this image size (highest IoU, ties
            to the nearest centre, :func:`rfcore.boxes.best_anchor_per_face`).

    Returns:
        A :class:`Rendering` whose ``info`` holds ``anchor`` ``(4,)``, its
        ``iou`` with the face, ``box_targets`` ``(4,)`` and
        ``landmark_targets`` ``(10,)`` tensors.
    """
    image = check_image(image)
    try:
        face = checked_face(face_box, image)
        points = _checked_landmarks(landmarks)
    except BadInput as exc:
        return failed(image, str(exc))

    anchor = _best_anchor(cfg, image, face) if anchor is None else torch.as_tensor(anchor, dtype=torch.float32)
    iou = float(paired_iou(cxcywh_to_xyxy(anchor)[None], face[None]))
    box_targets = encode_boxes(face, anchor, cfg.variances)
    landmark_targets = encode_landmarks(points, anchor, cfg.variances)

    canvas = draw_boxes(image, cxcywh_to_xyxy(anchor)[None], (255, 255, 255), [f"anchor {float(anchor[2]):.0f} px"])
    centre = tuple(round(v) for v in anchor[:2].tolist())
    for k, (x, y) in enumerate(points.tolist()):
        cv2.line(canvas, centre, (round(x), round(y)), LANDMARK_COLORS[k], 1, cv2.LINE_8)
    cv2.drawMarker(canvas, centre, (255, 255, 255), cv2.MARKER_CROSS, 9, 2)
    canvas = draw_landmarks(draw_boxes(canvas, face[None], FACE_COLOR, thickness=2), points)
    caption = "\n".join([
        f"anchor {float(anchor[2]):.1f} px at ({float(anchor[0]):.0f}, {float(anchor[1]):.0f}), "
        f"IoU with the face {iou:.2f}, variances {cfg.variances}",
        "box t = " + _format_numbers(box_targets),
        "landmarks l = " + _format_numbers(landmark_targets),
    ])
    info = {"anchor": anchor, "iou": iou, "box_targets": box_targets, "landmark_targets": landmark_targets}
    return Rendering(canvas, caption, "", info)


def render_moved_face(image, face_box, landmarks, cfg: RetinaFaceConfig, centre, scale: float) -> Rendering:
    """Move and scale a face (pixels and annotation), then :func:`render_landmark_encoding`.

    The image is scaled by ``scale`` about the face-box centre and shifted so
    that this centre lands on ``centre``; uncovered pixels are grey. The face
    is matched to its best anchor in the new place.

    Args:
        image: ``(H, W, 3)`` uint8 RGB image.
        face_box: ``(4,)`` face ``(x1, y1, x2, y2)``.
        landmarks: ``(5, 2)`` points of that face.
        cfg: Preset with the anchor layout and variances.
        centre: ``(x, y)`` new face-box centre in pixels.
        scale: Size factor, > 0.

    Returns:
        The :class:`Rendering` of :func:`render_landmark_encoding` for the
        moved face (its ``info`` also holds the moved ``box`` and ``landmarks``).
    """
    image = check_image(image)
    try:
        points = _checked_landmarks(landmarks)
        factor = _checked_scale(scale)
    except BadInput as exc:
        return failed(image, str(exc))
    box, points = place_face(face_box, points, centre, factor)
    old_centre = torch.as_tensor(face_box, dtype=torch.float32).view(2, 2).mean(dim=0)
    shift = torch.as_tensor(centre, dtype=torch.float32) - factor * old_centre
    warp = np.array([[factor, 0.0, float(shift[0])], [0.0, factor, float(shift[1])]])
    height, width = image.shape[:2]
    moved = cv2.warpAffine(image, warp, (width, height), flags=cv2.INTER_LINEAR, borderValue=(128, 128, 128))
    rendering = render_landmark_encoding(moved, box, points, cfg)
    return Rendering(rendering.image, rendering.caption, rendering.message,
                     {**rendering.info, "box": box, "landmarks": points} if rendering.ok else {})


def _format_numbers(values: torch.Tensor) -> str:
    return "(" + ", ".join(f"{v:+.2f}" for v in values.tolist()) + ")"


def _checked_landmarks(landmarks) -> torch.Tensor:
    """``(5, 2)`` annotated landmarks, or :class:`BadInput`."""
    try:
        points = as_landmarks(torch.as_tensor(landmarks, dtype=torch.float32).reshape(1, -1), 1)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise BadInput(f"landmarks must be 5 (x, y) points: {exc}") from None
    if not has_landmarks(points)[0]:
        raise BadInput("this face has no landmark annotation (all coordinates -1): nothing to encode")
    return points[0]


def _checked_scale(scale) -> float:
    try:
        factor = float(scale)
    except (TypeError, ValueError):
        factor = math.nan
    if not (math.isfinite(factor) and factor > 0):
        raise BadInput(f"scale must be a positive number, got {scale!r}")
    return factor


def _best_anchor(cfg: RetinaFaceConfig, image: np.ndarray, face: torch.Tensor) -> torch.Tensor:
    """The anchor a face is forced onto in ``cfg``'s layout: ``(4,)`` ``(cx, cy, w, h)``."""
    anchors = make_anchors(cfg, image.shape[:2])
    iou = box_iou(cxcywh_to_xyxy(anchors), face[None])  # (A, 1)
    best = best_anchor_per_face(iou, centre_distance2(anchors[:, None], face[None, None]))
    return anchors[best[0]]

