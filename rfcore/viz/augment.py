"""Pictures of the training augmentation (notebook 05): the square crop, the flip's landmark swap, seeds side by side.

Images are ``(H, W, 3)`` uint8 RGB arrays drawn with :mod:`rfcore.viz.draw`; plots are
:class:`~matplotlib.figure.Figure` objects built without ``pyplot``. The augmentation itself is
:mod:`rfcore.data.augment`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from matplotlib.figure import Figure

from rfcore.data.augment import CropWindow, TrainTransform, hflip
from rfcore.data.sample import FaceSample
from rfcore.viz.draw import (
    NEGATIVE_COLOR,
    POSITIVE_COLOR,
    draw_boxes,
    draw_landmarks,
    paint_dots,
    put_text,
    side_by_side,
)


def render_crop_window(sample: FaceSample, window: CropWindow) -> np.ndarray:
    """The crop window (white) on the image; faces whose centre lies inside in green, the others in red.

    Args:
        sample: The image with its faces.
        window: The square crop (:func:`rfcore.data.augment.square_crop_window`).

    Returns:
        A new ``(H, W, 3)`` uint8 image; face centres are dots.
    """
    x, y, side = window
    centres = (sample.boxes[:, :2] + sample.boxes[:, 2:]) / 2  # (F, 2)
    inside = ((centres > [x, y]) & (centres < [x + side, y + side])).all(axis=1)
    colors = np.where(inside[:, None], POSITIVE_COLOR, NEGATIVE_COLOR)
    canvas = draw_boxes(sample.image, [(x, y, x + side, y + side)], (255, 255, 255), thickness=3)
    canvas = draw_boxes(canvas, sample.boxes, colors, thickness=2)
    return paint_dots(canvas, centres, colors, radius=3)


def render_sample(sample: FaceSample) -> np.ndarray:
    """Boxes and landmarks of a sample on its image (landmark colours as in :mod:`rfcore.viz.draw`)."""
    return draw_landmarks(draw_boxes(sample.image, sample.boxes, thickness=2), sample.landmarks, radius=4)


def render_flip(sample: FaceSample, face_box) -> np.ndarray:
    """The landmark swap of a horizontal flip, around one face.

    Three panels, each cut to ``face_box`` (of the original; mirrored for the
    flipped panels): the original; the mirror image with every point moved to
    ``x -> W - x`` but kept in its slot, so landmark 0 ("left eye", red) sits
    on the right; and :func:`rfcore.data.augment.hflip`, which also swaps the
    left and right slots so that landmark 0 is on the image's left again.

    Args:
        sample: The image with its faces.
        face_box: ``(x1, y1, x2, y2)`` region to show, in the original image.

    Returns:
        ``(h, 3 w + gaps, 3)`` uint8 image.
    """
    width = sample.image_size[1]
    x1, y1, x2, y2 = (int(round(v)) for v in face_box)
    flipped = hflip(sample)
    mirrored_points = sample.landmarks.copy()  # (F, 5, 2); faces without landmarks are not drawn
    mirrored_points[..., 0] = np.where(sample.has_landmarks[:, None], width - mirrored_points[..., 0], -1)
    panels = [
        (render_sample(sample), x1, "original"),
        (render_sample(replace(flipped, landmarks=mirrored_points)), width - x2, "mirrored, not swapped"),
        (render_sample(flipped), width - x2, "hflip: mirrored and swapped"),
    ]
    crops = []
    for image, left, title in panels:
        crop = np.ascontiguousarray(image[y1:y2, left : left + (x2 - x1)])
        put_text(crop, title, (4, 14), (255, 255, 255))
        crops.append(crop)
    return side_by_side(crops)


def plot_augmentations(sample: FaceSample, transform: TrainTransform, seeds: Sequence[int], columns: int = 4) -> Figure:
    """The training transform applied to one sample with several seeds, boxes and landmarks drawn.

    Args:
        sample: The image with its faces.
        transform: The augmentation (:class:`rfcore.data.augment.TrainTransform`).
        seeds: One ``numpy.random.default_rng`` seed per panel.
        columns: Panels per row.
    """
    rows = -(-len(seeds) // columns)
    fig = Figure(figsize=(2.6 * columns, 2.75 * rows), layout="constrained")
    axes = np.asarray(fig.subplots(rows, columns)).reshape(-1)
    for ax in axes:
        ax.set_axis_off()
    for ax, seed in zip(axes, seeds):
        augmented = transform(sample, np.random.default_rng(seed))
        ax.imshow(render_sample(augmented))
        ax.set_title(f"seed {seed}: {len(augmented.boxes)} faces", fontsize=8)
    return fig
