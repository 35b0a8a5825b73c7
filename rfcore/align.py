"""Aligned face crops for a face recogniser, from the five detected landmarks [paper §4.7].

Recognisers such as ArcFace are trained on faces whose five landmarks sit on fixed points of a 112x112
crop (:data:`ARCFACE_TEMPLATE`). Aligning a detected face finds the least-squares similarity transform
from its landmarks onto the template (:func:`similarity_transform`, Umeyama's closed form) and warps the
image with it. A crop ``size`` is an int (square) or ``(width, height)``: the template is scaled by
``height / 112`` and shifted horizontally by ``(width - height) / 2``, so it stays centred (96x112 is the
usual shift of every x by -8 pixels, 224x224 the template doubled). Coordinates follow OpenCV's
:func:`cv2.warpAffine`: a landmark at ``(x, y)`` lands at ``M @ (x, y, 1)`` in the crop.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)
"""``(5, 2)`` landmark positions ``(x, y)`` in a 112x112 ArcFace crop."""

TEMPLATE_SIZE = 112
"""Side of the square crop :data:`ARCFACE_TEMPLATE` is given for."""

COLLINEAR_RATIO = 1e-3
"""Landmarks whose spread across their main line is below this share of the spread along it are collinear."""


MAX_CROP_SIDE = 4096
"""Largest side of an aligned crop (48 MB of RGB); recognisers take 112 to 224."""


def crop_size(size) -> tuple[int, int]:
    """``(width, height)`` of a crop from an int (square) or a ``(width, height)`` pair.

    Raises:
        ValueError: If ``size`` is not a positive int or a pair of them, or a side exceeds :data:`MAX_CROP_SIDE`.
    """
    pair = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and v >= 1 for v in pair):
        raise ValueError(f"size must be a positive int or (width, height) of positive ints, got {size!r}")
    if max(pair) > MAX_CROP_SIDE:
        raise ValueError(f"size must be at most {MAX_CROP_SIDE} pixels a side, got {size!r}")
    return int(pair[0]), int(pair[1])


def parse_size(text: str) -> tuple[int, int]:
    """``"112"`` -> ``(112, 112)``, ``"96x112"`` -> ``(96, 112)``: a crop size as the command line writes it.

    Raises:
        ValueError: Naming the text and the expected forms.
    """
    parts = text.lower().split("x")
    try:
        numbers = [int(part) for part in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in (1, 2) or min(numbers) < 1:
        raise ValueError(f"crop size must be SIDE or WIDTHxHEIGHT in pixels (e.g. 112 or 96x112), got {text!r}")
    if max(numbers) > MAX_CROP_SIDE:
        raise ValueError(f"crop size must be at most {MAX_CROP_SIDE} pixels a side, got {text!r}")
    return crop_size(numbers[0] if len(numbers) == 1 else tuple(numbers))


def template_points(size=TEMPLATE_SIZE) -> np.ndarray:
    """The ArcFace template for a crop of ``size``: scaled by ``height / 112``, centred horizontally.

    Args:
        size: An int (square crop) or ``(width, height)``.

    Returns:
        ``(5, 2)`` float64 points ``(x, y)`` in crop pixels.
    """
    width, height = crop_size(size)
    points = ARCFACE_TEMPLATE * (height / TEMPLATE_SIZE)
    points[:, 0] += (width - height) / 2
    return points


def as_landmarks(face) -> np.ndarray:
    """Five landmarks as a ``(5, 2)`` float64 array, from a :class:`rfcore.postprocess.Face` or an array.

    Raises:
        ValueError: If they are not five finite ``(x, y)`` points.
    """
    points = np.asarray(getattr(face, "landmarks", face), dtype=np.float64)
    if points.shape != (5, 2):
        raise ValueError(f"landmarks must be five (x, y) points, shape (5, 2), got shape {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError(f"landmarks must be finite, got {points.tolist()}")
    return points


def check_spread(points: np.ndarray) -> None:
    """Raise ``ValueError`` if ``(N, 2)`` points coincide or lie on one line: no rotation would fit them."""
    centred = points - points.mean(axis=0)
    spread = np.linalg.svd(centred, compute_uv=False)  # (2,) along and across the main line
    if spread[0] <= 1e-9:
        x, y = points[0]
        hint = " (a face without landmarks has them all at -1)" if (x, y) == (-1.0, -1.0) else ""
        raise ValueError(f"landmarks are degenerate: all at the same point ({x:g}, {y:g}){hint}")
    if spread[1] <= COLLINEAR_RATIO * spread[0]:
        raise ValueError(f"landmarks are degenerate: they lie on one line, {np.round(points, 2).tolist()}")


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama) mapping ``src`` points onto ``dst`` points.

    It minimises ``sum_i || q_i - (s R p_i + t) ||^2`` over rotation ``R``, scale ``s`` and translation ``t``
    (Umeyama, "Least-squares estimation of transformation parameters between two point patterns", TPAMI 1991):
    with centred points ``p'_i``, ``q'_i``, the cross-covariance ``Sigma = 1/n sum_i q'_i p'_i^T = U D V^T``
    and ``sigma_p^2 = 1/n sum_i ||p'_i||^2``, ``R = U V^T``, ``s = trace(D) / sigma_p^2`` and
    ``t = mean(q) - s R mean(p)``. When ``det(Sigma) < 0`` the best fit is a reflection (landmarks in
    mirrored order, left and right swapped): that raises instead of returning a rotation that does not fit.

    Args:
        src: ``(N, 2)`` points, N >= 2, not all on one line.
        dst: ``(N, 2)`` points they should land on.

    Returns:
        ``(2, 3)`` float64 matrix ``M = [s R | t]``: ``dst ~ src @ M[:, :2].T + M[:, 2]``.

    Raises:
        ValueError: If ``src`` is degenerate (:func:`check_spread`), or the
            best fit is a reflection (``src`` is mirrored relative to ``dst``).
    """
    src, dst = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    check_spread(src)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    covariance = dst_c.T @ src_c / len(src)  # (2, 2) Sigma
    if np.linalg.det(covariance) < 0:
        raise ValueError(
            "landmarks are in mirrored order: only a reflection maps them onto the template; expected left eye, "
            "right eye, nose tip, left mouth corner, right mouth corner, with left the image's left "
            f"(got {np.round(src, 1).tolist()})"
        )
    u, singular, vt = np.linalg.svd(covariance)
    rotation = u @ vt
    scale = singular.sum() / (src_c**2).sum(axis=1).mean()
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def alignment_matrix(landmarks, size=TEMPLATE_SIZE) -> np.ndarray:
    """``(2, 3)`` similarity taking a face's ``(5, 2)`` landmarks onto the template of a ``size`` crop."""
    return similarity_transform(as_landmarks(landmarks), template_points(size))


def align_face(image: np.ndarray, landmarks, size=TEMPLATE_SIZE) -> np.ndarray:
    """One aligned crop: the image warped so the face's landmarks fall on the template.

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` array OpenCV can warp (uint8 RGB
            from :func:`rfcore.image.read_image`, say).
        landmarks: A :class:`rfcore.postprocess.Face` or ``(5, 2)`` points in
            ``image`` pixels.
        size: Crop size, an int or ``(width, height)``.

    Returns:
        ``(height, width)`` or ``(height, width, C)`` crop of ``image``'s
        dtype; outside the image is black.

    Raises:
        ValueError: For an empty or non-image array, or landmarks that are
            malformed, degenerate or mirrored.
    """
    return warp(checked_image(image), alignment_matrix(landmarks, size), size)


def align_faces(image: np.ndarray, faces: Sequence, size=TEMPLATE_SIZE) -> list[np.ndarray]:
    """Aligned crops of several faces of one image (:func:`align_face` for each).

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` array.
        faces: ``F`` :class:`rfcore.postprocess.Face` objects or ``(5, 2)``
            landmark arrays (an ``(F, 5, 2)`` array works too).
        size: Crop size, an int or ``(width, height)``; e.g. 112 or (96, 112).

    Returns:
        ``F`` crops, in the order of ``faces``.

    Raises:
        ValueError: For a bad image or size, or naming the first face whose
            landmarks cannot be aligned.
    """
    image, template = checked_image(image), template_points(size)
    crops = []
    for k, face in enumerate(faces):
        try:
            matrix = similarity_transform(as_landmarks(face), template)
        except ValueError as err:
            raise ValueError(f"face {k}: {err}") from None
        crops.append(warp(image, matrix, size))
    return crops


def checked_image(image) -> np.ndarray:
    """``image`` as an array, or ``ValueError`` if it is not a non-empty ``(H, W)`` or ``(H, W, C)`` one."""
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image must be a non-empty (H, W) or (H, W, C) array, got shape {image.shape}")
    return image


def warp(image: np.ndarray, matrix: np.ndarray, size) -> np.ndarray:
    """``image`` warped by the ``(2, 3)`` ``matrix`` into a ``size`` crop, bilinear, black outside."""
    return cv2.warpAffine(image, matrix, crop_size(size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
