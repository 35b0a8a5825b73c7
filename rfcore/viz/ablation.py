"""The table and picture of ``rfcore experiment ablation``: each variant's AP per face-size band and NME."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

BANDS = (("ap_all", "all"), ("ap_small", "small"), ("ap_medium", "medium"), ("ap_large", "large"))
"""The AP figures of a summary row (:func:`rfcore.train.ablation.summarise`) and their labels."""


def plot_ablation(rows: list[dict]) -> Figure:
    """Left: AP per band, one group of bars per band, one bar per variant (mean), seeds as dots; right: NME.

    Args:
        rows: The rows of :func:`rfcore.train.ablation.summarise`.

    Raises:
        ValueError: If there are no rows.
    """
    if not rows:
        raise ValueError("no ablation rows to plot")
    fig = Figure(figsize=(9.0, 3.2), layout="constrained")
    ap_axis, nme_axis = fig.subplots(1, 2, width_ratios=(3, 1))
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        x = np.arange(len(BANDS)) + (i - (len(rows) - 1) / 2) * width
        means = [row[f"{key}_mean"] for key, _ in BANDS]
        ap_axis.bar(x, means, width, label=row["variant"], color=f"C{i}", alpha=0.8)
        for j, (key, _) in enumerate(BANDS):
            seeds = [run[key] for run in row["runs"].values()]
            ap_axis.plot([x[j]] * len(seeds), seeds, "k.", markersize=4)
        nme = [100 * run["nme_all"] for run in row["runs"].values()]
        nme_axis.bar(i, 100 * row["nme_all_mean"], 0.7, color=f"C{i}", alpha=0.8)
        nme_axis.plot([i] * len(nme), nme, "k.", markersize=4)
    ap_axis.set_xticks(np.arange(len(BANDS)), [label for _, label in BANDS])
    low = min(min(run[key] for run in row["runs"].values() for key, _ in BANDS) for row in rows)
    ap_axis.set(ylabel="AP on the held-out set", ylim=(max(0.0, low - 0.05), 1.0), title="AP per face size")
    ap_axis.legend(fontsize=8, loc="lower left")
    nme_axis.set_xticks(range(len(rows)), [row["variant"] for row in rows], rotation=30, fontsize=8)
    nme_axis.set(ylabel="NME (%)", title="landmark NME")
    for ax in (ap_axis, nme_axis):
        ax.grid(alpha=0.3, axis="y")
    return fig


def ablation_table(rows: list[dict]) -> str:
    """A Markdown table: per variant the mean ± spread over seeds of AP (all and per band) and NME."""
    header = "| variant | seeds | AP all | AP small | AP medium | AP large | NME all |\n|---|---|---|---|---|---|---|"
    lines = [header]
    for row in rows:
        aps = " | ".join(f"{row[f'{name}_mean']:.3f} ± {row[f'{name}_std']:.3f}"
                         for name in ("ap_all", "ap_small", "ap_medium", "ap_large"))
        lines.append(f"| {row['variant']} | {row['seeds']} | {aps} | "
                     f"{100 * row['nme_all_mean']:.1f}% ± {100 * row['nme_all_std']:.1f}% |")
    return "\n".join(lines)
