"""Drawing primitives for the pictures of the notebooks and the command line.

* Images are ``(H, W, 3)`` uint8 RGB numpy arrays. Drawing functions return
  a new array and never modify their input; drawing uses OpenCV without
  anti-aliasing, so every outline pixel has exactly the colour asked for.
* :class:`Rendering` is what the explainers of :mod:`rfcore.viz` and
  :mod:`rfcore.viz.loss` return; :func:`failed` is their picture for bad
  input (:class:`BadInput`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from matplotlib.figure import Figure

from rfcore.boxes import IGNORED, NEGATIVE, POSITIVE, as_boxes

FACE_COLOR = (0, 255, 255)
POSITIVE_COLOR = (0, 220, 0)
FORCED_COLOR = (255, 0, 255)
IGNORED_COLOR = (255, 170, 0)
NEGATIVE_COLOR = (255, 40, 40)
LABEL_COLORS = {POSITIVE: POSITIVE_COLOR, IGNORED: IGNORED_COLOR, NEGATIVE: NEGATIVE_COLOR}
LABEL_NAMES = {POSITIVE: "positive", IGNORED: "ignored", NEGATIVE: "negative"}
LANDMARK_COLORS = ((255, 60, 60), (60, 220, 60), (255, 255, 0), (60, 140, 255), (255, 140, 0))
"""Left eye, right eye, nose tip, left mouth corner, right mouth corner."""
LANDMARK_LABELS = ("left eye", "right eye", "nose tip", "left mouth corner", "right mouth corner")
"""The five landmarks in order; "left" is the image's left (the subject's right)."""
MISSED_COLOR = (255, 255, 255)
ZERO_IOU_COLOR = (200, 200, 200)

_FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True)
class Rendering:
    """What a ``render_*`` function returns.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB picture (on bad input: the input image
            with ``message`` written on it).
        caption: One or more lines summarising the picture with rounded
            numbers; empty on bad input.
        message: Empty when the input was fine, else why nothing was drawn.
        info: Named results of the function (documented by each function);
            empty on bad input.
    """

    image: np.ndarray
    caption: str = ""
    message: str = ""
    info: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the input was valid and the picture was drawn."""
        return not self.message


class BadInput(ValueError):
    """Input a control can produce; reported in :attr:`Rendering.message`."""


def check_image(image) -> np.ndarray:
    """Return ``image`` as a ``(H, W, 3)`` uint8 array, or raise ``ValueError``."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be an (H, W, 3) uint8 RGB array, got {image.shape} {image.dtype}")
    return image


def to_png(image) -> bytes:
    """Encode an RGB image as PNG bytes (for ``ipywidgets.Image`` or ``IPython.display.Image``)."""
    ok, png = cv2.imencode(".png", cv2.cvtColor(check_image(image), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("OpenCV could not encode the image as PNG")
    return png.tobytes()


def to_jpeg(image, quality: int = 90) -> bytes:
    """Encode an RGB image as JPEG bytes: about a tenth of the PNG size for photos (notebook outputs)."""
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(check_image(image), cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("OpenCV could not encode the image as JPEG")
    return jpeg.tobytes()


def draw_boxes(image, boxes_xyxy, color=FACE_COLOR, labels=None, thickness: int = 1) -> np.ndarray:
    """Draw box outlines, optionally with a text label above each.

    Args:
        image: ``(H, W, 3)`` uint8 RGB image.
        boxes_xyxy: ``(N, 4)`` boxes ``(x1, y1, x2, y2)`` in pixels, rounded
            to the nearest pixel.
        color: One RGB triple for all boxes, or ``(N, 3)`` one per box.
        labels: Optional ``N`` strings.
        thickness: Line width in pixels.

    Returns:
        A new ``(H, W, 3)`` uint8 image.
    """
    canvas = check_image(image).copy()
    boxes = np.rint(np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)).astype(int)
    colors = _per_item(color, len(boxes))
    for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colors[i], thickness, cv2.LINE_8)
        if labels is not None:
            put_text(canvas, labels[i], (x1, y1 - 4), colors[i])
    return canvas


def draw_landmarks(image, points, colors=LANDMARK_COLORS, radius: int = 3) -> np.ndarray:
    """Draw landmarks as filled dots; points at ``(-1, -1)`` (not annotated) are skipped.

    Args:
        image: ``(H, W, 3)`` uint8 RGB image.
        points: ``(F, 5, 2)`` or ``(5, 2)`` landmarks in pixels.
        colors: One RGB triple per landmark of a face (the default follows
            the order of :mod:`rfcore.boxes`).
        radius: Dot radius in pixels.

    Returns:
        A new ``(H, W, 3)`` uint8 image.
    """
    canvas = check_image(image).copy()
    points = np.asarray(points, dtype=np.float64)
    per_face = points.reshape(-1, points.shape[-2], 2)  # (F, K, 2)
    for face in per_face:
        for k, (x, y) in enumerate(face.tolist()):
            if (x, y) != (-1.0, -1.0):
                cv2.circle(canvas, (round(x), round(y)), radius, colors[k % len(colors)], -1, cv2.LINE_8)
    return canvas


def draw_faces(image, faces, color=FACE_COLOR, thickness: int | None = None, scores: bool = True) -> np.ndarray:
    """Draw detected faces: the box, the score above it and the five landmarks.

    Landmarks are dots in :data:`LANDMARK_COLORS`; a dot's radius follows
    the face's width (a twentieth of it, between 1 and ``thickness + 1``
    pixels), so the five stay apart on small faces.

    Args:
        image: ``(H, W, 3)`` uint8 RGB image.
        faces: ``F`` faces with ``box`` ``(x1, y1, x2, y2)``, ``score`` and
            five ``(x, y)`` ``landmarks``, such as :class:`rfcore.postprocess.Face`.
        color: One RGB triple for all boxes, or ``(F, 3)`` one per face.
        thickness: Box line width in pixels; ``None``: one pixel per 400 of
            the image's long side, at least one.
        scores: Write each score, two decimals, above its box.

    Returns:
        A new ``(H, W, 3)`` uint8 image.
    """
    canvas = check_image(image)
    thickness = line_width(canvas) if thickness is None else thickness
    boxes = np.array([face.box for face in faces], dtype=np.float64).reshape(-1, 4)
    labels = [f"{face.score:.2f}" for face in faces] if scores else None
    canvas = draw_boxes(canvas, boxes, color, labels, thickness)
    for face, width in zip(faces, (boxes[:, 2] - boxes[:, 0]).tolist()):
        radius = max(1, min(thickness + 1, round(width / 20)))
        canvas = draw_landmarks(canvas, face.landmarks, radius=radius)
    return canvas


def crop_zoom(image, box_xyxy, scale: int) -> np.ndarray:
    """Cut out a box and enlarge it by an integer factor with nearest-neighbour pixels.

    Args:
        image: ``(H, W, 3)`` uint8 RGB image.
        box_xyxy: ``(x1, y1, x2, y2)`` region, clipped to the image.
        scale: Enlargement factor (>= 1).

    Returns:
        ``(scale * h, scale * w, 3)`` uint8 image.
    """
    image = check_image(image)
    height, width = image.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in box_xyxy)
    crop = image[max(y1, 0) : min(y2, height), max(x1, 0) : min(x2, width)]
    return np.repeat(np.repeat(crop, scale, axis=0), scale, axis=1)


def iou_colors(iou) -> np.ndarray:
    """Colour per IoU: viridis from 0 to 1, light grey for exactly 0. ``(N,) -> (N, 3)`` uint8."""
    levels = np.clip(np.rint(np.asarray(iou, dtype=np.float64) * 255), 0, 255).astype(np.uint8)
    bgr = cv2.applyColorMap(levels.reshape(-1, 1), cv2.COLORMAP_VIRIDIS)[:, 0]
    rgb = bgr[:, ::-1].copy()
    rgb[levels == 0] = ZERO_IOU_COLOR
    return rgb


def table_markdown(rows: list[dict], formats: dict[str, str] | None = None) -> str:
    """A Markdown table of dicts with the same keys (e.g. :func:`rfcore.anchors.anchor_table`).

    Args:
        rows: One dict per row; the keys of the first row are the columns.
        formats: Optional ``str.format`` pattern per column, e.g. ``{"share": "{:.1%}"}``.

    Returns:
        The table as Markdown text.
    """
    formats = formats or {}
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = (formats.get(c, "{}").format(row[c]) for c in columns)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------- shared by the render functions


def line_width(image: np.ndarray) -> int:
    """Line width that reads at any image size: one pixel per 400 of the long side, at least one."""
    return max(1, round(max(image.shape[:2]) / 400))


def put_text(canvas: np.ndarray, text: str, origin, color, scale: float = 0.45) -> None:
    """Write ``text`` on a black box so it reads on any background (in place).

    ``origin`` is the bottom-left corner of the text; it is moved down if the
    text would leave the top of the image.
    """
    (width, height), baseline = cv2.getTextSize(text, _FONT, scale, 1)
    x, y = int(origin[0]), max(int(origin[1]), height + 3)
    cv2.rectangle(canvas, (x - 2, y - height - 3), (x + width + 2, y + baseline), (0, 0, 0), -1, cv2.LINE_8)
    cv2.putText(canvas, text, (x, y), _FONT, scale, tuple(int(c) for c in color), 1, cv2.LINE_AA)


def draw_legend(image: np.ndarray, entries: list[tuple[str, tuple]]) -> np.ndarray:
    """Colour swatches with text on a black panel in the top-left corner."""
    canvas = image.copy()
    text_width = max(cv2.getTextSize(text, _FONT, 0.45, 1)[0][0] for text, _ in entries)
    cv2.rectangle(canvas, (0, 0), (text_width + 32, 12 + 18 * len(entries)), (0, 0, 0), -1, cv2.LINE_8)
    for i, (text, color) in enumerate(entries):
        y = 6 + 18 * i
        cv2.rectangle(canvas, (6, y), (18, y + 12), color, -1, cv2.LINE_8)
        put_text(canvas, text, (24, y + 11), (255, 255, 255))
    return canvas


def paint_dots(image: np.ndarray, centres: np.ndarray, colors, radius: int) -> np.ndarray:
    """Square dots of side ``2 * radius + 1`` at ``(N, 2)`` centres, vectorised.

    ``colors`` is one RGB triple or ``(N, 3)``; dots are clipped to the image.
    """
    canvas = image.copy()
    height, width = canvas.shape[:2]
    xy = np.rint(np.asarray(centres, dtype=np.float64).reshape(-1, 2)).astype(int)
    offsets = np.arange(-radius, radius + 1)
    # (N, 1, k) and (N, k, 1) -> (N, k, k) pixel coordinates of every dot
    xs, ys = np.broadcast_arrays(xy[:, 0, None, None] + offsets, xy[:, 1, None, None] + offsets[:, None])
    colors = np.broadcast_to(np.asarray(colors, dtype=np.uint8).reshape(-1, 1, 1, 3), xs.shape + (3,))
    inside = (xs >= 0) & (xs < width) & (ys >= 0) & (ys < height)
    canvas[ys[inside], xs[inside]] = colors[inside]
    return canvas


def failed(image: np.ndarray, message: str) -> Rendering:
    """The input image, dimmed, with ``message`` written across the top."""
    canvas = image // 2
    width = canvas.shape[1]
    lines = _wrap(message, width - 12)
    cv2.rectangle(canvas, (0, 0), (width - 1, 10 + 18 * len(lines)), (0, 0, 0), -1)
    for i, line in enumerate(lines):
        put_text(canvas, line, (6, 20 + 18 * i), (255, 255, 255))
    return Rendering(canvas, "", message, {})


def _per_item(color, n: int) -> list[tuple[int, ...]]:
    """One RGB triple for each of ``n`` items from a single triple or an ``(n, 3)`` array."""
    colors = np.asarray(color, dtype=int)
    if colors.ndim == 1:
        colors = np.broadcast_to(colors, (n, 3))
    return [tuple(c) for c in colors.tolist()]


def _wrap(text: str, max_width: int, scale: float = 0.45) -> list[str]:
    """Split ``text`` into lines at most ``max_width`` pixels wide (long words stay whole)."""
    lines: list[str] = []
    for word in text.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(candidate, _FONT, scale, 1)[0][0] <= max_width:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines


# ---------------------------------------------------------------- checks and plots shared by the topics


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


def checked_face(face_box, image: np.ndarray) -> torch.Tensor:
    """Exactly one face as a ``(4,)`` tensor, or :class:`BadInput`."""
    boxes = checked_faces(face_box, image)
    if len(boxes) != 1:
        raise BadInput(f"expected one face box, got {len(boxes)}")
    return boxes[0]


def side_by_side(panels: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Panels of one height in a row, separated by white gaps."""
    height = panels[0].shape[0]
    spacer = np.full((height, gap, 3), 255, np.uint8)
    row = [part for panel in panels for part in (panel, spacer)][:-1]
    return np.concatenate(row, axis=1)
