"""The recorded from-scratch run in assets/runs/synthetic-from-scratch/: its command, log and weights agree."""

import json

import pytest
import torch

from rfcore.assets import FROM_SCRATCH_RUN
from rfcore.cli.train import command_line
from rfcore.detector import Detector
from rfcore.train.config import FROM_SCRATCH
from rfcore.train.log import parse_log, step_records, validation_records
from rfcore.train.validation import Validator, validation_samples

RUN = json.loads((FROM_SCRATCH_RUN / "run.json").read_text())


def test_the_recorded_command_is_the_recipe():
    assert (FROM_SCRATCH_RUN / "command.txt").read_text() == command_line(FROM_SCRATCH) + "\n" == RUN["command"] + "\n"


def test_the_log_holds_the_whole_run_and_every_validation():
    records, note = parse_log(FROM_SCRATCH_RUN / "log.jsonl")
    assert note is None
    steps = [r["step"] for r in step_records(records)]
    last = FROM_SCRATCH.epochs * -(-FROM_SCRATCH.num_images // FROM_SCRATCH.batch_size)
    assert steps == list(range(FROM_SCRATCH.log_every, last + 1, FROM_SCRATCH.log_every))
    validated = [r["step"] for r in validation_records(records)]
    assert validated == [*range(FROM_SCRATCH.val_every, last + 1, FROM_SCRATCH.val_every), last]
    assert validation_records(records)[-1] == RUN["final_validation"]


@pytest.mark.slow
def test_the_shipped_weights_reproduce_the_recorded_validation_on_a_subset():
    """Scores differ in their last bits between CPUs; AP and NME over 48 images move far less than the tolerance."""
    check = RUN["subset_check"]
    torch.manual_seed(0)
    network = Detector(FROM_SCRATCH_RUN / "weights.safetensors", fuse=False).model
    result = Validator(validation_samples("synthetic", check["images"]), FROM_SCRATCH.preset)(network)
    assert result["faces"] == check["faces"]
    for band, ap in check["ap"].items():
        assert result["ap"][band] == pytest.approx(ap, abs=0.01), band
    for band, nme in check["nme"].items():
        assert result["nme"][band] == pytest.approx(nme, abs=0.002), band


def test_the_recorded_ablation_summarises_its_logs():
    from rfcore.assets import ABLATION_RUN
    from rfcore.train.ablation import VARIANTS, ablation_configs, summarise
    from rfcore.train.config import ABLATION_SEEDS

    recorded = json.loads((ABLATION_RUN / "ablation.json").read_text())
    rows = summarise(ablation_configs(ABLATION_RUN, ABLATION_SEEDS))
    assert [row["variant"] for row in rows] == list(VARIANTS)
    assert all(row["seeds"] == len(ABLATION_SEEDS) for row in rows)
    assert json.loads(json.dumps(rows)) == recorded["rows"]  # JSON turns the seeds' keys into strings
