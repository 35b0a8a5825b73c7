"""Pictures of inference and evaluation, in the manner of :mod:`rfcore.viz`.

:func:`draw_nms` shows the candidates of a detector before and after
non-maximum suppression as an RGB array. The curves, precision-recall and
landmark CED, are :class:`~matplotlib.figure.Figure` objects built without
``pyplot`` (nothing shown, nothing to close; ``fig.savefig(path)`` writes them).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from rfcore.evaluation.landmarks import FAILURE_NME, ced_curve, failure_rate
from rfcore.evaluation.protocol import PRCurve
from rfcore.viz.draw import crop_zoom, draw_boxes, draw_faces, iou_colors, side_by_side


def draw_nms(image, candidate_boxes, candidate_scores, kept_faces, region=None) -> np.ndarray:
    """Non-maximum suppression in two panels: every candidate box coloured by its score, then the faces kept.

    Candidates are drawn lowest score first, so the best box of each bundle
    lies on top, in the viridis scale of :func:`rfcore.viz.iou_colors`
    (purple for low scores, yellow for high). The kept faces are drawn by
    :func:`rfcore.viz.draw.draw_faces`.

    Args:
        image: ``(H, W, 3)`` uint8 RGB image.
        candidate_boxes: ``(C, 4)`` boxes ``(x1, y1, x2, y2)`` before NMS.
        candidate_scores: ``(C,)`` their scores in ``[0, 1]``.
        kept_faces: The faces after NMS, with ``box``, ``score`` and
            ``landmarks`` (such as :class:`rfcore.detector.Face`).
        region: Optional ``(x1, y1, x2, y2)`` that both panels are cut to.

    Returns:
        ``(h, 2 w + 4, 3)`` uint8: the two panels side by side, ``h x w``
        the image's size or the region's.
    """
    scores = np.asarray(candidate_scores, dtype=np.float64).reshape(-1)
    order = np.argsort(scores, kind="stable")  # best box of a bundle drawn last, on top
    boxes = np.asarray(candidate_boxes, dtype=np.float64).reshape(-1, 4)[order]
    panels = [draw_boxes(image, boxes, iou_colors(scores[order])), draw_faces(image, kept_faces)]
    if region is not None:
        panels = [crop_zoom(panel, region, 1) for panel in panels]
    return side_by_side(panels)


def plot_pr_curves(runs: Mapping[str, Mapping[str, PRCurve]], title: str = "") -> Figure:
    """One panel per subset with the precision-recall curve of each run, APs in the legend.

    Args:
        runs: Run name (a model, a test-time option) -> subset name ->
            :class:`PRCurve`, e.g. ``{"shipped": evaluation.curves}``. Every
            run needs the subsets of the first.
        title: Optional title over all panels.

    Returns:
        A Figure with one panel per subset, side by side.

    Raises:
        ValueError: If there are no runs, or a run lacks a subset of the first.
    """
    if not runs:
        raise ValueError("no runs to plot")
    subsets = list(next(iter(runs.values())))
    for name, curves in runs.items():
        if missing := [s for s in subsets if s not in curves]:
            raise ValueError(f"run {name!r} has no curve for {missing}")
    fig = Figure(figsize=(3.4 * len(subsets), 3.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(subsets), sharey=True))
    for ax, subset in zip(axes, subsets):
        for name, curves in runs.items():
            curve = curves[subset]
            reached = curve.recall > 0  # thresholds above every score have no precision to draw
            ax.plot(curve.recall[reached], curve.precision[reached], linewidth=1.5, label=f"{name}: {curve.ap:.3f}")
        ax.set_title(f"{subset} ({curves[subset].faces:,} faces)", fontsize=10)
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall")
        ax.grid(alpha=0.3)
        ax.legend(title="AP", fontsize=8, title_fontsize=8, loc="lower left")
    axes[0].set_ylabel("precision")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_ced(runs: Mapping[str, np.ndarray], max_error: float = 0.2, title: str = "") -> Figure:
    """Cumulative error distribution of landmark NME per run, failure rates in the legend.

    Args:
        runs: Run name -> ``(M,)`` NME of its measured faces
            (:attr:`rfcore.evaluation.LandmarkResult.errors`).
        max_error: Right end of the NME axis.
        title: Optional title.

    Returns:
        A Figure with one panel; a dashed line marks the failure limit.
    """
    fig = Figure(figsize=(4.6, 3.4), layout="constrained")
    ax = fig.subplots()
    for name, errors in runs.items():
        x, share = ced_curve(np.asarray(errors), max_error)
        label = f"{name}: {len(errors):,} faces, {failure_rate(np.asarray(errors)):.1%} fail"
        ax.plot(x, share, linewidth=1.5, label=label)
    ax.axvline(FAILURE_NME, color="grey", linestyle="--", linewidth=1)
    ax.set(xlim=(0, max_error), ylim=(0, 1.02), xlabel="NME (landmark error / sqrt(w h))", ylabel="share of faces")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    if title:
        ax.set_title(title, fontsize=10)
    return fig
