"""Procedural backgrounds for synthetic faces, and the hair drawn on them behind the faces (no image files).

:func:`random_background` paints a colour gradient (:func:`gradient`), smooth
colour noise (:func:`colour_noise`) or stripes (:func:`stripes`), then random
ellipses (:func:`add_ellipses`) and grey pixel noise. :func:`add_hair` draws an
ellipse of hair behind the top of most faces, following each face's roll, so
that a face is not just a floating mask. Every draw comes from the image's
``numpy`` generator, so a seed always gives the same background.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

HAIR_PROBABILITY, HAIR_SHIFT, HAIR_AXES = 0.7, 0.18, (0.48, 0.55)
"""Share of faces with hair, and its ellipse's shift up the face and half-axes, in face sizes."""

HAIR_COLOURS = ((20, 14, 10), (190, 150, 95))
"""Darkest and fairest hair (RGB, 0..255)."""

PIXEL_NOISE = 12
"""Largest grey-level noise added to the background."""


def random_background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A procedural background: gradient, colour noise or stripes, then ellipses and pixel noise.

    Args:
        rng: Source of randomness.
        size: ``(height, width)``.

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    pattern = (gradient, colour_noise, stripes)[int(rng.integers(3))]
    image = add_ellipses(pattern(rng, size), rng, int(rng.integers(0, 9)))
    amplitude = int(rng.integers(0, PIXEL_NOISE + 1))
    noise = rng.integers(-amplitude, amplitude, size=(*size, 1), endpoint=True, dtype=np.int16)  # grey
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def random_colours(rng: np.random.Generator, count: int) -> np.ndarray:
    """``(count, 3)`` float32 RGB colours in 0..255."""
    return rng.uniform(0, 255, (count, 3)).astype(np.float32)


def blend_two_colours(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour a ``(H, W)`` field in ``[0, 1]`` by a blend of two random colours, ``(H, W, 3)`` uint8."""
    first, second = random_colours(rng, 2)
    palette = np.rint(first + np.linspace(0, 1, 256, dtype=np.float32)[:, None] * (second - first))  # (256, 3)
    return palette.astype(np.uint8)[np.rint(t * 255).astype(np.uint8)]


def coordinate_along(rng: np.random.Generator, size: tuple[int, int], angle_range: float) -> np.ndarray:
    """``(H, W)`` float32 position of every pixel centre along a random direction, in longer-side units."""
    height, width = size
    scale = max(height, width)
    y = (np.arange(height, dtype=np.float32)[:, None] + 0.5) / scale  # (H, 1)
    x = (np.arange(width, dtype=np.float32)[None] + 0.5) / scale  # (1, W)
    angle = rng.uniform(0, angle_range)
    return x * math.cos(angle) + y * math.sin(angle)


def gradient(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Linear blend between two random colours along a random direction, ``(H, W, 3)`` uint8."""
    t = coordinate_along(rng, size, 2 * math.pi)
    return blend_two_colours((t - t.min()) / max(float(t.max() - t.min()), 1e-6), rng)


def stripes(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Sinusoidal stripes between two colours, random period and direction, ``(H, W, 3)`` uint8."""
    t = coordinate_along(rng, size, math.pi)
    periods = rng.uniform(2, 40)  # across the longer side
    return blend_two_colours(0.5 + 0.5 * np.sin((2 * math.pi * periods) * t), rng)


def colour_noise(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Smooth colour noise: a coarse random grid enlarged bicubically, ``(H, W, 3)`` uint8."""
    height, width = size
    cells = int(rng.integers(2, 12))
    coarse = random_colours(rng, cells * cells).reshape(cells, cells, 3).astype(np.uint8)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)


def add_ellipses(image: np.ndarray, rng: np.random.Generator, count: int) -> np.ndarray:
    """Draw ``count`` filled ellipses of random colour, size and angle (in place), ``(H, W, 3)`` uint8."""
    height, width = image.shape[:2]
    for colour in random_colours(rng, count):
        centre = (int(rng.integers(width)), int(rng.integers(height)))
        axes = tuple(int(a) for a in rng.integers(4, max(min(height, width) // 4, 5), size=2))
        cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour.tolist(), -1)
    return image


def add_hair(image: np.ndarray, rng: np.random.Generator, boxes: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Draw a hair ellipse behind some faces (on a copy), so that faces look less like floating masks.

    The ellipse sits a little above the face centre along the face's own
    up direction (from the mouth to the eyes), so it follows the roll.

    Args:
        image: ``(H, W, 3)`` uint8 background.
        rng: Source of randomness.
        boxes: ``(F, 4)`` face boxes.
        landmarks: ``(F, 5, 2)`` their landmarks.

    Returns:
        The background with hair, ``(H, W, 3)`` uint8.
    """
    image = image.copy()
    has_hair = rng.random(len(boxes)) < HAIR_PROBABILITY
    dark, fair = np.array(HAIR_COLOURS, np.float32)
    colours = dark + rng.random((len(boxes), 1)) * (fair - dark)  # (F, 3)
    up = landmarks[:, :2].mean(axis=1) - landmarks[:, 3:].mean(axis=1)  # (F, 2) mouth -> eyes
    up /= np.linalg.norm(up, axis=1, keepdims=True)
    sizes = (boxes[:, 2:] - boxes[:, :2]).max(axis=1)  # (F,)
    centres = np.rint((boxes[:, :2] + boxes[:, 2:]) / 2 + HAIR_SHIFT * sizes[:, None] * up).astype(int)
    # cv2's first ellipse axis lies along the angle; turn the second one up the face
    angles = np.degrees(np.arctan2(up[:, 0], -up[:, 1]))
    for centre, angle, size, colour in zip(centres[has_hair], angles[has_hair], sizes[has_hair], colours[has_hair]):
        axes = (round(HAIR_AXES[0] * size), round(HAIR_AXES[1] * size))
        cv2.ellipse(image, centre.tolist(), axes, float(angle), 0, 360, colour.tolist(), -1)
    return image
