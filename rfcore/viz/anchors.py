"""Pictures of notebook 01: the anchors of a pyramid level, their IoU with a face, and the labels of matching.

See :mod:`rfcore.viz` for the conventions (images, figures, bad input).
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure
from torchvision.ops import box_iou

from rfcore.anchors import AnchorLevel, anchor_levels, make_anchors
from rfcore.boxes import IGNORED, NEGATIVE, POSITIVE, cxcywh_to_xyxy, match_anchors, paired_iou
from rfcore.config import RetinaFaceConfig
from rfcore.viz.draw import (
    FACE_COLOR,
    FORCED_COLOR,
    IGNORED_COLOR,
    LABEL_COLORS,
    LABEL_NAMES,
    NEGATIVE_COLOR,
    POSITIVE_COLOR,
    BadInput,
    Rendering,
    check_image,
    checked_face,
    checked_faces,
    draw_boxes,
    draw_legend,
    failed,
    iou_colors,
    paint_dots,
)

# ---------------------------------------------------------------- renders


def render_anchor_level(image, face_box, cfg: RetinaFaceConfig, level, size_index: int, point) -> Rendering:
    """One anchor size of one pyramid level over an image, with IoUs against a face.

    Every cell of the level gets a dot at its anchor centre, coloured by the
    IoU of that cell's anchor (of the chosen size) with the face
    (:func:`iou_colors`). The anchor of the cell containing ``point`` is
    outlined in the colour of the label matching gives it
    (:func:`rfcore.boxes.match_anchors` with the thresholds of ``cfg``).

    Args:
        image: ``(H, W, 3)`` uint8 RGB image; anchors are laid out for its size.
        face_box: ``(4,)`` face ``(x1, y1, x2, y2)`` inside the image.
        cfg: Preset with the anchor layout and IoU thresholds.
        level: Level name (``"P3"``) or index into ``cfg.strides``.
        size_index: Which of the level's anchor sizes, ``0 .. len(sizes) - 1``.
        point: ``(x, y)`` pixel inside the image; picks the cell that contains it.

    Returns:
        A :class:`Rendering` whose ``info`` holds ``level`` (name), ``stride``,
        ``size`` (side in pixels), ``cell`` ``(row, col)``, ``anchor``
        ``(4,)`` tensor ``(cx, cy, w, h)``, ``iou`` of that anchor, its matching ``label``
        name, and ``ious``: ``(rows, cols)`` tensor of the IoU of every cell's
        anchor of this size.
    """
    image = check_image(image)
    try:
        face = checked_face(face_box, image)
        grid = _checked_level(cfg, image, level)
        size_index = _checked_index(size_index, len(grid.sizes), f"anchor size of {grid.name}")
        row, col = _checked_cell(point, grid, image)
    except BadInput as exc:
        return failed(image, str(exc))

    rows, cols = grid.grid
    anchors = grid.anchors()[size_index :: len(grid.sizes)]  # (rows * cols, 4): one size, row-major cells
    ious = paired_iou(cxcywh_to_xyxy(anchors), face.expand(len(anchors), 4))
    flat = row * cols + col
    anchor, iou = anchors[flat], float(ious[flat])
    all_anchors = make_anchors(cfg, image.shape[:2])
    labels = match_anchors(all_anchors, face[None], cfg.pos_iou, cfg.neg_iou).labels
    label = int(labels[grid.start + flat * len(grid.sizes) + size_index])

    canvas = paint_dots(image, anchors[:, :2].numpy(), iou_colors(ious.numpy()), radius=grid.stride // 8)
    canvas = draw_boxes(canvas, face[None], FACE_COLOR, thickness=2)
    canvas = draw_boxes(canvas, cxcywh_to_xyxy(anchor)[None], LABEL_COLORS[label], [f"IoU {iou:.2f}"], 2)
    side = grid.sizes[size_index]
    caption = (
        f"{grid.name} (stride {grid.stride}), {side:.1f} px anchor at cell (row {row}, col {col}), "
        f"centre ({float(anchor[0]):.0f}, {float(anchor[1]):.0f}): IoU {iou:.3f}, {LABEL_NAMES[label]}; "
        f"best IoU of this size on {grid.name}: {float(ious.max()):.3f}"
    )
    info = {
        "level": grid.name, "stride": grid.stride, "size": side, "cell": (row, col),
        "anchor": anchor, "iou": iou, "label": LABEL_NAMES[label],
        "ious": ious.view(rows, cols),
    }
    return Rendering(canvas, caption, "", info)


def render_matching(image, faces, cfg: RetinaFaceConfig, pos_iou: float | None = None,
                    neg_iou: float | None = None) -> Rendering:
    """Anchors labelled by :func:`rfcore.boxes.match_anchors`, drawn over an image.

    Positive anchors are outlined in ``POSITIVE_COLOR``, positives that only
    exist because a face was forced onto its best anchor (IoU below
    ``pos_iou``) in ``FORCED_COLOR``, ignored anchors in ``IGNORED_COLOR``.
    Negatives are far too many to outline: those that overlap a face get a
    dot at their centre in ``NEGATIVE_COLOR``; a legend counts all three.

    Args:
        image: ``(H, W, 3)`` uint8 RGB image; anchors are laid out for its size.
        faces: ``(F, 4)`` faces ``(x1, y1, x2, y2)`` inside the image (``F`` may be 0).
        cfg: Preset with the anchor layout.
        pos_iou: Positive threshold, default ``cfg.pos_iou``.
        neg_iou: Negative threshold, default ``cfg.neg_iou``.

    Returns:
        A :class:`Rendering` whose ``info`` holds the counts ``positive``,
        ``forced``, ``ignored``, ``negative``, the ``labels`` ``(A,)`` and the
        ``anchors`` ``(A, 4)`` they belong to.
    """
    image = check_image(image)
    pos_iou = cfg.pos_iou if pos_iou is None else pos_iou
    neg_iou = cfg.neg_iou if neg_iou is None else neg_iou
    try:
        boxes = checked_faces(faces, image)
        _check_thresholds(pos_iou, neg_iou)
    except BadInput as exc:
        return failed(image, str(exc))

    anchors = make_anchors(cfg, image.shape[:2])
    labels = match_anchors(anchors, boxes, pos_iou, neg_iou).labels
    best_iou = box_iou(cxcywh_to_xyxy(anchors), boxes).max(dim=1).values if len(boxes) else torch.zeros(len(anchors))
    forced = (labels == POSITIVE) & (best_iou < pos_iou)
    touching_negative = (labels == NEGATIVE) & (best_iou > 0)

    canvas = paint_dots(image, anchors[touching_negative, :2].numpy(), NEGATIVE_COLOR, radius=0)
    canvas = draw_boxes(canvas, cxcywh_to_xyxy(anchors[labels == IGNORED]), IGNORED_COLOR)
    canvas = draw_boxes(canvas, cxcywh_to_xyxy(anchors[(labels == POSITIVE) & ~forced]), POSITIVE_COLOR)
    canvas = draw_boxes(canvas, cxcywh_to_xyxy(anchors[forced]), FORCED_COLOR, thickness=2)
    canvas = draw_boxes(canvas, boxes, FACE_COLOR)
    counts = {name: int((labels == value).sum()) for value, name in LABEL_NAMES.items()}
    counts["forced"] = int(forced.sum())
    canvas = draw_legend(canvas, [
        (f"positive {counts['positive']:,} (forced {counts['forced']})", POSITIVE_COLOR),
        (f"ignored {counts['ignored']:,}", IGNORED_COLOR),
        (f"negative {counts['negative']:,}", NEGATIVE_COLOR),
    ])
    caption = (
        f"IoU >= {pos_iou} positive, < {neg_iou} negative: {counts['positive']:,} positive "
        f"({counts['forced']} forced), {counts['ignored']:,} ignored, {counts['negative']:,} negative "
        f"of {len(anchors):,} anchors"
    )
    return Rendering(canvas, caption, "", {**counts, "labels": labels, "anchors": anchors})


# ---------------------------------------------------------------- plots


def plot_anchor_counts(cfgs, image_size) -> Figure:
    """Bar chart of anchors per pyramid level, one panel per preset.

    Args:
        cfgs: Sequence of presets.
        image_size: Input ``(height, width)``.

    Returns:
        A Figure with a log-scale bar per level, labelled with count and share.
    """
    fig = Figure(figsize=(4.5 * len(cfgs), 3.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(cfgs), sharey=True))
    height, width = image_size
    for ax, cfg in zip(axes, cfgs):
        levels = anchor_levels(cfg, image_size)
        counts = [level.count for level in levels]
        bars = ax.bar([level.name for level in levels], counts, color="tab:blue")
        ax.bar_label(bars, [f"{n:,}\n{n / sum(counts):.1%}" for n in counts], fontsize=8)
        ax.set_yscale("log")
        ax.set_ylim(top=max(counts) * 20)
        ax.set_title(f"{cfg.name}: {sum(counts):,} anchors at {width}x{height}", fontsize=10)
        ax.set_xlabel("pyramid level")
    axes[0].set_ylabel("anchors (log scale)")
    return fig


# ---------------------------------------------------------------- helpers


def _checked_level(cfg: RetinaFaceConfig, image: np.ndarray, level) -> AnchorLevel:
    """The :class:`AnchorLevel` named (``"P3"``) or indexed by ``level``, or :class:`BadInput`."""
    levels = anchor_levels(cfg, image.shape[:2])
    by_name = {grid.name: grid for grid in levels}
    if isinstance(level, str) and level in by_name:
        return by_name[level]
    if isinstance(level, int) and not isinstance(level, bool) and 0 <= level < len(levels):
        return levels[level]
    names = ", ".join(by_name)
    raise BadInput(
        f"no pyramid level {level!r} in preset {cfg.name!r}: use one of {names} or an index 0..{len(levels) - 1}"
    )


def _checked_index(index, count: int, what: str) -> int:
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
        raise BadInput(f"{what}: index {index!r} is out of range 0..{count - 1}")
    return index


def _checked_cell(point, grid: AnchorLevel, image: np.ndarray) -> tuple[int, int]:
    """``(row, col)`` of the cell of ``grid`` containing pixel ``point = (x, y)``, or :class:`BadInput`."""
    height, width = image.shape[:2]
    try:
        x, y = (float(v) for v in point)
    except (TypeError, ValueError):
        raise BadInput(f"point must be (x, y), got {point!r}") from None
    if not (0 <= x < width and 0 <= y < height):
        raise BadInput(f"point ({x:g}, {y:g}) lies outside the image (width {width}, height {height})")
    return int(y // grid.stride), int(x // grid.stride)


def _check_thresholds(pos_iou, neg_iou) -> None:
    if not 0 < neg_iou <= pos_iou <= 1:
        raise BadInput(f"thresholds need 0 < neg_iou <= pos_iou <= 1, got neg_iou={neg_iou}, pos_iou={pos_iou}")


