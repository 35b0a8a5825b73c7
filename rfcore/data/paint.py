"""Painting on synthetic images: shapes placed in a face's own frame, and blending them into pixels.

The options of :mod:`rfcore.data.variety` draw eyebrows, glasses, hats and the like
where a face's landmarks say its parts are. A face's frame (:func:`face_frames`) is
the affine map from face coordinates ``(u, v)`` to image pixels:

    p(u, v) = origin + u * across + v * down

with ``origin`` the midpoint of the eyes, ``across`` the vector from the left eye to
the right eye and ``down`` the vector from the eyes' midpoint to the mouth's. So the
eyes sit at ``(-0.5, 0)`` and ``(0.5, 0)``, the mouth corners near ``(±0.45, 1)``,
and a shape given in ``(u, v)`` follows the face's roll, yaw (foreshortened) and size.

Shapes are drawn into float masks in ``[0, 1]`` with sub-pixel coordinates, polygons
as their exact coverage (:func:`polygon_mask`), lines anti-aliased (:func:`line_mask`), then blended
(:func:`blend_colour`, :func:`scale_pixels`, in place on float32 images).
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

SUBPIXEL_BITS = 4
"""Fractional bits of the coordinates given to OpenCV's drawing functions (1/16 pixel)."""


class FaceFrames(NamedTuple):
    """The affine frames of ``F`` faces (module docstring), float64 image pixels.

    Attributes:
        origin: ``(F, 2)`` midpoint of the eyes.
        across: ``(F, 2)`` left eye to right eye.
        down: ``(F, 2)`` eyes' midpoint to the mouth corners' midpoint.
    """

    origin: np.ndarray
    across: np.ndarray
    down: np.ndarray


def face_frames(landmarks: np.ndarray) -> FaceFrames:
    """The frames of faces from their ``(F, 5, 2)`` landmarks (eyes, nose, mouth corners, left first)."""
    points = landmarks.astype(np.float64)
    eyes, mouth = points[:, :2].mean(axis=1), points[:, 3:].mean(axis=1)  # (F, 2) each
    return FaceFrames(eyes, points[:, 1] - points[:, 0], mouth - eyes)


def to_image(frames: FaceFrames, uv) -> np.ndarray:
    """Points ``(K, 2)`` (or ``(F, K, 2)``) in face coordinates -> ``(F, K, 2)`` image pixels."""
    uv = np.broadcast_to(np.asarray(uv, np.float64), (len(frames.origin), *np.shape(uv)[-2:]))  # (F, K, 2)
    return frames.origin[:, None] + uv[..., :1] * frames.across[:, None] + uv[..., 1:] * frames.down[:, None]


SUPERSAMPLING = 4
"""Polygons are filled at this many sub-pixels per pixel side and averaged: coverage, not a dilated edge."""


def _fixed(points: np.ndarray, scale: int = 1) -> np.ndarray:
    """``(K, 2)`` pixel coordinates (scaled by ``scale``) -> int32 with :data:`SUBPIXEL_BITS` fractional bits."""
    return np.rint((points * scale - 0.5) * (1 << SUBPIXEL_BITS)).astype(np.int32)  # pixel centres at +0.5


def polygon_mask(size: tuple[int, int], polygons) -> np.ndarray:
    """``(H, W)`` float32 coverage of filled polygons, each ``(K, 2)`` pixel coordinates.

    Each pixel's value is the share of its :data:`SUPERSAMPLING` x :data:`SUPERSAMPLING` sub-pixel centres
    that lie inside (OpenCV's own anti-aliased fill widens shapes by about half a pixel).
    """
    height, width = size
    mask = np.zeros(size, np.float32)
    polygons = [np.asarray(p, np.float64) for p in polygons]
    if not polygons:
        return mask
    points = np.concatenate(polygons)
    x0, y0 = np.clip(np.floor(points.min(axis=0)).astype(int), 0, (width, height))
    x1, y1 = np.clip(np.ceil(points.max(axis=0)).astype(int), 0, (width, height))
    if x1 <= x0 or y1 <= y0:
        return mask
    k = SUPERSAMPLING
    fine = np.zeros(((y1 - y0) * k, (x1 - x0) * k), np.uint8)
    cv2.fillPoly(fine, [_fixed(p - (x0, y0), k) for p in polygons], 255, cv2.LINE_8, SUBPIXEL_BITS)
    # (h k, w k) -> (h, w): the mean of each k x k block (area interpolation at an integer factor)
    mask[y0:y1, x0:x1] = cv2.resize(fine.astype(np.float32), (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA) / 255
    return mask


def line_mask(size: tuple[int, int], polylines, thickness: int) -> np.ndarray:
    """``(H, W)`` float32 anti-aliased coverage of open polylines (``(K, 2)`` each) ``thickness`` pixels wide."""
    mask = np.zeros(size, np.uint8)
    cv2.polylines(mask, [_fixed(np.asarray(p)) for p in polylines], False, 255, max(int(thickness), 1),
                  cv2.LINE_AA, SUBPIXEL_BITS)
    return mask.astype(np.float32) / 255


def ellipse_points(centre, axes, angle: float, count: int = 24) -> np.ndarray:
    """``(count, 2)`` points on an ellipse: ``centre`` ``(2,)``, half-axes ``(2,)``, ``angle`` in radians."""
    t = np.linspace(0, 2 * np.pi, count, endpoint=False)
    local = np.stack([axes[0] * np.cos(t), axes[1] * np.sin(t)], axis=1)  # (count, 2)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return np.asarray(centre, np.float64) + local @ rotation.T


def frame_ellipse(frames: FaceFrames, face: int, centre, axes, count: int = 24) -> np.ndarray:
    """``(count, 2)`` image points of an ellipse given in face coordinates (it shears with the frame)."""
    t = np.linspace(0, 2 * np.pi, count, endpoint=False)
    uv = np.asarray(centre, np.float64) + np.stack([axes[0] * np.cos(t), axes[1] * np.sin(t)], axis=1)
    return to_image(frames, uv)[face]


def covered_region(mask: np.ndarray) -> tuple[slice, slice]:
    """The rows and columns of the bounding box of ``mask``'s non-zero pixels (empty slices if none)."""
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return slice(0, 0), slice(0, 0)
    return slice(rows[0], rows[-1] + 1), slice(columns[0], columns[-1] + 1)


def blend_colour(image: np.ndarray, mask: np.ndarray, colour) -> np.ndarray:
    """``(H, W, 3)`` float32: ``image`` turned towards an RGB ``colour`` by ``mask`` ``(H, W)`` in ``[0, 1]``.

    A float32 ``image`` is changed in place (and returned); another is copied first.
    """
    out = image if image.dtype == np.float32 else image.astype(np.float32)
    region = covered_region(mask)
    part = out[region]
    part += mask[region][..., None] * (np.asarray(colour, np.float32) - part)
    return out


def scale_pixels(image: np.ndarray, mask: np.ndarray, factor) -> np.ndarray:
    """``(H, W, 3)`` float32: ``image`` multiplied by ``factor`` (scalar or RGB) where ``mask`` is 1 (in place,
    as :func:`blend_colour`)."""
    out = image if image.dtype == np.float32 else image.astype(np.float32)
    region = covered_region(mask)
    out[region] *= 1 + mask[region][..., None] * (np.asarray(factor, np.float32) - 1)
    return out


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Round and clip a float image to ``(H, W, 3)`` uint8."""
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)
