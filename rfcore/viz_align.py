"""Pictures of face alignment (:mod:`rfcore.align`), in the manner of :mod:`rfcore.viz`.

:func:`render_alignment_grid` tiles the aligned crops of detected faces into
one image, with the template points marked; :func:`plot_alignment` puts the
detections (before) and that grid (after) side by side in a
:class:`~matplotlib.figure.Figure` built without ``pyplot``.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from matplotlib.figure import Figure

from rfcore.align import TEMPLATE_SIZE, align_faces, crop_size, template_points
from rfcore.draw import FACE_COLOR, check_image, draw_faces

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
        faces: ``F >= 1`` :class:`rfcore.detect.Face` objects or ``(5, 2)``
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
        faces: ``F >= 1`` :class:`rfcore.detect.Face` objects (boxes, scores, landmarks).
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
