"""Pictures of notebook 06: the loss terms and validation scores of a training run against the step.

:func:`read_log` loads the ``log.jsonl`` that :func:`rfcore.train.loop.train`
writes (one JSON object per step, and one per validation with ``--val``);
:func:`plot_loss_terms` draws one panel per loss term of Eq. 1 against the
step, :func:`plot_validation` the validation AP and landmark NME per face-size
band, and :func:`plot_run` both from a run folder; each returns a
:class:`~matplotlib.figure.Figure` built without ``pyplot``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from rfcore.evaluation.truth import ALL_FACES, SIZE_BANDS
from rfcore.train.log import parse_log, step_records, validation_records

TERM_TITLES = {"total": "$L$ (Eq. 1)", "cls": "$L_{cls}$", "box": "$L_{box}$", "pts": "$L_{pts}$",
               "pixel": "$L_{pixel}$"}
"""Panel title of each logged loss term (the names of :data:`rfcore.train.log.TERMS`)."""


def read_log(path) -> list[dict]:
    """The records of a training log, one dict per logged step, in file order (:func:`rfcore.train.log.parse_log`).

    Args:
        path: A ``log.jsonl`` file or the run's output folder holding one.

    Raises:
        FileNotFoundError: If there is no log there.
    """
    path = Path(path)
    log = path / "log.jsonl" if path.is_dir() else path
    if not log.is_file():
        raise FileNotFoundError(f"no training log at {log}: pass a run's --out folder or its log.jsonl")
    return parse_log(log)[0]


def moving_average(values, window: int) -> np.ndarray:
    """Mean of each value and the up to ``window - 1`` values before it (same length as ``values``)."""
    values = np.asarray(values, dtype=np.float64)
    if window < 1:
        raise ValueError(f"window must be positive, got {window}")
    sums = np.cumsum(np.concatenate([[0.0], values]))
    starts = np.maximum(np.arange(len(values)) + 1 - window, 0)
    return (sums[1:] - sums[starts]) / (np.arange(len(values)) + 1 - starts)


def plot_loss_terms(records: Sequence[dict], terms: Sequence[str] = ("total", "cls", "box", "pts"),
                    window: int = 5, title: str = "") -> Figure:
    """One panel per loss term against the step: every step thin, its moving average bold.

    Args:
        records: Log records with ``step`` and each of ``terms`` (:func:`read_log`);
            validation records among them are left out.
        terms: Names of the terms to draw, one panel each.
        window: Steps in the moving average.
        title: Optional title over all panels.

    Returns:
        A Figure with ``len(terms)`` panels side by side.

    Raises:
        ValueError: If there are no step records or a record lacks a term.
    """
    fig = Figure(figsize=(2.6 * len(terms), 2.8), layout="constrained")
    draw_loss_terms(fig, records, terms, window)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def draw_loss_terms(fig, records: Sequence[dict], terms: Sequence[str], window: int) -> None:
    """The panels of :func:`plot_loss_terms` on a figure or subfigure."""
    records = step_records(list(records))
    if not records:
        raise ValueError("no log records to plot")
    missing = sorted({name for name in terms for record in records if name not in record})
    if missing:
        raise ValueError(f"log records lack the terms {missing}")
    steps = np.array([record["step"] for record in records])
    axes = np.atleast_1d(fig.subplots(1, len(terms)))
    for ax, name in zip(axes, terms):
        values = np.array([record[name] for record in records], dtype=np.float64)
        ax.plot(steps, values, color="tab:blue", alpha=0.35, linewidth=1)
        ax.plot(steps, moving_average(values, window), color="tab:blue", linewidth=2)
        ax.set_title(TERM_TITLES.get(name, name), fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"loss (bold: mean of {window} steps)")


BAND_COLOURS = {ALL_FACES: "black", "small": "tab:red", "medium": "tab:orange", "large": "tab:green"}
"""Line colour of each face-size band (:data:`rfcore.evaluation.truth.SIZE_BANDS`) in :func:`plot_validation`."""


def plot_validation(records: Sequence[dict], title: str = "") -> Figure:
    """Validation AP and mean landmark NME against the step, one line per face-size band.

    Args:
        records: Log records (:func:`read_log`); only the validation ones are drawn.
        title: Optional title over both panels.

    Returns:
        A Figure with two panels: AP, and NME in percent.

    Raises:
        ValueError: If the records hold no validation (a run without ``--val``).
    """
    fig = Figure(figsize=(7.0, 2.8), layout="constrained")
    draw_validation(fig, records)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def draw_validation(fig, records: Sequence[dict]) -> None:
    """The panels of :func:`plot_validation` on a figure or subfigure."""
    records = validation_records(list(records))
    if not records:
        raise ValueError("the log has no validation records: train with --val to record them")
    steps = [record["step"] for record in records]
    ap_axis, nme_axis = fig.subplots(1, 2)
    for band in (ALL_FACES, *SIZE_BANDS):
        label = band if band == ALL_FACES else f"{band} {band_range(band)}"
        ap = [nan_if_none(record["validation"]["ap"][band]) for record in records]
        nme = [100 * nan_if_none(record["validation"]["nme"][band]) for record in records]
        width = 2.5 if band == ALL_FACES else 1.2
        ap_axis.plot(steps, ap, marker="o", markersize=3, color=BAND_COLOURS[band], linewidth=width, label=label)
        nme_axis.plot(steps, nme, marker="o", markersize=3, color=BAND_COLOURS[band], linewidth=width, label=label)
    ap_axis.set(title="validation AP", xlabel="step", ylim=(0, 1.02))
    nme_axis.set(title="landmark NME (%)", xlabel="step", ylim=(0, None))
    for ax in (ap_axis, nme_axis):
        ax.grid(alpha=0.3, which="both")
    ap_axis.legend(fontsize=7, loc="lower right")


def band_range(band: str) -> str:
    """``"< 24 px"``, ``"24-64 px"``, ``"> 64 px"``: the size range of a band of :data:`SIZE_BANDS`."""
    low, high = SIZE_BANDS[band]
    if low == 0:
        return f"< {high:g} px"
    return f"> {low:g} px" if high == float("inf") else f"{low:g}-{high:g} px"


def nan_if_none(value) -> float:
    """A logged figure as a float: NaN where the log holds ``null`` (no face in the band)."""
    return float("nan") if value is None else float(value)


def plot_run(path, terms: Sequence[str] = ("total", "cls", "box", "pts"), window: int = 25) -> Figure:
    """A run folder's (or ``log.jsonl``'s) loss terms and, if it validated, its validation AP and NME.

    Args:
        path: The run's ``--out`` folder or its ``log.jsonl``.
        terms: Loss terms to draw (:func:`plot_loss_terms`).
        window: Steps in the moving average of the losses.

    Raises:
        FileNotFoundError: If there is no log at ``path``.
        ValueError: If the log has no step records.
    """
    records = read_log(path)
    with_validation = bool(validation_records(records))
    fig = Figure(figsize=(2.6 * max(len(terms), 3), 5.8 if with_validation else 2.8), layout="constrained")
    losses, scores = fig.subfigures(2, 1) if with_validation else (fig, None)
    draw_loss_terms(losses, records, terms, window)
    if scores is not None:
        draw_validation(scores, records)
    return fig
