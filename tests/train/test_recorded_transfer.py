"""The recorded synthetic-to-real run in assets/runs/synthetic-to-real/: its command, log, weights and scores agree."""

import json

import pytest
import torch

from rfcore.assets import SYNTHETIC_TO_REAL_RUN
from rfcore.cli.train import command_line
from rfcore.detector import Detector
from rfcore.evaluation.photographs import photograph_samples, score_weights
from rfcore.train.config import SYNTHETIC_TO_REAL
from rfcore.train.log import parse_log, step_records, validation_records
from rfcore.train.validation import Validator, validation_samples

RUN = json.loads((SYNTHETIC_TO_REAL_RUN / "run.json").read_text())


def test_the_recorded_command_is_the_recipe_with_the_variety_options():
    assert (SYNTHETIC_TO_REAL_RUN / "command.txt").read_text() == command_line(SYNTHETIC_TO_REAL) + "\n"
    assert RUN["command"] == command_line(SYNTHETIC_TO_REAL) and "--variety backgrounds distractors" in RUN["command"]


def test_the_log_holds_the_whole_run_and_every_validation():
    records, note = parse_log(SYNTHETIC_TO_REAL_RUN / "log.jsonl")
    assert note is None
    per_rank = -(-SYNTHETIC_TO_REAL.num_images // SYNTHETIC_TO_REAL.processes)
    last = SYNTHETIC_TO_REAL.epochs * -(-per_rank // SYNTHETIC_TO_REAL.batch_size)
    steps = [r["step"] for r in step_records(records)]
    assert steps == list(range(SYNTHETIC_TO_REAL.log_every, last + 1, SYNTHETIC_TO_REAL.log_every))
    validated = [r["step"] for r in validation_records(records)]
    assert validated == [*range(SYNTHETIC_TO_REAL.val_every, last + 1, SYNTHETIC_TO_REAL.val_every), last]
    assert validation_records(records)[-1] == RUN["final_validation"]


def test_the_shipped_weights_reproduce_the_recorded_scores():
    """On a subset of the synthetic validation set, and on the bundled photographs (scores move in their last
    bits between CPUs; AP and NME far less than the tolerance)."""
    weights = SYNTHETIC_TO_REAL_RUN / "weights.safetensors"
    check = RUN["subset_check"]
    torch.manual_seed(0)
    network = Detector(weights, fuse=False).model
    result = Validator(validation_samples("synthetic", check["images"]), SYNTHETIC_TO_REAL.preset)(network)
    photographs = score_weights(weights, photograph_samples())
    for recorded, measured in ((check, result), (RUN["scores"]["photographs"], photographs)):
        assert measured["faces"] == recorded["faces"]
        for band, ap in recorded["ap"].items():
            assert measured["ap"][band] == pytest.approx(ap, abs=0.01), band
