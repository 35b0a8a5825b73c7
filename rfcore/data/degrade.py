"""Whole-image degradations of synthetic images: what cameras and lighting do to photographs.

:func:`degrade` applies each step below with its own probability, in order:
a hard shadow across the image, a colour cast (per-channel gains), a gamma
change, a lower resolution (shrunk and enlarged again), blur, sensor noise,
grey scale, JPEG compression. None moves a pixel, so boxes and landmarks
stay exact. The training augmentation (:mod:`rfcore.data.augment`) still adds
its brightness, contrast, saturation and hue changes on top.
"""

from __future__ import annotations

import cv2
import numpy as np

from rfcore.data.paint import polygon_mask, to_uint8

PROBABILITIES = {"shadow": 0.3, "cast": 0.4, "gamma": 0.3, "resolution": 0.2, "blur": 0.3, "noise": 0.4,
                 "grey": 0.12, "jpeg": 0.4}
"""Chance of each step."""


def degrade(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Apply the steps of the module docstring, each with its :data:`PROBABILITIES`.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        rng: Source of randomness (one draw per step decides it, so the steps' draws do not shift each other).

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    chosen = {step: rng.random() < p for step, p in PROBABILITIES.items()}
    out = image.astype(np.float32)
    height, width = out.shape[:2]
    if chosen["shadow"]:
        corners = rng.uniform(-0.2, 1.2, (int(rng.integers(3, 6)), 2)) * (width, height)
        mask = cv2.GaussianBlur(polygon_mask((height, width), [corners]), (0, 0), float(rng.uniform(0.5, 4)))
        out *= 1 - mask[..., None] * float(rng.uniform(0.3, 0.7))
    if chosen["cast"]:
        out *= rng.uniform(0.75, 1.25, 3).astype(np.float32)
    if chosen["gamma"]:
        out = 255 * (np.clip(out, 0, 255) / 255) ** float(rng.uniform(0.6, 1.6))
    if chosen["resolution"]:
        factor = float(rng.uniform(0.35, 0.8))
        small = cv2.resize(out, (max(round(width * factor), 1), max(round(height * factor), 1)),
                           interpolation=cv2.INTER_AREA)
        out = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    if chosen["blur"]:
        out = cv2.GaussianBlur(out, (0, 0), float(rng.uniform(0.4, 1.5)))
    if chosen["noise"]:
        out += rng.standard_normal(out.shape).astype(np.float32) * float(rng.uniform(2, 10))
    if chosen["grey"]:
        out = np.repeat(out @ np.array([0.299, 0.587, 0.114], np.float32), 3).reshape(out.shape)
    out = to_uint8(out)
    if chosen["jpeg"]:
        quality = int(rng.integers(20, 90))
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        out = cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) if ok else out
    return out
