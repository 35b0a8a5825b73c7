"""Things in front of synthetic faces: glasses, sunglasses, masks, hands and objects, with the landmarks they hide.

:func:`add_occluders` gives some faces one occluder, drawn in the face's frame
(:mod:`rfcore.data.paint`) or, for hands and objects, at a random place over it.
A landmark is occluded when the occluder's own shape covers its pixel by more
than half (:func:`covered`); it keeps its position in the ground truth (as WIDER
FACE annotators mark where a hidden point is), and the returned visibility says
which are hidden. Clear glasses hide nothing: the eye is seen through the lens.
The occluders' shapes are drawn with OpenCV's integer rasteriser, so the
visibility is the same on every CPU.
"""

from __future__ import annotations

import numpy as np

from rfcore.data.paint import (
    blend_colour,
    ellipse_points,
    face_frames,
    frame_ellipse,
    line_mask,
    polygon_mask,
    to_image,
    to_uint8,
)

OCCLUDER_PROBABILITY = 0.4
"""Share of faces with an occluder."""

KINDS = ("glasses", "sunglasses", "mask", "hand", "object")
"""The occluders, drawn with equal probability."""

LENS_CENTRE, LENS_AXES = 0.5, (0.3, 0.2)
"""Lens centre (``u = ±0.5``, on the eyes) and half-axes in frame units."""

MASK_OUTLINE = ((-1.2, 0.3), (-0.4, 0.22), (0.0, 0.18), (0.4, 0.22), (1.2, 0.3), (1.1, 1.3), (0.5, 1.75),
                (0.0, 1.85), (-0.5, 1.75), (-1.1, 1.3))
"""A face mask from the bridge of the nose to the chin, in frame units (clipped to the face)."""

SKIN_RANGE = ((60, 40, 30), (240, 200, 175))
"""Darkest and lightest colour of a hand (RGB)."""


def covered(mask: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``(K,)`` bool: the pixel under each ``(K, 2)`` point is covered more than half by ``mask`` ``(H, W)``."""
    height, width = mask.shape
    x = np.clip(np.floor(points[:, 0]).astype(int), 0, width - 1)
    y = np.clip(np.floor(points[:, 1]).astype(int), 0, height - 1)
    return mask[y, x] > 0.5


def add_occluders(image: np.ndarray, alpha: np.ndarray, rng: np.random.Generator, boxes: np.ndarray,
                  landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Put an occluder in front of some faces.

    Args:
        image: ``(H, W, 3)`` uint8 composited image.
        alpha: ``(H, W)`` float32 opacity of the faces (masks are clipped to it).
        rng: Source of randomness.
        boxes: ``(F, 4)`` face boxes.
        landmarks: ``(F, 5, 2)`` their landmarks.

    Returns:
        ``(H, W, 3)`` uint8 image and ``(F, 5)`` bool visibility of each landmark.
    """
    out = image.astype(np.float32)
    visible = np.ones(landmarks.shape[:2], bool)
    frames = face_frames(landmarks)
    size = out.shape[:2]
    for face in range(len(boxes)):
        if rng.random() >= OCCLUDER_PROBABILITY:
            continue
        kind = KINDS[int(rng.integers(len(KINDS)))]
        scale = float(np.linalg.norm(frames.across[face]))
        pen = max(round(float(rng.uniform(0.03, 0.08)) * scale), 1)
        colour = rng.uniform(0, 255, 3)
        if kind in ("glasses", "sunglasses"):
            lenses = [frame_ellipse(frames, face, (side * LENS_CENTRE, 0.02), LENS_AXES) for side in (-1, 1)]
            shape = polygon_mask(size, lenses)
            tint = (0.85 + 0.15 * rng.random()) if kind == "sunglasses" else float(rng.uniform(0.0, 0.25))
            out = blend_colour(out, shape * tint, rng.uniform(0, 60, 3) if kind == "sunglasses" else colour)
            arms = [np.concatenate([lens, lens[:1]]) for lens in lenses] + [
                to_image(frames, [(-0.2, -0.02), (0.2, -0.02)])[face],
                to_image(frames, [(-0.8, -0.02), (-1.25, 0.0)])[face],
                to_image(frames, [(0.8, -0.02), (1.25, 0.0)])[face],
            ]
            out = blend_colour(out, line_mask(size, arms, pen), colour * float(rng.uniform(0.2, 1.0)))
            if kind == "glasses":
                continue
        elif kind == "mask":
            shape = polygon_mask(size, [to_image(frames, MASK_OUTLINE)[face]])
            out = blend_colour(out, shape * alpha, rng.uniform(150, 255, 3) if rng.random() < 0.6 else colour)
        elif kind == "hand":
            shape = hand_mask(size, rng, boxes[face])
            out = blend_colour(out, shape, rng.uniform(*SKIN_RANGE))
        else:
            shape = object_mask(size, rng, boxes[face])
            out = blend_colour(out, shape, colour)
        visible[face] &= ~covered(shape, landmarks[face])
    return to_uint8(out), visible


def hand_mask(size: tuple[int, int], rng: np.random.Generator, box: np.ndarray) -> np.ndarray:
    """``(H, W)`` float32 coverage of a hand (palm and four fingers) over part of a face."""
    width = float(box[2] - box[0])
    centre = box[:2] + rng.uniform(0.1, 0.9, 2) * (box[2:] - box[:2])
    angle = float(rng.uniform(0, 2 * np.pi))
    palm = ellipse_points(centre, (0.32 * width, 0.4 * width), angle)
    direction = np.array([np.cos(angle + np.pi / 2), np.sin(angle + np.pi / 2)])  # along the fingers
    across = np.array([-direction[1], direction[0]])
    fingers = []
    for k, length in enumerate(rng.uniform(0.35, 0.55, 4) * width):
        base = centre + direction * 0.3 * width + across * (k - 1.5) * 0.16 * width
        fingers.append(ellipse_points(base + direction * length / 2, (0.07 * width, length / 2), angle, 12))
    return polygon_mask(size, [palm, *fingers])


def object_mask(size: tuple[int, int], rng: np.random.Generator, box: np.ndarray) -> np.ndarray:
    """``(H, W)`` float32 coverage of a bar (a microphone, a pole, a cup) crossing part of a face."""
    width = float(box[2] - box[0])
    centre = box[:2] + rng.uniform(0.0, 1.0, 2) * (box[2:] - box[:2])
    half = rng.uniform(0.1, 0.25) * width * np.array([1.0, rng.uniform(1, 4)])  # (2,) half-sides
    angle = float(rng.uniform(0, np.pi))
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half @ rotation.T  # (4, 2)
    return polygon_mask(size, [centre + corners])
