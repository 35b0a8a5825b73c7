"""One training image with its faces, as the data pipeline passes it around.

Images stay ``(H, W, 3)`` uint8 RGB numpy arrays until they are batched
(:func:`rfcore.data.collate.collate_faces`); boxes and landmarks follow the
conventions of :mod:`rfcore.boxes` (``x1 y1 x2 y2`` in pixels, five points per
face, all ten coordinates ``-1`` for a face without landmark annotation).
Coordinates are continuous: the image covers ``[0, W] x [0, H]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rfcore.boxes import MISSING, has_landmarks

__all__ = ["MISSING", "FaceSample"]


@dataclass(frozen=True)
class FaceSample:
    """An image and its annotated faces.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        boxes: ``(F, 4)`` float32 faces ``(x1, y1, x2, y2)``; ``F`` may be 0.
        landmarks: ``(F, 5, 2)`` float32 points, all :data:`MISSING` for a
            face without landmarks.
        path: Where the image came from, for error messages and display.
    """

    image: np.ndarray
    boxes: np.ndarray
    landmarks: np.ndarray
    path: str = field(default="", compare=False)

    @property
    def has_landmarks(self) -> np.ndarray:
        """``(F,)`` bool: the face has a landmark annotation."""
        return has_landmarks(self.landmarks)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        return self.image.shape[0], self.image.shape[1]

