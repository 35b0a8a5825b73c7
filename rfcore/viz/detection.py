"""Pictures of notebook 00: detections above a score threshold against an annotation, and aligned crops.

:func:`render_threshold` colours the faces above a threshold by whether they
hit an annotated face; :func:`render_alignment_grid` tiles the aligned crops
of detected faces (:mod:`rfcore.align`) with the template points marked, and
:func:`plot_alignment` puts the detections and that grid side by side. See
:mod:`rfcore.viz` for the conventions.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from matplotlib.figure import Figure
from torchvision.ops import box_iou

from rfcore.align import TEMPLATE_SIZE, align_faces, crop_size, template_points
from rfcore.viz.draw import (
    FACE_COLOR,
    MISSED_COLOR,
    NEGATIVE_COLOR,
    BadInput,
    Rendering,
    check_image,
    checked_faces,
    draw_boxes,
    draw_faces,
    failed,
    line_width,
)

GRID_BACKGROUND = 255
"""Grey level between the tiles of :func:`render_alignment_grid`."""

TEMPLATE_COLOR = (255, 255, 255)
"""Colour of the template points marked on each crop."""


def render_alignment_grid(
    image, faces: Sequence, size=TEMPLATE_SIZE, columns: int = 5, pad: int = 4, annotate: bool = True
) -> np.ndarray:
    """The aligned crops of ``faces`` tiled row by row, in the order of ``faces``.

    Args:
        image: ``(H, W, 3)`` uint8 RGB image the faces were found in.
        faces: ``F >= 1`` :class:`rfcore.postprocess.Face` objects or ``(5, 2)``
            landmark arrays.
        size: Crop size, an int or ``(width, height)`` (see :mod:`rfcore.align`).
        columns: Tiles per row.
        pad: Pixels of :data:`GRID_BACKGROUND` around and between the tiles.
        annotate: Mark the template points (white dots), where every face's
            landmarks should now be, and write each face's number in the
            top-left corner of its tile.

    Returns:
        ``(rows * (h + pad) + pad, c * (w + pad) + pad, 3)`` uint8 RGB, with
        ``rows = ceil(F / columns)``, ``c = min(F, columns)`` and tile ``k``
        at row ``k // columns``, column ``k % columns``.

    Raises:
        ValueError: For an image that is not ``(H, W, 3)`` uint8, no faces,
            ``columns < 1``, ``pad < 0`` or landmarks that cannot be aligned.
    """
    crops = align_faces(check_image(image), faces, size)
    if not crops or columns < 1 or pad < 0:
        raise ValueError(f"need at least one face, columns >= 1 and pad >= 0, got {len(crops)}, {columns}, {pad}")
    width, height = crop_size(size)
    rows, cols = -(-len(crops) // columns), min(len(crops), columns)
    grid = np.full((rows * (height + pad) + pad, cols * (width + pad) + pad, 3), GRID_BACKGROUND, np.uint8)
    marks = np.rint(template_points(size)).astype(int).tolist()  # (5, 2) x, y
    for k, crop in enumerate(crops):
        if annotate:
            for x, y in marks:
                cv2.circle(crop, (x, y), 1, TEMPLATE_COLOR, -1, cv2.LINE_8)
            cv2.putText(crop, str(k), (3, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, FACE_COLOR, 1, cv2.LINE_8)
        top, left = pad + (k // columns) * (height + pad), pad + (k % columns) * (width + pad)
        grid[top : top + height, left : left + width] = crop
    return grid


def plot_alignment(image, faces: Sequence, size=TEMPLATE_SIZE, columns: int = 5) -> Figure:
    """Before and after: the detected faces, numbered, and their aligned crops in the same order.

    Args:
        image: ``(H, W, 3)`` uint8 RGB image.
        faces: ``F >= 1`` :class:`rfcore.postprocess.Face` objects (boxes, scores, landmarks).
        size: Crop size, an int or ``(width, height)``.
        columns: Crops per row of the grid.

    Returns:
        A Figure with two panels: the image with boxes numbered ``0 .. F-1``
        (text above each box) and landmarks, and :func:`render_alignment_grid`.
    """
    drawing = draw_faces(image, faces, scores=False)
    grid = render_alignment_grid(image, faces, size, columns)
    width, height = crop_size(size)
    aspects = [drawing.shape[1] / drawing.shape[0], grid.shape[1] / grid.shape[0]]
    fig = Figure(figsize=(12, 12 / sum(aspects) + 0.6), layout="constrained")
    before, after = fig.subplots(1, 2, width_ratios=aspects)
    before.imshow(drawing)
    for k, face in enumerate(faces):
        before.text(face.box[0], face.box[1] - 3, str(k), color=np.array(FACE_COLOR) / 255, fontsize=9, va="bottom")
    before.set_title(f"detected: {len(faces)} faces, numbered by score", fontsize=10)
    after.imshow(grid)
    after.set_title(f"aligned {width}x{height} crops, numbered alike (template points in white)", fontsize=10)
    for ax in (before, after):
        ax.set_axis_off()
    return fig


def render_threshold(image, faces, threshold: float, truth_boxes=None, match_iou: float = 0.5) -> Rendering:
    """The faces whose score exceeds ``threshold``, checked against annotated faces if given.

    The detector keeps a face when its probability ``p > threshold``.
    Keeping the faces of a run at a lower threshold that pass this one gives
    the faces of a run at this threshold: NMS visits faces by descending
    score, so a face above the threshold can only have been suppressed by a
    higher-scoring one (as long as ``top_k`` and ``max_faces`` cut nothing).

    Kept faces are drawn with :func:`draw_faces`, in ``FACE_COLOR`` when
    they overlap an annotated face with IoU >= ``match_iou`` and in
    ``NEGATIVE_COLOR`` otherwise; annotated faces that no kept face
    overlaps that much are outlined in ``MISSED_COLOR``. (Counting is per
    face, not the one-to-one matching of the evaluation protocol.)

    Args:
        image: ``(H, W, 3)`` uint8 RGB image.
        faces: Faces detected at a threshold at most ``threshold`` (see
            :func:`draw_faces`).
        threshold: Score a face must exceed, in ``[0, 1)``.
        truth_boxes: Optional ``(T, 4)`` annotated faces ``(x1, y1, x2, y2)``
            inside the image.
        match_iou: IoU from which a face counts as found.

    Returns:
        A :class:`Rendering` whose ``info`` holds ``threshold`` and ``faces``
        (the kept ones), and with ``truth_boxes`` the counts ``matched``
        (kept faces on an annotated face), ``false`` (the other kept faces)
        and ``missed`` (annotated faces no kept face found).
    """
    image = check_image(image)
    try:
        _check_score_threshold(threshold)
        truth = None if truth_boxes is None else checked_faces(truth_boxes, image)
    except BadInput as exc:
        return failed(image, str(exc))

    kept = [face for face in faces if face.score > threshold]
    caption = f"score > {threshold:.2f}: {len(kept)} face{'' if len(kept) == 1 else 's'}"
    if truth is None:
        return Rendering(draw_faces(image, kept), caption, "", {"threshold": threshold, "faces": kept})
    boxes = torch.tensor([face.box for face in kept], dtype=torch.float32).reshape(-1, 4)
    hits = box_iou(boxes, truth) >= match_iou  # (K, T)
    matched, found = hits.any(dim=1), hits.any(dim=0)
    counts = {"matched": int(matched.sum()), "false": int((~matched).sum()), "missed": int((~found).sum())}
    colors = np.where(matched.numpy()[:, None], FACE_COLOR, NEGATIVE_COLOR)
    canvas = draw_boxes(draw_faces(image, kept, colors), truth[~found], MISSED_COLOR, thickness=line_width(image))
    caption += (
        f", {counts['matched']} on an annotated face (IoU >= {match_iou}), {counts['false']} elsewhere; "
        f"{counts['missed']} of {len(truth)} annotated faces missed"
    )
    return Rendering(canvas, caption, "", {"threshold": threshold, "faces": kept, **counts})


def _check_score_threshold(threshold) -> None:
    if not 0 <= threshold < 1:
        raise BadInput(f"score threshold must be in [0, 1), got {threshold}")
