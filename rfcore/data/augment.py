"""Training augmentation of the paper [§4.2, Data Augmentation].

* a random square crop whose side is ``[0.3, 1]`` of the image's short edge;
  a face is kept when its box centre lies inside the crop, its box clipped
  to the crop;
* resizing the crop to the square training size;
* a horizontal flip with probability 0.5, which also swaps the left and right
  eyes and mouth corners so that "left eye" stays the point on the left;
* photometric distortion: brightness, contrast, saturation and hue.

Every function is pure: it returns a new :class:`~rfcore.data.sample.FaceSample`
and draws randomness only from the ``numpy.random.Generator`` it is given, so
one seed gives one result. Missing landmarks stay ``-1`` through every step.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import cv2
import numpy as np

from rfcore.anchors import check_image_size
from rfcore.boxes import flip_boxes, flip_landmarks
from rfcore.config import RetinaFaceConfig
from rfcore.data.sample import MISSING, FaceSample


class CropWindow(NamedTuple):
    """A square region of an image: top-left corner ``(x, y)`` and ``side``, in pixels."""

    x: int
    y: int
    side: int


def square_crop_window(
    image_size, boxes: np.ndarray, rng: np.random.Generator, scale=(0.3, 1.0), tries: int = 50
) -> CropWindow:
    """Draw a square crop with side ``scale`` of the short edge, uniformly placed.

    Up to ``tries`` windows are drawn at once and the first one that contains
    a face centre is returned, so a crop of an image with faces rarely ends up
    with none (the public recipe, biubug6/Pytorch_Retinaface
    data/data_augment.py, retries likewise). If none does, or the image has
    no face, the first window is returned.

    Args:
        image_size: ``(height, width)`` of the image.
        boxes: ``(F, 4)`` faces ``(x1, y1, x2, y2)``.
        rng: Source of randomness.
        scale: ``(low, high)`` fraction of the short edge for the side.
        tries: Windows to draw.

    Returns:
        The :class:`CropWindow`.
    """
    height, width = check_image_size(image_size)
    short = min(height, width)
    side = np.maximum((rng.uniform(*scale, size=tries) * short).astype(np.int64), 1)  # (T,)
    x = rng.integers(0, width - side + 1)  # (T,)
    y = rng.integers(0, height - side + 1)  # (T,)
    # (T, 1) windows against (1, F) face centres -> (T, F)
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2
    centre_y = (boxes[:, 1] + boxes[:, 3]) / 2
    inside = (
        (centre_x > x[:, None]) & (centre_x < (x + side)[:, None])
        & (centre_y > y[:, None]) & (centre_y < (y + side)[:, None])
    )
    best = int(inside.any(axis=1).argmax())  # first window with a face, else 0
    return CropWindow(int(x[best]), int(y[best]), int(side[best]))


def crop(sample: FaceSample, window: CropWindow) -> FaceSample:
    """Cut ``window`` out of the image and keep the faces whose centre lies inside it.

    Kept boxes are clipped to the window; landmarks move with the image and
    are not clipped (a point may lie outside the crop, as on the original).
    A face centre strictly inside the window keeps a clipped box of positive
    size.
    """
    x, y, side = window
    boxes = sample.boxes
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2  # (F, 2)
    inside = ((centre > [x, y]) & (centre < [x + side, y + side])).all(axis=1)
    offset = np.array([x, y], np.float32)
    boxes = np.clip(boxes[inside] - np.tile(offset, 2), 0, side)
    points = _moved_points(sample.landmarks[inside], sample.has_landmarks[inside], -offset, 1.0)
    image = sample.image[y : y + side, x : x + side]
    return replace(sample, image=np.ascontiguousarray(image), boxes=boxes.astype(np.float32), landmarks=points)


def random_square_crop(sample: FaceSample, rng: np.random.Generator, scale=(0.3, 1.0)) -> FaceSample:
    """:func:`crop` with a window from :func:`square_crop_window`."""
    return crop(sample, square_crop_window(sample.image_size, sample.boxes, rng, scale))


def hflip(sample: FaceSample) -> FaceSample:
    """Mirror the image left to right: ``x -> W - x``, swapping left and right points.

    Flipping twice gives the sample back.
    """
    width = sample.image_size[1]
    boxes = flip_boxes(sample.boxes, width)
    # faces without landmarks keep their MISSING marks
    points = np.where(sample.has_landmarks[:, None, None], flip_landmarks(sample.landmarks, width), sample.landmarks)
    image = np.ascontiguousarray(sample.image[:, ::-1])
    return replace(sample, image=image, boxes=boxes, landmarks=points.astype(np.float32))


def resize(sample: FaceSample, size) -> FaceSample:
    """Resize to ``size`` (an int for a square, or ``(height, width)``), scaling the faces.

    Shrinking uses area averaging, enlarging bilinear interpolation.
    """
    new_height, new_width = check_image_size((size, size) if isinstance(size, int) else size)
    height, width = sample.image_size
    shrink = new_height * new_width < height * width
    image = cv2.resize(
        sample.image, (new_width, new_height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    )
    factor = np.array([new_width / width, new_height / height], np.float32)
    boxes = sample.boxes * np.tile(factor, 2)
    points = _moved_points(sample.landmarks, sample.has_landmarks, np.zeros(2, np.float32), factor)
    return replace(sample, image=image, boxes=boxes.astype(np.float32), landmarks=points)


def photometric_distort(
    image: np.ndarray,
    rng: np.random.Generator,
    brightness: float = 32.0,
    contrast=(0.5, 1.5),
    saturation=(0.5, 1.5),
    hue: float = 18.0,
    p: float = 0.5,
) -> np.ndarray:
    """Random colour distortion, each change applied with probability ``p``.

    A brightness shift of up to ``brightness`` grey levels, a contrast factor,
    then saturation and hue changes in HSV, with the contrast step either
    before or after them (the ranges are those of SSD and of
    biubug6/Pytorch_Retinaface data/data_augment.py).

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        rng: Source of randomness.
        brightness: Largest added value, 0..255 scale.
        contrast: ``(low, high)`` factor on pixel values.
        saturation: ``(low, high)`` factor on HSV saturation.
        hue: Largest hue rotation in degrees.
        p: Probability of each change.

    Returns:
        A new ``(H, W, 3)`` uint8 RGB image.
    """
    out = image.astype(np.float32)
    if rng.random() < p:
        out += rng.uniform(-brightness, brightness)
    contrast_first = rng.random() < 0.5
    if contrast_first and rng.random() < p:
        out *= rng.uniform(*contrast)
    out = _distort_hsv(np.clip(out, 0, 255), rng, saturation, hue, p)
    if not contrast_first and rng.random() < p:
        out *= rng.uniform(*contrast)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _distort_hsv(rgb: np.ndarray, rng: np.random.Generator, saturation, hue: float, p: float) -> np.ndarray:
    """Scale saturation and rotate hue of a float32 RGB image in 0..255."""
    # float32 HSV in OpenCV: hue in degrees [0, 360), saturation in [0, 1]
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    if rng.random() < p:
        hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(*saturation), 0, 1)
    if rng.random() < p:
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-hue, hue)) % 360
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def _moved_points(points: np.ndarray, has: np.ndarray, offset: np.ndarray, factor) -> np.ndarray:
    """``(F, 5, 2)`` points -> ``(points + offset) * factor``, leaving missing ones at ``-1``."""
    moved = (points + offset) * factor
    return np.where(has[:, None, None], moved, MISSING).astype(np.float32)


@dataclass(frozen=True)
class TrainTransform:
    """The paper's training augmentation: crop, resize, flip, colour.

    Call as ``transform(sample, rng)``; :class:`rfcore.data.WiderFace` passes
    a generator seeded per sample and epoch.

    Attributes:
        size: Side of the square output in pixels (``cfg.train_size``).
        crop_scale: Range of the crop side as a fraction of the short edge.
        flip_prob: Probability of a horizontal flip.
        distort: Apply :func:`photometric_distort`.
    """

    size: int = 640
    crop_scale: tuple[float, float] = (0.3, 1.0)
    flip_prob: float = 0.5
    distort: bool = True

    @classmethod
    def from_config(cls, cfg: RetinaFaceConfig, **overrides) -> TrainTransform:
        """The transform for a preset's training size."""
        return cls(size=cfg.train_size, **overrides)

    def __call__(self, sample: FaceSample, rng: np.random.Generator) -> FaceSample:
        sample = resize(random_square_crop(sample, rng, self.crop_scale), self.size)
        if rng.random() < self.flip_prob:
            sample = hflip(sample)
        if self.distort:
            sample = replace(sample, image=photometric_distort(sample.image, rng))
        return sample
