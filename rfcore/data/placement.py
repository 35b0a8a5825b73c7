"""Where the faces of a synthetic image go: a square crop per face, largest first, never overlapping.

:func:`place_faces` tries random positions for each face's crop so that its
box lies inside the image and clear of every face already placed (so no
landmark is ever hidden; a face that finds no free place is left out), and
:func:`image_vertices` maps the faces' projected vertices from crop fractions
to image pixels.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

PLACEMENT_TRIES = 30
"""Random positions tried for a face before it is left out."""


class Placement(NamedTuple):
    """Where a face's square crop goes in the image.

    Attributes:
        index: The face's row in :class:`~rfcore.data.synthetic.FaceDraws`.
        x, y: Top-left corner of the crop in image pixels (may lie outside
            the image; the face box does not).
        side: Side of the crop in pixels.
    """

    index: int
    x: int
    y: int
    side: int


def place_faces(
    rng: np.random.Generator,
    fractions: np.ndarray,
    sizes: np.ndarray,
    image_size: tuple[int, int],
    max_render: int,
    edge: float,
) -> list[Placement]:
    """Choose a crop for every face that fits, largest first, without overlaps.

    Args:
        rng: Source of randomness.
        fractions: ``(F, V, 2)`` projected vertices as fractions of the crop side.
        sizes: ``(F,)`` wanted longer box side in pixels.
        image_size: ``(height, width)``.
        max_render: Render-size cap (sets how far the soft edge reaches).
        edge: Half-width of the faces' soft edge in render pixels (:data:`rfcore.data.synthetic.EDGE`).

    Returns:
        One :class:`Placement` per face that found room, in face order.
    """
    height, width = image_size
    low, high = fractions.min(axis=1), fractions.max(axis=1)  # (F, 2) box in crop fractions
    placed_boxes: list[np.ndarray] = []
    placements = []
    for index, size in enumerate(sizes):
        side = max(round(size / (high[index] - low[index]).max()), 1)
        # the soft edge reaches `edge` render pixels beyond the box: keep faces that far apart, and a pixel more
        margin = edge * side / min(side, max_render) + 1
        box_low, box_high = low[index] * side, high[index] * side
        x_range = (math.ceil(-box_low[0]), math.floor(width - box_high[0]))
        y_range = (math.ceil(-box_low[1]), math.floor(height - box_high[1]))
        if x_range[0] > x_range[1] or y_range[0] > y_range[1]:
            continue
        corners = np.stack([rng.integers(*x_range, endpoint=True, size=PLACEMENT_TRIES),
                            rng.integers(*y_range, endpoint=True, size=PLACEMENT_TRIES)], axis=1)  # (T, 2)
        boxes = np.concatenate([corners + box_low - margin, corners + box_high + margin], axis=1)  # (T, 4)
        free = ~overlaps_any(boxes, placed_boxes)
        if free.any():
            best = int(free.argmax())
            placed_boxes.append(boxes[best])
            placements.append(Placement(index, int(corners[best, 0]), int(corners[best, 1]), side))
    return placements


def overlaps_any(boxes: np.ndarray, others: list[np.ndarray]) -> np.ndarray:
    """``(T,)`` bool: box ``t`` of ``(T, 4)`` overlaps any of ``others`` (each ``(4,)``)."""
    if not others:
        return np.zeros(len(boxes), bool)
    other = np.stack(others)[None]  # (1, P, 4)
    boxes = boxes[:, None]  # (T, 1, 4)
    apart = (
        (boxes[..., 2] <= other[..., 0]) | (other[..., 2] <= boxes[..., 0])
        | (boxes[..., 3] <= other[..., 1]) | (other[..., 3] <= boxes[..., 1])
    )  # (T, P)
    return (~apart).any(axis=1)


def image_vertices(fractions: np.ndarray, placements: list[Placement]) -> np.ndarray:
    """Placed faces' vertices in image pixels: ``(F, V, 2)`` float64 crop fractions -> ``(P, V, 2)`` float32."""
    rows = [placement.index for placement in placements]
    corner = np.array([[p.x, p.y] for p in placements], np.float64).reshape(-1, 1, 2)  # (P, 1, 2)
    side = np.array([p.side for p in placements], np.float64).reshape(-1, 1, 1)  # (P, 1, 1)
    return (fractions[rows] * side + corner).astype(np.float32)
