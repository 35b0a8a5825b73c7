"""rfcore experiment ablation on a tiny base recipe: the runs, their summary, table and plot."""

import dataclasses
import json

import pytest

from rfcore.cli import main
from rfcore.train import ablation
from rfcore.train.ablation import VARIANTS, ablation_configs, final_figures, summarise
from rfcore.viz.ablation import ablation_table, plot_ablation

TINY = dataclasses.replace(ablation.ABLATION, num_images=4, image_size=64, epochs=1, batch_size=2, val_images=3,
                           mesh_anchors=2)


def test_the_variants_are_the_papers_three():
    configs = ablation_configs("out", seeds=(0, 1))
    assert len(configs) == 6 and list(VARIANTS) == ["cls+box", "+pts", "+pts+pixel"]
    assert configs["cls+box", 1].lambda_pts == 0 and configs["cls+box", 1].seed == 1
    assert configs["+pts", 0].loss_preset().lambda_pts == 1 and not configs["+pts", 0].mesh
    assert configs["+pts+pixel", 0].mesh and configs["+pts+pixel", 0].mesh_decoder == "shipped"
    assert configs["+pts", 0].out.endswith("+pts/seed-0")
    steps = ablation.ABLATION.epochs * -(-ablation.ABLATION.num_images // ablation.ABLATION.batch_size)
    assert steps == 1536 and ablation.ABLATION.val == "synthetic"


@pytest.mark.slow
def test_the_command_runs_every_variant_and_seed_and_summarises(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ablation, "ABLATION", TINY)
    assert main(["experiment", "ablation", "--out", str(tmp_path), "--seeds", "0", "1", "--jobs", "2"]) == 0
    summary = json.loads((tmp_path / "ablation.json").read_text())
    rows = summary["rows"]
    assert [row["variant"] for row in rows] == list(VARIANTS) and all(row["seeds"] == 2 for row in rows)
    by_hand = [final_figures(tmp_path / "+pts" / f"seed-{seed}")["ap_all"] for seed in (0, 1)]
    assert rows[1]["ap_all_mean"] == pytest.approx(sum(by_hand) / 2)
    assert rows[1]["ap_all_std"] == pytest.approx(abs(by_hand[0] - by_hand[1]) / 2 ** 0.5)
    assert (tmp_path / "ablation.png").stat().st_size > 1000
    assert (tmp_path / "ablation.md").read_text().startswith("| variant |")
    assert "cls+box" in capsys.readouterr().out
    # resumed: every run is finished, nothing is trained again, the same summary comes out
    assert main(["experiment", "ablation", "--out", str(tmp_path), "--seeds", "0", "1", "--resume"]) == 0
    resumed = json.loads((tmp_path / "ablation.json").read_text())
    assert resumed["rows"] == rows
    # the summary's commands train each run from scratch, resumed or not
    assert resumed["commands"] == summary["commands"] and not any("--resume" in c for c in summary["commands"].values())


def test_an_unfinished_run_is_named(tmp_path):
    configs = ablation_configs(tmp_path, seeds=(0,), base=TINY)
    (tmp_path / "cls+box" / "seed-0").mkdir(parents=True)
    (tmp_path / "cls+box" / "seed-0" / "log.jsonl").write_text('{"step": 1, "total": 1.0}\n')
    with pytest.raises(ValueError, match="cls\\+box/seed-0/log.jsonl has no validation record"):
        summarise(configs)


def test_table_and_plot_of_hand_made_rows():
    runs = {0: {"ap_all": 0.9, "ap_small": 0.5, "ap_medium": 0.95, "ap_large": 1.0, "nme_all": 0.1}}
    row = {"variant": "+pts", "seeds": 1, "runs": runs,
           **{f"{k}_mean": v for k, v in runs[0].items()}, **{f"{k}_std": 0.0 for k in runs[0]}}
    assert "| +pts | 1 | 0.900 ± 0.000 | 0.500 ± 0.000 | 0.950 ± 0.000 | 1.000 ± 0.000 | 10.0% ± 0.0% |" in \
        ablation_table([row])
    assert len(plot_ablation([row]).axes) == 2
    with pytest.raises(ValueError, match="no ablation rows"):
        plot_ablation([])
