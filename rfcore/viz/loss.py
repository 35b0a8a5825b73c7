"""Pictures of the multi-task loss [paper Eq. 1] for notebook 02, in the manner of :mod:`rfcore.viz`.

:func:`render_loss` matches the faces of one image to its anchors, evaluates
every term of Eq. 1 on a network output, and draws which anchors each term
sees: the positives (all four terms), the ignored anchors (none) and the
negatives that hard example mining keeps for ``L_cls``. Like every
``render_*`` it returns a :class:`~rfcore.viz.draw.Rendering` and reports input a
slider can produce (a negative weight, say) in its ``message`` instead of
raising.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch

from rfcore.boxes import IGNORED, NEGATIVE, POSITIVE, cxcywh_to_xyxy
from rfcore.config import RetinaFaceConfig
from rfcore.loss import classification_loss, multitask_loss, ohem_select
from rfcore.matching import TargetAssigner
from rfcore.model import RetinaFaceOutput
from rfcore.viz.draw import (
    FACE_COLOR,
    IGNORED_COLOR,
    NEGATIVE_COLOR,
    POSITIVE_COLOR,
    BadInput,
    Rendering,
    check_image,
    checked_faces,
    draw_boxes,
    draw_legend,
    failed,
    paint_dots,
)

WEIGHT_NAMES = {"cls": "lambda_cls", "box": "lambda_box", "pts": "lambda_pts", "pixel": "lambda_pixel"}
"""Each term of Eq. 1 and the preset field that weighs it."""


def render_loss(
    image,
    output: RetinaFaceOutput,
    faces,
    landmarks,
    cfg: RetinaFaceConfig,
    lambda_box: float | None = None,
    lambda_pts: float | None = None,
    lambda_pixel: float | None = None,
    ohem_ratio: int | None = None,
    pixel: torch.Tensor | None = None,
) -> Rendering:
    """The anchors behind each term of Eq. 1 on one image, and the terms' values.

    Positive anchors are outlined in ``POSITIVE_COLOR``, ignored anchors in
    ``IGNORED_COLOR`` and the faces in ``FACE_COLOR``; the negatives kept by
    OHEM (:func:`rfcore.loss.ohem_select`) get a ``NEGATIVE_COLOR`` dot at
    their centre (outlines of hundreds of anchors would hide the image), the
    other negatives nothing. The caption gives
    every term, its weight and the total.

    Args:
        image: ``(H, W, 3)`` uint8 RGB image the output was computed on.
        output: Network output for that image alone (batch of one).
        faces: ``(F, 4)`` annotated faces ``(x1, y1, x2, y2)`` inside the image.
        landmarks: ``(F, 5, 2)`` their landmarks (``-1`` where missing), or ``None``.
        cfg: Preset: anchor layout, matching thresholds, default weights and OHEM ratio.
        lambda_box, lambda_pts, lambda_pixel: λ1, λ2, λ3; ``None`` for the preset's.
        ohem_ratio: Negatives kept per positive; ``None`` for the preset's.
        pixel: ``L_pixel`` as a scalar tensor, or ``None`` when the model has no mesh branch.

    Returns:
        A :class:`~rfcore.viz.draw.Rendering` whose ``info`` holds ``terms`` (the
        unweighted terms and ``total``, floats), ``weighted`` (each term times
        its λ), the counts ``positive``, ``ignored``, ``negative`` and
        ``selected`` (negatives kept), and the ``labels`` ``(A,)``, ``selected_mask``
        ``(A,)`` and ``anchors`` ``(A, 4)`` they refer to.

    Raises:
        ValueError: If ``output`` does not have one row per anchor of the image.
    """
    image = check_image(image)
    try:
        boxes = checked_faces(faces, image)
        weights = _checked_weights(cfg, lambda_box, lambda_pts, lambda_pixel, ohem_ratio)
    except BadInput as exc:
        return failed(image, str(exc))

    assign = TargetAssigner(cfg, image.shape[:2])
    targets = assign([boxes], None if landmarks is None else [torch.as_tensor(landmarks, dtype=torch.float32)])
    terms = multitask_loss(output, targets, weights, pixel)
    selected = ohem_select(classification_loss(output.logits, targets.labels), targets.labels, weights.ohem_ratio)[0]
    labels = targets.labels[0]
    counts = {name: int((labels == value).sum()) for value, name in
              ((POSITIVE, "positive"), (IGNORED, "ignored"), (NEGATIVE, "negative"))}
    counts["selected"] = int(selected.sum())

    anchors_xyxy = cxcywh_to_xyxy(assign.anchors)
    canvas = paint_dots(image, assign.anchors[selected, :2].numpy(), NEGATIVE_COLOR, radius=2)
    canvas = draw_boxes(canvas, anchors_xyxy[labels == IGNORED], IGNORED_COLOR)
    canvas = draw_boxes(canvas, anchors_xyxy[labels == POSITIVE], POSITIVE_COLOR)
    canvas = draw_boxes(canvas, boxes, FACE_COLOR, thickness=2)
    canvas = draw_legend(canvas, [
        (f"positive {counts['positive']:,}: all terms", POSITIVE_COLOR),
        (f"ignored {counts['ignored']:,}: no term", IGNORED_COLOR),
        (f"hardest negatives {counts['selected']:,} of {counts['negative']:,}: L_cls", NEGATIVE_COLOR),
    ])
    values = {name: float(value) for name, value in terms._asdict().items()}
    weighted = {name: getattr(weights, field) * values[name] for name, field in WEIGHT_NAMES.items()}
    caption = _loss_caption(values, weighted, weights, counts, pixel is not None)
    info = {"terms": values, "weighted": weighted, **counts, "labels": labels, "selected_mask": selected,
            "anchors": assign.anchors}
    return Rendering(canvas, caption, "", info)


def _loss_caption(values: dict, weighted: dict, weights: RetinaFaceConfig, counts: dict, has_pixel: bool) -> str:
    """Anchor counts, then one line per term of Eq. 1: weight x value = contribution, then the total."""
    lines = [
        f"{counts['positive']:,} positive, {counts['ignored']:,} ignored, {counts['negative']:,} negative anchors; "
        f"OHEM {weights.ohem_ratio}:1 keeps the {counts['selected']:,} hardest negatives",
        f"L_cls        = {values['cls']:.4f}   (cross-entropy of {counts['positive']:,} positives + "
        f"{counts['selected']:,} negatives, / {max(counts['positive'], 1):,})",
        f"λ1 L_box     = {weights.lambda_box:g} x {values['box']:.4f} = {weighted['box']:.4f}",
        f"λ2 L_pts     = {weights.lambda_pts:g} x {values['pts']:.4f} = {weighted['pts']:.4f}",
    ]
    if has_pixel:
        lines.append(f"λ3 L_pixel   = {weights.lambda_pixel:g} x {values['pixel']:.4f} = {weighted['pixel']:.4f}")
    else:
        lines.append("λ3 L_pixel   = 0   (no mesh branch)")
    lines.append(f"L            = {values['total']:.4f}")
    return "\n".join(lines)


def _checked_weights(cfg: RetinaFaceConfig, lambda_box, lambda_pts, lambda_pixel, ohem_ratio) -> RetinaFaceConfig:
    """``cfg`` with the given weights and ratio, or :class:`~rfcore.viz.draw.BadInput` naming a bad one."""
    chosen = {"lambda_box": lambda_box, "lambda_pts": lambda_pts, "lambda_pixel": lambda_pixel}
    chosen = {name: getattr(cfg, name) if value is None else value for name, value in chosen.items()}
    for name, value in chosen.items():
        if not (isinstance(value, (int, float, np.floating)) and math.isfinite(value) and value >= 0):
            raise BadInput(f"{name} must be a finite number >= 0, got {value!r}")
    ratio = cfg.ohem_ratio if ohem_ratio is None else ohem_ratio
    if isinstance(ratio, bool) or not isinstance(ratio, (int, np.integer)) or ratio < 0:
        raise BadInput(f"ohem_ratio must be a whole number >= 0, got {ratio!r}")
    return replace(cfg, **{name: float(value) for name, value in chosen.items()}, ohem_ratio=int(ratio))

