"""Backgrounds for synthetic faces: real pictures without people, procedural clutter, face-like distractors.

:func:`real_background` replaces the procedural background of most images by a
random crop of one of the pictures in :data:`PICTURES`, sample images that
scikit-image ships (textures, a cat, a cup of coffee, a rocket, a clock, text,
cells, stars), then draws clutter over it (lines, boxes, polygons).
:data:`PICTURES` is an explicit allow-list: every picture in it was looked at and
shows no person, and none is a photograph of a face (scikit-image's
``astronaut``, ``camera``, ``retina``, its face data ``lfw_subset`` and anything
else with a person stay out). Each is free to use and redistribute (the licence
is noted beside it); they are read from scikit-image's installed files, and none
ships in this repository.

:func:`add_distractors` draws hard negatives that share a part of a face but are
not one: pairs of eyes without a face, skin-coloured blobs, dark dots.
"""

from __future__ import annotations

import functools
import importlib.resources

import cv2
import numpy as np

from rfcore.data.paint import blend_colour, ellipse_points, line_mask, polygon_mask, to_uint8

PICTURES = {
    "brick.png": "CC0 (CC0Textures)",
    "cell.png": "CC0",
    "chelsea.png": "CC0 (Stefan van der Walt); a cat",
    "clock_motion.png": "public domain (Stefan van der Walt)",
    "coffee.png": "CC0 (Rachel Michetti)",
    "grass.png": "CC0 (CC0Textures)",
    "gravel.png": "CC0 (CC0Textures)",
    "hubble_deep_field.jpg": "public domain (NASA)",
    "ihc.png": "no known copyright restrictions",
    "rocket.jpg": "public domain (SpaceX)",
    "text.png": "public domain",
}
"""The scikit-image sample pictures used as backgrounds (files of its ``skimage/data`` folder) and their licences."""

PICTURE_PROBABILITY, CLUTTER_PROBABILITY = 0.7, 0.5
"""Share of images on a real picture, and of images with clutter drawn over the background."""

DISTRACTORS = (0, 6)
"""Range of the number of distractors per image (both included)."""


@functools.cache
def picture(name: str) -> np.ndarray:
    """Picture ``name`` of :data:`PICTURES` as ``(H, W, 3)`` uint8 RGB (grey ones repeated).

    Raises:
        ValueError: For a name not in the allow-list.
        ImportError: If scikit-image is not installed.
        FileNotFoundError: If its file cannot be read.
    """
    if name not in PICTURES:
        raise ValueError(f"{name!r} is not an allowed background picture; allowed: {', '.join(sorted(PICTURES))}")
    path = importlib.resources.files("skimage") / "data" / name
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read the background picture {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def real_background(background: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Most of the time a random crop of a real picture instead of ``background``; clutter over half.

    Args:
        background: ``(H, W, 3)`` uint8 procedural background, kept when no picture is drawn.
        rng: Source of randomness.

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    height, width = background.shape[:2]
    if rng.random() < PICTURE_PROBABILITY:
        names = sorted(PICTURES)
        source = picture(names[int(rng.integers(len(names)))])
        side = rng.uniform(0.3, 1.0) * min(source.shape[:2])
        x, y = rng.uniform(0, source.shape[1] - side), rng.uniform(0, source.shape[0] - side)
        crop = source[int(y) : int(y + side), int(x) : int(x + side)]
        background = cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            background = background[:, ::-1]
        background = to_uint8(background * rng.uniform(0.7, 1.3, 3))  # a colour shift, grey pictures tinted
    if rng.random() < CLUTTER_PROBABILITY:
        background = add_clutter(background, rng)
    return np.ascontiguousarray(background)


def add_clutter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random lines, rectangles and polygons in random colours, ``(H, W, 3)`` uint8."""
    out = image.astype(np.float32)
    size = out.shape[:2]
    scale = min(size)
    for _ in range(int(rng.integers(2, 12))):
        kind = int(rng.integers(3))
        points = rng.uniform(0, 1, (int(rng.integers(2, 6)), 2)) * size[::-1]
        if kind == 0:
            mask = line_mask(size, [points], max(round(rng.uniform(0.005, 0.03) * scale), 1))
        elif kind == 1:
            corner, extent = points[0], rng.uniform(0.05, 0.4, 2) * scale
            mask = polygon_mask(size, [corner + extent * np.array([[0, 0], [1, 0], [1, 1], [0, 1]])])
        else:
            mask = polygon_mask(size, [points])
        out = blend_colour(out, mask * float(rng.uniform(0.5, 1)), rng.uniform(0, 255, 3))
    return to_uint8(out)


def add_distractors(background: np.ndarray, rng: np.random.Generator, boxes: np.ndarray) -> np.ndarray:
    """Draw face-like negatives on the background, at the sizes of the image's faces, ``(H, W, 3)`` uint8.

    Args:
        background: ``(H, W, 3)`` uint8 image the faces will be laid over (they hide what they cover).
        rng: Source of randomness.
        boxes: ``(F, 4)`` face boxes, whose sizes the distractors take.
    """
    out = background.astype(np.float32)
    size = out.shape[:2]
    sizes = (boxes[:, 2:] - boxes[:, :2]).max(axis=1) if len(boxes) else np.array([min(size) / 4])
    for _ in range(int(rng.integers(DISTRACTORS[0], DISTRACTORS[1] + 1))):
        width = float(sizes[int(rng.integers(len(sizes)))]) * rng.uniform(0.5, 1.5)
        centre = rng.uniform(0, 1, 2) * size[::-1]
        angle = float(rng.uniform(-0.5, 0.5))
        kind = int(rng.integers(3))
        if kind == 0:  # eyes without a face: two light almonds with dark irises
            step = np.array([np.cos(angle), np.sin(angle)]) * 0.2 * width
            whites = [ellipse_points(centre + s * step, (0.1 * width, 0.045 * width), angle) for s in (-1, 1)]
            irises = [ellipse_points(centre + s * step, (0.04 * width, 0.04 * width), 0) for s in (-1, 1)]
            out = blend_colour(out, polygon_mask(size, whites), rng.uniform(180, 250, 3))
            out = blend_colour(out, polygon_mask(size, irises), rng.uniform(0, 80, 3))
        elif kind == 1:  # a skin-coloured blob, maybe with a dark cap like hair
            blob = ellipse_points(centre, (0.4 * width, 0.5 * width), angle)
            out = blend_colour(out, polygon_mask(size, [blob]), rng.uniform((60, 40, 30), (240, 200, 175)))
            if rng.random() < 0.5:
                cap = ellipse_points(centre - (0, 0.35 * width), (0.42 * width, 0.2 * width), angle)
                out = blend_colour(out, polygon_mask(size, [cap]), rng.uniform(10, 120, 3))
        else:  # dark dots in a row or a triangle
            dots = [ellipse_points(centre + rng.uniform(-0.3, 0.3, 2) * width, (0.05 * width,) * 2, 0, 12)
                    for _ in range(int(rng.integers(2, 4)))]
            out = blend_colour(out, polygon_mask(size, dots), rng.uniform(0, 70, 3))
    return to_uint8(out)
