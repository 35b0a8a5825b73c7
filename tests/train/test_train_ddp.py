"""rfcore.train under torchrun: two CPU processes with gloo end with identical weights."""

import json
import os
import subprocess
import sys
import time

import pytest
import torch
from builders import write_faces_folder
from safetensors.torch import load_file

from rfcore.cli.common import EXIT_BAD_INPUT
from rfcore.cli.train import run_ranks
from rfcore.config import get_config
from rfcore.detector import Detector
from rfcore.model import RetinaFace
from rfcore.train.distributed import setup_ranks
from rfcore.train.validation import Validator, validation_samples

pytestmark = pytest.mark.slow  # torchrun: two processes training


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "rfcore"]
PROCESSES = [sys.executable, "-m", "rfcore"]  # and --processes 2: rfcore starts the two ranks itself


@pytest.mark.parametrize(("launcher", "mesh"), [(TORCHRUN, False), (TORCHRUN, True), (PROCESSES, True)],
                         ids=["torchrun", "torchrun-mesh-branch", "processes-mesh-branch"])
def test_two_gloo_ranks_on_cpu_end_with_identical_weights(tmp_path, launcher, mesh):
    """With the mesh branch too: its decoder's sparse Laplacians, which gloo cannot broadcast, once made the
    wrapper fail before the first step."""
    data = write_faces_folder(tmp_path / "faces", count=7)  # 7 images: each rank gets 4, one is padding
    out = tmp_path / "run"
    command = [
        *launcher, "train", "--data", str(data), "--out", str(out), "--size", "64", "--epochs", "2",
        "--batch-size", "2", "--device", "cpu", "--threads", "1", "--quiet", "--save-all-ranks",
        "--val", str(data), "--val-every", "2",
        *(["--mesh", "--mesh-anchors", "2"] if mesh else []),
        *(["--processes", "2"] if launcher is PROCESSES else []),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-3000:]

    for name in ("weights", *(["mesh_decoder"] if mesh else [])):
        rank0, rank1 = (load_file(out / f"{name}.rank{r}.safetensors") for r in (0, 1))
        assert rank0.keys() == rank1.keys()
        assert [k for k in rank0 if not torch.equal(rank0[k], rank1[k])] == []
    rank0 = load_file(out / "weights.rank0.safetensors")
    written = load_file(out / "weights.safetensors")
    assert all(torch.equal(written[k], rank0[k]) for k in written)
    torch.manual_seed(0)  # the run's seed: its starting weights
    start = RetinaFace.from_config(get_config("mobilenet0.25")).state_dict()
    assert not torch.equal(start["ClassHead.0.conv1x1.weight"], written["ClassHead.0.conv1x1.weight"])
    if mesh:  # the mesh head starts at zero and L_pixel moved it
        assert any(written[k].abs().sum() > 0 for k in written if k.startswith("MeshHead."))

    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps, validations = [r for r in log if "images" in r], [r for r in log if "validation" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]  # 2 epochs of 2 steps per rank
    assert [r["images"] for r in steps] == [4, 4, 4, 4]  # two images on each of the two ranks
    # the last validation scored the weights written (batch-norm statistics averaged over the ranks first)
    assert [r["step"] for r in validations] == [2, 4]
    saved = Validator(validation_samples(str(data)), "mobilenet0.25")(
        Detector(out / "weights.safetensors", fuse=False).model)
    logged = validations[-1]["validation"]
    assert {k: v for k, v in saved.items() if k != "seconds"} == {k: v for k, v in logged.items() if k != "seconds"}


def test_processes_must_match_what_torchrun_started(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="asks for --processes 3 but 2 were started"):
        setup_ranks("cpu", processes=3)  # before joining any process group


def test_bad_input_fails_every_rank_with_the_lone_run_s_status_and_message(tmp_path):
    data = write_faces_folder(tmp_path / "faces", count=2)
    (tmp_path / "faces" / "label.txt").write_text("# nothing\n")  # no image: every rank refuses it
    command = [*PROCESSES, "train", "--data", str(data), "--out", str(tmp_path / "run"), "--size", "64",
               "--device", "cpu", "--threads", "1", "--quiet", "--processes", "2"]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == EXIT_BAD_INPUT, done.stderr[-3000:]
    assert "rfcore train:" in done.stderr and "Traceback" not in done.stderr


def test_when_one_rank_fails_the_others_are_stopped_and_its_status_returned():
    # rank 1 fails at once; rank 0 would wait a minute (as for rank 1 in a collective) unless it is stopped
    script = "import os, sys, time; sys.exit(3) if os.environ['RANK'] == '1' else time.sleep(60)"
    started = time.monotonic()
    assert run_ranks([sys.executable, "-c", script], dict(os.environ), 2) == 3
    assert time.monotonic() - started < 30  # not the minute rank 0 would sleep


def test_every_rank_finished_is_success():
    script = "import os, sys; sys.exit(0 if os.environ['LOCAL_RANK'] == os.environ['RANK'] else 1)"
    assert run_ranks([sys.executable, "-c", script], dict(os.environ), 3) == 0
