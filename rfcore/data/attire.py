"""What surrounds a synthetic face in a photograph: neck, shoulders and clothes below it, hats and fringes on it.

A face in a photograph rarely floats: a neck and shoulders sit below it and a
detector learns that context. :func:`add_bodies` draws them behind the faces (on
the background, before the faces are laid over it); :func:`add_hats` draws caps
and fringes over the top of the faces, above the eyebrows, so they hide no
landmark. Shapes are given in each face's frame (:mod:`rfcore.data.paint`), so
they follow its roll, yaw and size.
"""

from __future__ import annotations

import numpy as np

from rfcore.data.paint import blend_colour, face_frames, line_mask, polygon_mask, to_image, to_uint8

BODY_PROBABILITY, COLLAR_PROBABILITY = 0.75, 0.4
"""Share of faces with neck and shoulders, and of those with a light shirt collar."""

NECK = ((-0.55, 0.8), (0.55, 0.8), (0.6, 2.5), (-0.6, 2.5))
SHOULDERS = ((-0.7, 2.2), (0.7, 2.2), (2.4, 2.7), (3.2, 3.6), (3.4, 8.0), (-3.4, 8.0), (-3.2, 3.6), (-2.4, 2.7))
COLLAR = ((-0.75, 2.15), (0.75, 2.15), (0.0, 3.2))
"""Neck, shoulders and collar in frame units (the chin is at about ``v = 1.6``)."""

HAT_PROBABILITY, FRINGE_PROBABILITY = 0.2, 0.15
"""Share of faces with a hat, and with a fringe of hair over the forehead."""

CROWN = ((-1.3, -0.6), (1.3, -0.6), (1.25, -1.4), (0.8, -2.0), (-0.8, -2.0), (-1.25, -1.4))
BRIM = ((-1.7, -0.62), (1.7, -0.62))
FRINGE_TOP, FRINGE_BOTTOM = -1.0, -0.5
"""Hat crown and brim, and a fringe's top and lowest point, in frame units (eyebrows reach ``v = -0.42``)."""


def random_clothes(rng: np.random.Generator) -> np.ndarray:
    """``(3,)`` RGB of clothes: dark suits half the time, any colour otherwise."""
    if rng.random() < 0.5:
        return rng.uniform(10, 70, 3).astype(np.float32)
    return rng.uniform(0, 255, 3).astype(np.float32)


def add_bodies(background: np.ndarray, rng: np.random.Generator, boxes: np.ndarray, landmarks: np.ndarray,
               skin: np.ndarray) -> np.ndarray:
    """Draw a neck, shoulders in clothes and maybe a collar below some faces, ``(H, W, 3)`` uint8.

    Args:
        background: ``(H, W, 3)`` uint8 image the faces will be laid over.
        rng: Source of randomness.
        boxes: ``(F, 4)`` face boxes (largest face first).
        landmarks: ``(F, 5, 2)`` their landmarks.
        skin: ``(F, 3)`` mean albedo of each face in ``[0, 1]``.
    """
    image = background.astype(np.float32)
    size = image.shape[:2]
    frames = face_frames(landmarks)
    # smallest first: a larger face's body lies in front of a smaller one's
    for face in reversed(range(len(boxes))):
        if rng.random() >= BODY_PROBABILITY:
            continue
        shade = float(rng.uniform(0.55, 0.85))
        image = blend_colour(image, polygon_mask(size, [to_image(frames, NECK)[face]]), skin[face] * 255 * shade)
        image = blend_colour(image, polygon_mask(size, [to_image(frames, SHOULDERS)[face]]), random_clothes(rng))
        if rng.random() < COLLAR_PROBABILITY:
            image = blend_colour(image, polygon_mask(size, [to_image(frames, COLLAR)[face]]), rng.uniform(190, 250, 3))
    return to_uint8(image)


def add_hats(image: np.ndarray, rng: np.random.Generator, boxes: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Draw caps (crown, brim, maybe a badge) or fringes over the top of some faces, ``(H, W, 3)`` uint8."""
    out = image.astype(np.float32)
    size = out.shape[:2]
    frames = face_frames(landmarks)
    for face in range(len(boxes)):
        scale = float(np.linalg.norm(frames.across[face]))
        if rng.random() < HAT_PROBABILITY:
            colour = random_clothes(rng)
            out = blend_colour(out, polygon_mask(size, [to_image(frames, CROWN)[face]]), colour)
            brim = line_mask(size, [to_image(frames, BRIM)[face]], max(round(0.15 * scale), 1))
            out = blend_colour(out, brim, colour * float(rng.uniform(0.5, 1.2)))
            if rng.random() < 0.4:
                badge = to_image(frames, [(-0.35, -1.45), (0.35, -1.45), (0.3, -0.85), (-0.3, -0.85)])[face]
                out = blend_colour(out, polygon_mask(size, [badge]), rng.uniform(120, 255, 3))
        elif rng.random() < FRINGE_PROBABILITY:
            u = np.linspace(-1.25, 1.25, 11)
            bottom = FRINGE_BOTTOM - rng.uniform(0, 0.25, len(u))  # uneven ends
            outline = np.concatenate([np.stack([u, bottom], 1), [(1.25, FRINGE_TOP), (-1.25, FRINGE_TOP)]])
            out = blend_colour(out, polygon_mask(size, [to_image(frames, outline)[face]]), rng.uniform(15, 150, 3))
    return to_uint8(out)
