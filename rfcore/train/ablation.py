"""The paper's ablation (Tab. 3) in miniature: does each supervision signal help a detector trained from scratch?

The paper adds, one at a time, five facial landmarks ($L_\\text{pts}$) and the self-supervised dense branch
($L_\\text{pixel}$) to classification and box regression, and reports AP on WIDER FACE hard and landmark NME
[§4.3, Tab. 3: landmarks +0.5 AP hard over cls + box, dense +0.5 more]. Here the same three variants train
from scratch on synthetic faces with :data:`ABLATION`, a shorter version of the recorded recipe
(:data:`rfcore.train.config.FROM_SCRATCH`), several seeds each, and are scored on the held-out synthetic
validation set (AP per face-size band and NME, at the end of each run):

* ``cls+box``: ``lambda_pts = 0``, the landmark head never learns;
* ``+pts``: the recipe as it is;
* ``+pts+pixel``: with the mesh branch, ``λ3 L_pixel`` through the pre-trained, frozen mesh decoder.

``rfcore experiment ablation --out DIR`` (:mod:`rfcore.cli.experiment`) runs every variant and seed as its own
``rfcore train`` process into ``DIR/<variant>/seed-<s>/``, then :func:`summarise` reads their logs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

from rfcore.train.config import ABLATION_SEEDS, FROM_SCRATCH, TrainConfig
from rfcore.train.log import parse_log, validation_records

ABLATION = dataclasses.replace(
    FROM_SCRATCH, num_images=500, epochs=48, workers=0, val_every=10**9, checkpoint_every=0, keep_checkpoints=1,
)
"""The recipe of every ablation run: 500 synthetic images, 48 epochs of 16 (1,536 steps), one thread, no
loader process (two runs share the two cores), validated once, at the end."""

VARIANTS = {
    "cls+box": {"lambda_pts": 0.0},
    "+pts": {},
    "+pts+pixel": {"mesh": True, "mesh_decoder": "shipped"},
}
"""Each variant's changes to :data:`ABLATION`, in the order of the paper's Tab. 3."""

def ablation_configs(out, seeds: Sequence[int] = ABLATION_SEEDS,
                     base: TrainConfig | None = None) -> dict[tuple[str, int], TrainConfig]:
    """The config of every run: ``(variant, seed) -> TrainConfig`` writing into ``out/<variant>/seed-<s>``.

    ``base`` is :data:`ABLATION` unless given.
    """
    base = ABLATION if base is None else base
    return {(name, seed): dataclasses.replace(base, seed=seed, out=str(Path(out) / name / f"seed-{seed}"), **changes)
            for name, changes in VARIANTS.items() for seed in seeds}


FIGURES = ("ap_all", "ap_small", "ap_medium", "ap_large", "nme_all")
"""The figures of each run in the summary: AP over all faces and per band, and the mean landmark NME."""


def final_figures(run_folder) -> dict[str, float]:
    """The figures of :data:`FIGURES` from the last validation record of a run's log.

    Raises:
        ValueError: If the run has no validation record (it did not finish), naming its log.
    """
    log = Path(run_folder) / "log.jsonl"
    records = validation_records(parse_log(log)[0])
    if not records:
        raise ValueError(f"{log} has no validation record: the run did not finish (rerun it with --resume)")
    scores = records[-1]["validation"]
    figures = {f"ap_{band}": scores["ap"][band] for band in ("all", "small", "medium", "large")}
    figures["nme_all"] = scores["nme"]["all"]
    return {name: float("nan") if value is None else value for name, value in figures.items()}  # None: no face


def summarise(configs: dict[tuple[str, int], TrainConfig]) -> list[dict]:
    """Mean and spread over seeds of each variant's figures.

    Returns:
        One row per variant: ``{"variant", "seeds", "<figure>_mean", "<figure>_std", "runs": {seed: figures}}``
        (``std`` is the sample standard deviation, 0 for one seed).
    """
    rows = []
    for variant in VARIANTS:
        runs = {seed: final_figures(cfg.out) for (name, seed), cfg in configs.items() if name == variant}
        row = {"variant": variant, "seeds": len(runs), "runs": runs}
        for figure in FIGURES:
            values = [run[figure] for run in runs.values()]
            mean = sum(values) / len(values)
            spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
            row[f"{figure}_mean"], row[f"{figure}_std"] = mean, spread
        rows.append(row)
    return rows
