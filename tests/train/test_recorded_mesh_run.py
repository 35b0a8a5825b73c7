"""The recorded joint run in assets/runs/synthetic-to-real-mesh/: its command, log, weights, mesh head and scores agree."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from rfcore.assets import IMAGES, SYNTHETIC_TO_REAL_MESH_RUN
from rfcore.cli import main
from rfcore.cli.train import command_line
from rfcore.detector import Detector
from rfcore.evaluation.mesh import mesh_accuracy
from rfcore.train.config import SYNTHETIC_TO_REAL, SYNTHETIC_TO_REAL_MESH, HeadTrainConfig
from rfcore.train.log import parse_log, step_records, validation_records
from rfcore.train.validation import Validator, validation_samples
from rfcore.weights import DEFAULT_WEIGHTS, MESH_DECODER_FILE, MESH_HEAD_PREFIX, load_weights, read_keys

RUN = json.loads((SYNTHETIC_TO_REAL_MESH_RUN / "run.json").read_text())
WEIGHTS = SYNTHETIC_TO_REAL_MESH_RUN / "weights.safetensors"


def test_the_recorded_command_is_the_synthetic_to_real_recipe_with_the_mesh_branch():
    assert (SYNTHETIC_TO_REAL_MESH_RUN / "command.txt").read_text() == command_line(SYNTHETIC_TO_REAL_MESH) + "\n"
    assert RUN["command"] == command_line(SYNTHETIC_TO_REAL_MESH)
    with_mesh = {"mesh": True, "mesh_decoder": "shipped", "lambda_pixel": 3.0, "mesh_anchors": 8, "mesh_landmarks": 2.0}
    assert SYNTHETIC_TO_REAL_MESH == dataclasses.replace(SYNTHETIC_TO_REAL, image_size=160, **with_mesh,
                                                         out=SYNTHETIC_TO_REAL_MESH.out)
    assert " --mesh --mesh-decoder shipped " in RUN["command"] and " --processes 2 " in RUN["command"]
    assert " --mesh-landmarks 2.0 " in RUN["command"]


def test_the_log_holds_the_whole_run_every_validation_and_l_pixel_falling():
    records, note = parse_log(SYNTHETIC_TO_REAL_MESH_RUN / "log.jsonl")
    assert note is None
    recipe = SYNTHETIC_TO_REAL_MESH
    per_rank = -(-recipe.num_images // recipe.processes)
    last = recipe.epochs * -(-per_rank // recipe.batch_size)
    steps = step_records(records)
    assert [r["step"] for r in steps] == list(range(recipe.log_every, last + 1, recipe.log_every))
    step_images = recipe.processes * recipe.batch_size  # 16 a step, as in the one-process run; 8 at an epoch's end
    assert {r["images"] for r in steps} == {step_images, recipe.num_images % step_images}
    validated = [r["step"] for r in validation_records(records)]
    assert validated == [*range(recipe.val_every, last + 1, recipe.val_every), last]
    assert validation_records(records)[-1] == RUN["final_validation"]
    pixel = np.array([r["pixel"] for r in steps])
    assert (pixel > 0).all() and pixel[-50:].mean() < 0.9 * pixel[:10].mean()  # 0.67 from 0.94


def test_the_weights_carry_the_mesh_head_and_the_frozen_decoder_beside_them_is_the_shipped_one():
    assert any(key.startswith(MESH_HEAD_PREFIX) for key in read_keys(WEIGHTS))
    shipped = load_weights(None, DEFAULT_WEIGHTS.with_name(MESH_DECODER_FILE))
    beside = load_weights(None, WEIGHTS.with_name(MESH_DECODER_FILE))
    assert shipped.keys() == beside.keys()
    assert all(torch.equal(shipped[key], beside[key]) for key in shipped)


def test_detect_mesh_works_on_the_recorded_weights(capsys):
    assert main(["detect", str(IMAGES / "group.jpg"), "--mesh", "--json", "--weights", str(WEIGHTS)]) == 0
    (record,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert record["faces"]
    for face in record["faces"]:
        x1, y1, x2, y2 = face["box"]
        x, y = np.array(face["mesh"]).T  # (289,) each
        assert len(x) == 289 and x1 < np.median(x) < x2 and y1 < np.median(y) < y2


def test_the_recorded_weights_reproduce_the_recorded_scores():
    """Detection on a subset of the synthetic validation set, and the meshes of ``rfcore mesh measure`` on a few
    held-out images (scores move in their last bits between CPUs, far less than the tolerance)."""
    check = RUN["subset_check"]
    torch.manual_seed(0)
    result = Validator(validation_samples("synthetic", check["images"]), SYNTHETIC_TO_REAL_MESH.preset)(
        Detector(WEIGHTS, fuse=False).model)
    assert result["faces"] == check["faces"]
    for band, ap in check["ap"].items():
        assert result["ap"][band] == pytest.approx(ap, abs=0.01), band
    mesh = RUN["mesh_subset_check"]
    data = HeadTrainConfig(seed=mesh["seed"] - 1).dataset(held_out=True, length=mesh["images"])
    measured = mesh_accuracy(Detector(WEIGHTS, mesh=True), data)
    assert (measured.faces, measured.found) == (mesh["faces"], mesh["found"])
    assert measured.nme == pytest.approx(mesh["nme"], abs=0.002)
    assert measured.template_nme == pytest.approx(mesh["template_nme"], abs=0.002)
    assert measured.pose_error == pytest.approx(mesh["pose_error"], abs=0.5)
