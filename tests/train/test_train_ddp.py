"""rfcore.train under torchrun: two CPU processes with gloo end with identical weights."""

import json
import os
import subprocess
import sys

import pytest
import torch
from builders import write_faces_folder
from safetensors.torch import load_file

from rfcore.config import get_config
from rfcore.model import RetinaFace

pytestmark = pytest.mark.slow  # torchrun: two processes training


def test_two_gloo_ranks_on_cpu_end_with_identical_weights(tmp_path):
    data = write_faces_folder(tmp_path / "faces", count=7)  # 7 images: each rank gets 4, one is padding
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "rfcore", "train", "--data", str(data), "--out", str(out), "--size", "64", "--epochs", "2",
        "--batch-size", "2", "--device", "cpu", "--threads", "1", "--quiet", "--save-all-ranks",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-3000:]

    rank0, rank1 = (load_file(out / f"weights.rank{r}.safetensors") for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    assert [k for k in rank0 if not torch.equal(rank0[k], rank1[k])] == []
    written = load_file(out / "weights.safetensors")
    assert all(torch.equal(written[k], rank0[k]) for k in written)
    torch.manual_seed(0)  # the run's seed: its starting weights
    start = RetinaFace.from_config(get_config("mobilenet0.25")).state_dict()
    assert not torch.equal(start["ClassHead.0.conv1x1.weight"], written["ClassHead.0.conv1x1.weight"])

    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]  # 2 epochs of 2 steps per rank
    assert [r["images"] for r in log] == [4, 4, 4, 4]  # two images on each of the two ranks
