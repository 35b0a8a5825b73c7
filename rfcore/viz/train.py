"""Pictures of notebook 05: the loss terms of a training run against the step.

:func:`read_log` loads the ``log.jsonl`` that :func:`rfcore.train.loop.train`
writes (one JSON object per step); :func:`plot_loss_terms` draws one panel per
loss term of Eq. 1 against the step, as a :class:`~matplotlib.figure.Figure`
built without ``pyplot``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from rfcore.train.log import parse_log

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
        records: Log records with ``step`` and each of ``terms`` (:func:`read_log`).
        terms: Names of the terms to draw, one panel each.
        window: Steps in the moving average.
        title: Optional title over all panels.

    Returns:
        A Figure with ``len(terms)`` panels side by side.

    Raises:
        ValueError: If there are no records or a record lacks a term.
    """
    if not records:
        raise ValueError("no log records to plot")
    missing = sorted({name for name in terms for record in records if name not in record})
    if missing:
        raise ValueError(f"log records lack the terms {missing}")
    steps = np.array([record["step"] for record in records])
    fig = Figure(figsize=(2.6 * len(terms), 2.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(terms)))
    for ax, name in zip(axes, terms):
        values = np.array([record[name] for record in records], dtype=np.float64)
        ax.plot(steps, values, color="tab:blue", alpha=0.35, linewidth=1)
        ax.plot(steps, moving_average(values, window), color="tab:blue", linewidth=2)
        ax.set_title(TERM_TITLES.get(name, name), fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"loss (bold: mean of {window} steps)")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
