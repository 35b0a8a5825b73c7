"""Pictures of notebook 08: the capstone's loss and validation AP against the step, live and side by side.

:func:`plot_capstone` draws one or more runs (a :class:`~rfcore.exercises.capstone.CapstoneResult` or its
recorded ``run.json`` as a dict) into two panels, the loss of Eq. 1 and the AP on held-out images; it is a
pure function returning a :class:`~matplotlib.figure.Figure`. :class:`LivePlot` is the thin callback that
redraws it in a notebook while the capstone trains, leaving the last picture in the cell's output.
"""

from __future__ import annotations

from collections.abc import Mapping

from matplotlib.figure import Figure

GOAL_AP = 0.9
"""The capstone's goal: AP over all faces of the held-out synthetic set."""


def run_records(run) -> tuple[list[dict], list[dict]]:
    """``(losses, validations)`` of a :class:`~rfcore.exercises.capstone.CapstoneResult` or a recorded dict."""
    if isinstance(run, Mapping):
        return list(run["losses"]), list(run["validations"])
    return list(run.losses), list(run.validations)


def plot_capstone(runs: Mapping[str, object], goal: float = GOAL_AP, steps: int | None = None) -> Figure:
    """Loss (log scale) and validation AP against the step, one line per run.

    Args:
        runs: Label -> a run (:func:`run_records` reads it).
        goal: AP drawn as a dashed line.
        steps: Length of the step axis (the recipe's steps), so that a live plot does not rescale.

    Returns:
        The figure, two panels side by side.
    """
    fig = Figure(figsize=(10.4, 3.2), layout="constrained")
    loss_ax, ap_ax = fig.subplots(1, 2)
    for label, run in runs.items():
        losses, validations = run_records(run)
        if losses:
            loss_ax.plot([r["step"] for r in losses], [r["total"] for r in losses], lw=1, label=label)
        if validations:
            ap_ax.plot([r["step"] for r in validations], [r["ap"] for r in validations], "o-", ms=4, label=label)
    loss_ax.set(yscale="log", xlabel="step", title="$L$ (Eq. 1), mean over the batch")
    ap_ax.axhline(goal, color="0.5", ls="--", lw=1, label=f"goal {goal:g}")
    ap_ax.set(ylim=(0, 1.02), xlabel="step", title="AP on held-out synthetic faces")
    if steps is not None:
        for ax in (loss_ax, ap_ax):
            ax.set_xlim(0, steps)
    ap_ax.legend(loc="lower right", fontsize=8)
    if len(runs) > 1:
        loss_ax.legend(loc="upper right", fontsize=8)
    return fig


class LivePlot:
    """Redraws :func:`plot_capstone` in a notebook cell as a capstone run goes on.

    Pass it as ``capstone(..., on_progress=LivePlot(steps))``; it redraws after every validation and every
    ``every`` logged steps, replacing its picture in place, so the cell keeps the last one.

    Args:
        steps: Length of the step axis.
        label: Legend label of the run.
        every: Steps between two redraws without a new validation.
    """

    def __init__(self, steps: int, label: str = "your detector", every: int = 50) -> None:
        self.steps, self.label, self.every = steps, label, every
        self.drawn = (0, 0)
        self.handle = None

    def __call__(self, result) -> None:
        from IPython.display import display

        losses, validations = run_records(result)
        state = (len(validations), losses[-1]["step"] // self.every if losses else 0)
        if state == self.drawn:
            return
        self.drawn = state
        fig = plot_capstone({self.label: result}, steps=self.steps)
        if self.handle is None:  # the first picture appears below the checks' lines
            self.handle = display(fig, display_id=True)
        else:
            self.handle.update(fig)
