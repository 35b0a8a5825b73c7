"""Facial detail painted on rendered synthetic faces: the parts a 289-vertex mesh cannot carry.

The rendered face has smooth shading and blurred dark patches for the eyes and
lips. :func:`add_details` paints, in each face's frame (:mod:`rfcore.data.paint`)
and only where the face is opaque:

* skin texture (fine multiplicative noise), and freckles or blush on some faces;
* beards and moustaches on some faces, under the mouth;
* eyebrows, eyes (white, iris centred on the eye landmark, upper lid; some closed),
  nostrils beside the nose tip, lips whose ends are the mouth-corner landmarks
  (some smiling, teeth showing).

Colours are taken relative to the face's own lit skin, so details follow its
light. Nothing moves the landmarks: each part is placed from them, and the
ground truth stays what the mesh gave.
"""

from __future__ import annotations

import cv2
import numpy as np

from rfcore.data.paint import (
    FaceFrames,
    blend_colour,
    face_frames,
    frame_ellipse,
    line_mask,
    polygon_mask,
    scale_pixels,
    to_image,
    to_uint8,
)

SKIN_NOISE = (0.015, 0.05)
"""Range of the skin texture's standard deviation, a fraction of the pixel value."""

BEARD_PROBABILITY, FRECKLE_PROBABILITY, BLUSH_PROBABILITY = 0.2, 0.15, 0.3
"""Share of faces with a beard, freckles, blush."""

CLOSED_EYES_PROBABILITY, SMILE_PROBABILITY = 0.1, 0.35
"""Share of faces with closed eyes, and with an open smile."""

EYE_HALF_WIDTH, EYE_HALF_HEIGHT, IRIS_RADIUS = 0.22, 0.085, 0.085
"""The eye opening and iris, in frame units (eye distance 1)."""

IRIS_COLOURS = ((60, 35, 20), (90, 110, 140), (75, 90, 50), (25, 20, 18))
"""Brown, blue, green and black irises (RGB)."""

BEARD_OUTLINE = ((-1.0, 0.45), (-0.95, 1.15), (-0.6, 1.6), (0.0, 1.8), (0.6, 1.6), (0.95, 1.15), (1.0, 0.45),
                 (0.62, 0.75), (0.35, 0.78), (0.0, 0.72), (-0.35, 0.78), (-0.62, 0.75))
"""A full beard with moustache, in frame units; clipped to the face's opacity."""


def add_details(image: np.ndarray, alpha: np.ndarray, rng: np.random.Generator, landmarks: np.ndarray) -> np.ndarray:
    """Paint skin texture and facial parts on every face of a composited image.

    Args:
        image: ``(H, W, 3)`` uint8 RGB with the faces rendered.
        alpha: ``(H, W)`` float32 opacity of the faces.
        rng: Source of randomness.
        landmarks: ``(F, 5, 2)`` landmarks of the faces.

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    out = skin_texture(image.astype(np.float32), alpha, rng)
    frames = face_frames(landmarks)
    for face in range(len(landmarks)):
        skin = face_colour(out, alpha, landmarks[face])
        out = paint_face(out, alpha, rng, frames, face, landmarks[face], skin)
    return to_uint8(out)


def face_colour(image: np.ndarray, alpha: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``(3,)`` mean lit skin colour around a face's cheeks (between eyes and mouth), from the pixels."""
    low, high = np.floor(points.min(axis=0)).astype(int), np.ceil(points.max(axis=0)).astype(int) + 1
    low = np.maximum(low, 0)
    patch, weight = image[low[1] : high[1], low[0] : high[0]], alpha[low[1] : high[1], low[0] : high[0]]
    if weight.sum() < 1:
        return np.full(3, 128, np.float32)
    return (patch * weight[..., None]).sum(axis=(0, 1)) / weight.sum()


def skin_texture(image: np.ndarray, alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Multiply the faces' pixels by fine noise (pores, unevenness), ``(H, W, 3)`` float32."""
    grain = rng.standard_normal(alpha.shape).astype(np.float32)
    grain = cv2.GaussianBlur(grain, (0, 0), float(rng.uniform(0.5, 1.2)))
    grain *= float(rng.uniform(*SKIN_NOISE)) / max(float(grain.std()), 1e-6)
    return image * (1 + alpha * grain)[..., None]


def paint_face(image, alpha, rng, frames: FaceFrames, face: int, points: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """Paint one face's beard, freckles, blush, eyebrows, eyes, nostrils and lips, ``(H, W, 3)`` float32."""
    size = image.shape[:2]
    scale = float(np.linalg.norm(frames.across[face]))  # eye distance in pixels
    pen = max(round(0.06 * scale), 1)
    if rng.random() < FRECKLE_PROBABILITY:
        spots = to_image(frames, rng.uniform((-0.8, -0.1), (0.8, 0.8), (int(rng.integers(10, 40)), 2)))[face]
        mask = polygon_mask(size, [frame_spot(p, 0.02 * scale) for p in spots])
        image = scale_pixels(image, mask * alpha, 0.8)
    if rng.random() < BLUSH_PROBABILITY:
        cheeks = [frame_ellipse(frames, face, (side * 0.55, 0.55), (0.22, 0.15)) for side in (-1, 1)]
        mask = cv2.GaussianBlur(polygon_mask(size, cheeks), (0, 0), max(0.1 * scale, 0.5))
        image = scale_pixels(image, 0.5 * mask * alpha, (1.05, 0.85, 0.85))
    if rng.random() < BEARD_PROBABILITY:
        image = paint_beard(image, alpha, rng, frames, face, scale)
    hair = float(rng.uniform(0.25, 0.7))
    brows = [to_image(frames, [(s * u, v) for u, v in ((0.15, -0.30), (0.45, -0.42), (0.8, -0.33), (0.8, -0.27),
                                                       (0.45, -0.34), (0.15, -0.23))])[face] for s in (-1, 1)]
    image = scale_pixels(image, polygon_mask(size, brows) * alpha, hair)
    image = paint_eyes(image, alpha, rng, frames, face, points, skin, pen)
    nostrils = [frame_spot(points[2] + frames.across[face] * side * 0.1 + frames.down[face] * 0.05, 0.035 * scale)
                for side in (-1, 1)]
    image = scale_pixels(image, polygon_mask(size, nostrils) * alpha, 0.45)
    return paint_lips(image, alpha, rng, frames, face, points, skin, pen)


def frame_spot(centre: np.ndarray, radius: float) -> np.ndarray:
    """``(12, 2)`` polygon of a small round spot."""
    t = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    return centre + radius * np.stack([np.cos(t), np.sin(t)], axis=1)


def paint_beard(image, alpha, rng, frames: FaceFrames, face: int, scale: float) -> np.ndarray:
    """Darken the lower face with a textured beard (clipped to the face), ``(H, W, 3)`` float32."""
    size = image.shape[:2]
    outline = to_image(frames, BEARD_OUTLINE)[face]
    mask = cv2.GaussianBlur(polygon_mask(size, [outline]), (0, 0), max(0.05 * scale, 0.5))
    strands = rng.random(size).astype(np.float32)
    density = float(rng.uniform(0.4, 0.95))
    return scale_pixels(image, mask * alpha * density * (0.6 + 0.4 * strands), float(rng.uniform(0.2, 0.5)))


def paint_eyes(image, alpha, rng, frames: FaceFrames, face: int, points, skin, pen: int) -> np.ndarray:
    """Eye whites, irises centred on the eye landmarks and upper lids (or closed lids), ``(H, W, 3)`` float32."""
    size = image.shape[:2]
    across, down = frames.across[face], frames.down[face]
    lids = [np.stack([centre + across * u - down * EYE_HALF_HEIGHT * 1.6 * (1 - (u / EYE_HALF_WIDTH) ** 2)
                      for u in np.linspace(-EYE_HALF_WIDTH, EYE_HALF_WIDTH, 9)]) for centre in points[:2]]
    if rng.random() < CLOSED_EYES_PROBABILITY:
        closed = [np.stack([c + across * u + down * 0.02 for u in (-EYE_HALF_WIDTH, 0, EYE_HALF_WIDTH)])
                  for c in points[:2]]
        return scale_pixels(image, line_mask(size, closed, pen) * alpha, 0.35)
    whites = [eye_outline(centre, across, down) for centre in points[:2]]
    white = np.clip(skin * 1.15 + 25, 0, 235) * np.array([1.0, 1.0, 1.02], np.float32)
    image = blend_colour(image, polygon_mask(size, whites) * alpha * float(rng.uniform(0.6, 0.95)), white)
    iris = np.array(IRIS_COLOURS[int(rng.integers(len(IRIS_COLOURS)))], np.float32) * (skin.mean() / 170)
    radius = IRIS_RADIUS * float(np.linalg.norm(across))
    irises = [frame_spot(centre, radius) for centre in points[:2]]
    image = blend_colour(image, polygon_mask(size, irises) * polygon_mask(size, whites) * alpha, iris)
    return scale_pixels(image, line_mask(size, lids, pen) * alpha, 0.3)


def eye_outline(centre: np.ndarray, across: np.ndarray, down: np.ndarray) -> np.ndarray:
    """``(16, 2)`` almond-shaped eye opening around an eye landmark."""
    u = np.linspace(-EYE_HALF_WIDTH, EYE_HALF_WIDTH, 8)
    bulge = 1 - (u / EYE_HALF_WIDTH) ** 2
    top = centre + u[:, None] * across - (EYE_HALF_HEIGHT * bulge)[:, None] * down
    bottom = centre + u[::-1, None] * across + (0.8 * EYE_HALF_HEIGHT * bulge[::-1])[:, None] * down
    return np.concatenate([top, bottom])


def paint_lips(image, alpha, rng, frames: FaceFrames, face: int, points, skin, pen: int) -> np.ndarray:
    """Lips from one mouth-corner landmark to the other, a dark mouth line, maybe teeth, ``(H, W, 3)`` float32."""
    size = image.shape[:2]
    left, right = points[3], points[4]
    down = frames.down[face]
    t = np.linspace(0, 1, 9)[1:-1, None]  # (7, 1) inner points
    line = left + t * (right - left)
    bow = np.sin(np.pi * t)
    smile = rng.random() < SMILE_PROBABILITY
    upper = line - down * (0.1 * bow)
    lower = line + down * ((0.22 if smile else 0.13) * bow)
    lip = skin * np.array([0.95, 0.6, 0.6], np.float32) * float(rng.uniform(0.8, 1.05))
    lips = np.concatenate([[left], upper, [right], lower[::-1]])
    image = blend_colour(image, polygon_mask(size, [lips]) * alpha * float(rng.uniform(0.4, 0.85)), lip)
    if smile:
        opening = np.concatenate([[left], line - down * (0.03 * bow), [right], line + down * (0.12 * bow)][::-1])
        teeth = np.clip(skin * 1.1 + 40, 0, 240)
        image = blend_colour(image, polygon_mask(size, [opening]) * alpha * 0.85, teeth)
    mouth = np.concatenate([[left], line + down * (0.01 * bow), [right]])
    return scale_pixels(image, line_mask(size, [mouth], pen) * alpha, 0.45)
