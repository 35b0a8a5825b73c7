"""Pictures for the notebooks: pure functions that return images or figures.

* Images are ``(H, W, 3)`` uint8 RGB numpy arrays, drawn with the
  primitives of :mod:`rfcore.draw`; inputs are never modified.
* Plots are :class:`matplotlib.figure.Figure` objects built without
  ``pyplot``: no global figure state, nothing to close, nothing shown until
  the caller displays the figure.

Bad input. The ``render_*`` functions are what sliders call, so input that
a control can produce (a face box outside the image or of zero size, an
unknown pyramid level or anchor size, inverted thresholds) never raises.
Every ``render_*`` returns a :class:`Rendering`; on bad input its
``message`` says what is wrong and its ``image`` is the input image, dimmed,
with that message written across the top. An argument no control can
produce (an image that is not ``(H, W, 3)`` uint8) raises ``ValueError``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from matplotlib.figure import Figure
from torchvision.ops import box_iou

from rfcore.anchors import AnchorLevel, anchor_levels, make_anchors
from rfcore.boxes import (
    IGNORED,
    NEGATIVE,
    POSITIVE,
    as_boxes,
    as_landmarks,
    best_anchor_per_face,
    centre_distance2,
    cxcywh_to_xyxy,
    encode_boxes,
    encode_landmarks,
    has_landmarks,
    match_anchors,
    paired_iou,
)
from rfcore.config import RetinaFaceConfig
from rfcore.draw import (
    FACE_COLOR,
    FORCED_COLOR,
    IGNORED_COLOR,
    LABEL_COLORS,
    LABEL_NAMES,
    LANDMARK_COLORS,
    MISSED_COLOR,
    NEGATIVE_COLOR,
    POSITIVE_COLOR,
    BadInput,
    Rendering,
    check_image,
    draw_boxes,
    draw_faces,
    draw_landmarks,
    draw_legend,
    failed,
    iou_colors,
    line_width,
    paint_dots,
)


def place_face(box, landmarks, centre, scale):
    """Scale a face about its box centre and move that centre to ``centre``.

    Broadcasts over leading dimensions of ``centre`` and ``scale``, so one
    face can be turned into many.

    Args:
        box: ``(4,)`` face ``(x1, y1, x2, y2)``.
        landmarks: ``(5, 2)`` points of that face.
        centre: ``(..., 2)`` new box centre(s) in pixels.
        scale: ``(...)`` size factor(s).

    Returns:
        ``boxes`` ``(..., 4)`` and ``landmarks`` ``(..., 5, 2)``, float32.
    """
    box = torch.as_tensor(box, dtype=torch.float32)
    landmarks = torch.as_tensor(landmarks, dtype=torch.float32)
    centre = torch.as_tensor(centre, dtype=torch.float32)
    scale = torch.as_tensor(scale, dtype=torch.float32)[..., None]  # (..., 1)
    old_centre = (box[:2] + box[2:]) / 2
    corners = box.view(2, 2) - old_centre  # (2, 2) corners relative to the centre
    # (..., 1, 1) * (2, 2) + (..., 1, 2) -> (..., 2, 2) -> (..., 4)
    boxes = (scale[..., None] * corners + centre[..., None, :]).flatten(-2)
    points = scale[..., None] * (landmarks - old_centre) + centre[..., None, :]
    return boxes, points


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
        face = _checked_face(face_box, image)
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


def render_landmark_encoding(image, face_box, landmarks, cfg: RetinaFaceConfig, anchor=None) -> Rendering:
    """A face, its five landmarks and an anchor, with the targets the anchor must predict.

    Draws the anchor (white) with its centre, a line from the anchor centre
    to every landmark, the face box and the landmarks. The targets are
    :func:`rfcore.boxes.encode_boxes` and :func:`rfcore.boxes.encode_landmarks`
    with ``cfg.variances``.

    Args:
        image: ``(H, W, 3)`` uint8 RGB image.
        face_box: ``(4,)`` face ``(x1, y1, x2, y2)`` inside the image.
        landmarks: ``(5, 2)`` points of that face (not all ``-1``).
        cfg: Preset with the anchor layout and variances.
        anchor: ``(4,)`` anchor ``(cx, cy, w, h)``; default the face's best
            anchor in ``cfg``'s layout for this image size (highest IoU, ties
            to the nearest centre, :func:`rfcore.boxes.best_anchor_per_face`).

    Returns:
        A :class:`Rendering` whose ``info`` holds ``anchor`` ``(4,)``, its
        ``iou`` with the face, ``box_targets`` ``(4,)`` and
        ``landmark_targets`` ``(10,)`` tensors.
    """
    image = check_image(image)
    try:
        face = _checked_face(face_box, image)
        points = _checked_landmarks(landmarks)
    except BadInput as exc:
        return failed(image, str(exc))

    anchor = _best_anchor(cfg, image, face) if anchor is None else torch.as_tensor(anchor, dtype=torch.float32)
    iou = float(paired_iou(cxcywh_to_xyxy(anchor)[None], face[None]))
    box_targets = encode_boxes(face, anchor, cfg.variances)
    landmark_targets = encode_landmarks(points, anchor, cfg.variances)

    canvas = draw_boxes(image, cxcywh_to_xyxy(anchor)[None], (255, 255, 255), [f"anchor {float(anchor[2]):.0f} px"])
    centre = tuple(round(v) for v in anchor[:2].tolist())
    for k, (x, y) in enumerate(points.tolist()):
        cv2.line(canvas, centre, (round(x), round(y)), LANDMARK_COLORS[k], 1, cv2.LINE_8)
    cv2.drawMarker(canvas, centre, (255, 255, 255), cv2.MARKER_CROSS, 9, 2)
    canvas = draw_landmarks(draw_boxes(canvas, face[None], FACE_COLOR, thickness=2), points)
    caption = "\n".join([
        f"anchor {float(anchor[2]):.1f} px at ({float(anchor[0]):.0f}, {float(anchor[1]):.0f}), "
        f"IoU with the face {iou:.2f}, variances {cfg.variances}",
        "box t = " + _format_numbers(box_targets),
        "landmarks l = " + _format_numbers(landmark_targets),
    ])
    info = {"anchor": anchor, "iou": iou, "box_targets": box_targets, "landmark_targets": landmark_targets}
    return Rendering(canvas, caption, "", info)


def render_moved_face(image, face_box, landmarks, cfg: RetinaFaceConfig, centre, scale: float) -> Rendering:
    """Move and scale a face (pixels and annotation), then :func:`render_landmark_encoding`.

    The image is scaled by ``scale`` about the face-box centre and shifted so
    that this centre lands on ``centre``; uncovered pixels are grey. The face
    is matched to its best anchor in the new place.

    Args:
        image: ``(H, W, 3)`` uint8 RGB image.
        face_box: ``(4,)`` face ``(x1, y1, x2, y2)``.
        landmarks: ``(5, 2)`` points of that face.
        cfg: Preset with the anchor layout and variances.
        centre: ``(x, y)`` new face-box centre in pixels.
        scale: Size factor, > 0.

    Returns:
        The :class:`Rendering` of :func:`render_landmark_encoding` for the
        moved face (its ``info`` also holds the moved ``box`` and ``landmarks``).
    """
    image = check_image(image)
    try:
        points = _checked_landmarks(landmarks)
        factor = _checked_scale(scale)
    except BadInput as exc:
        return failed(image, str(exc))
    box, points = place_face(face_box, points, centre, factor)
    old_centre = torch.as_tensor(face_box, dtype=torch.float32).view(2, 2).mean(dim=0)
    shift = torch.as_tensor(centre, dtype=torch.float32) - factor * old_centre
    warp = np.array([[factor, 0.0, float(shift[0])], [0.0, factor, float(shift[1])]])
    height, width = image.shape[:2]
    moved = cv2.warpAffine(image, warp, (width, height), flags=cv2.INTER_LINEAR, borderValue=(128, 128, 128))
    rendering = render_landmark_encoding(moved, box, points, cfg)
    return Rendering(rendering.image, rendering.caption, rendering.message,
                     {**rendering.info, "box": box, "landmarks": points} if rendering.ok else {})


def render_threshold(image, faces, threshold: float, truth_boxes=None, match_iou: float = 0.5) -> Rendering:
    """The faces whose score exceeds ``threshold``, checked against annotated faces if given.

    The detector keeps a face when its probability ``p > threshold``.
    Keeping the faces of a run at a lower threshold that pass this one gives
    the faces of a run at this threshold: NMS visits faces by descending
    score, so a face above the threshold can only have been suppressed by a
    higher-scoring one (as long as ``top_k`` and ``max_faces`` cut nothing).

    Kept faces are drawn with :func:`draw_faces`, in ``FACE_COLOR`` when
    they overlap an annotated face with IoU >= ``match_iou`` and in
    ``NEGATIVE_COLOR`` otherwise; annotated faces that no kept face
    overlaps that much are outlined in ``MISSED_COLOR``. (Counting is per
    face, not the one-to-one matching of the evaluation protocol.)

    Args:
        image: ``(H, W, 3)`` uint8 RGB image.
        faces: Faces detected at a threshold at most ``threshold`` (see
            :func:`draw_faces`).
        threshold: Score a face must exceed, in ``[0, 1)``.
        truth_boxes: Optional ``(T, 4)`` annotated faces ``(x1, y1, x2, y2)``
            inside the image.
        match_iou: IoU from which a face counts as found.

    Returns:
        A :class:`Rendering` whose ``info`` holds ``threshold`` and ``faces``
        (the kept ones), and with ``truth_boxes`` the counts ``matched``
        (kept faces on an annotated face), ``false`` (the other kept faces)
        and ``missed`` (annotated faces no kept face found).
    """
    image = check_image(image)
    try:
        _check_score_threshold(threshold)
        truth = None if truth_boxes is None else checked_faces(truth_boxes, image)
    except BadInput as exc:
        return failed(image, str(exc))

    kept = [face for face in faces if face.score > threshold]
    caption = f"score > {threshold:.2f}: {len(kept)} face{'' if len(kept) == 1 else 's'}"
    if truth is None:
        return Rendering(draw_faces(image, kept), caption, "", {"threshold": threshold, "faces": kept})
    boxes = torch.tensor([face.box for face in kept], dtype=torch.float32).reshape(-1, 4)
    hits = box_iou(boxes, truth) >= match_iou  # (K, T)
    matched, found = hits.any(dim=1), hits.any(dim=0)
    counts = {"matched": int(matched.sum()), "false": int((~matched).sum()), "missed": int((~found).sum())}
    colors = np.where(matched.numpy()[:, None], FACE_COLOR, NEGATIVE_COLOR)
    canvas = draw_boxes(draw_faces(image, kept, colors), truth[~found], MISSED_COLOR, thickness=line_width(image))
    caption += (
        f", {counts['matched']} on an annotated face (IoU >= {match_iou}), {counts['false']} elsewhere; "
        f"{counts['missed']} of {len(truth)} annotated faces missed"
    )
    return Rendering(canvas, caption, "", {"threshold": threshold, "faces": kept, **counts})


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


def plot_histograms(panels: dict[str, dict[str, np.ndarray]], bins: int = 60, xlabel: str = "") -> Figure:
    """Overlaid step histograms, one panel per group.

    Args:
        panels: ``{panel title: {series name: values}}``; values of any shape
            are flattened.
        bins: Number of bins (shared by the series of a panel).
        xlabel: Label of every x axis.

    Returns:
        A Figure with one panel per entry of ``panels``, side by side.
    """
    fig = Figure(figsize=(4.5 * len(panels), 3.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (title, series) in zip(axes, panels.items()):
        values = {name: np.asarray(v, dtype=np.float64).ravel() for name, v in series.items()}
        edges = np.histogram_bin_edges(np.concatenate(list(values.values())), bins=bins)
        for name, v in values.items():
            ax.hist(v, bins=edges, histtype="step", linewidth=1.5, label=name)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("count")
    return fig


# ---------------------------------------------------------------- helpers


def _format_numbers(values: torch.Tensor) -> str:
    return "(" + ", ".join(f"{v:+.2f}" for v in values.tolist()) + ")"


def checked_faces(faces, image: np.ndarray) -> torch.Tensor:
    """``(F, 4)`` faces with positive size inside the image, or :class:`BadInput`."""
    try:
        boxes = as_boxes(faces, "face box").reshape(-1, 4)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    height, width = image.shape[:2]
    for box in boxes.tolist():
        shown = [round(v, 1) for v in box]
        if box[2] - box[0] <= 0 or box[3] - box[1] <= 0:
            raise BadInput(f"face box {shown} has zero width or height")
        if box[0] < 0 or box[1] < 0 or box[2] > width or box[3] > height:
            raise BadInput(f"face box {shown} (x1, y1, x2, y2) does not lie inside the image (width {width}, height {height})")
    return boxes


def _checked_face(face_box, image: np.ndarray) -> torch.Tensor:
    """Exactly one face as a ``(4,)`` tensor, or :class:`BadInput`."""
    boxes = checked_faces(face_box, image)
    if len(boxes) != 1:
        raise BadInput(f"expected one face box, got {len(boxes)}")
    return boxes[0]


def _checked_landmarks(landmarks) -> torch.Tensor:
    """``(5, 2)`` annotated landmarks, or :class:`BadInput`."""
    try:
        points = as_landmarks(torch.as_tensor(landmarks, dtype=torch.float32).reshape(1, -1), 1)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise BadInput(f"landmarks must be 5 (x, y) points: {exc}") from None
    if not has_landmarks(points)[0]:
        raise BadInput("this face has no landmark annotation (all coordinates -1): nothing to encode")
    return points[0]


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


def _checked_scale(scale) -> float:
    try:
        factor = float(scale)
    except (TypeError, ValueError):
        factor = math.nan
    if not (math.isfinite(factor) and factor > 0):
        raise BadInput(f"scale must be a positive number, got {scale!r}")
    return factor


def _check_score_threshold(threshold) -> None:
    if not 0 <= threshold < 1:
        raise BadInput(f"score threshold must be in [0, 1), got {threshold}")


def _check_thresholds(pos_iou, neg_iou) -> None:
    if not 0 < neg_iou <= pos_iou <= 1:
        raise BadInput(f"thresholds need 0 < neg_iou <= pos_iou <= 1, got neg_iou={neg_iou}, pos_iou={pos_iou}")


def _best_anchor(cfg: RetinaFaceConfig, image: np.ndarray, face: torch.Tensor) -> torch.Tensor:
    """The anchor a face is forced onto in ``cfg``'s layout: ``(4,)`` ``(cx, cy, w, h)``."""
    anchors = make_anchors(cfg, image.shape[:2])
    iou = box_iou(cxcywh_to_xyxy(anchors), face[None])  # (A, 1)
    best = best_anchor_per_face(iou, centre_distance2(anchors[:, None], face[None, None]))
    return anchors[best[0]]
