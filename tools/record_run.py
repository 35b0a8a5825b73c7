"""Record a from-scratch training run that ships in assets/runs/: synthetic-from-scratch/, synthetic-to-real/ or
synthetic-to-real-mesh/.

    python tools/record_run.py [--recipe synthetic-from-scratch|synthetic-to-real|synthetic-to-real-mesh] [--work DIR]

Runs the recipe's command (:data:`RECIPES`: ``rfcore.train.config.FROM_SCRATCH``, ``SYNTHETIC_TO_REAL`` or
``SYNTHETIC_TO_REAL_MESH``, written out by ``rfcore.cli.train.command_line``) in ``--work``, timing it and sampling
the machine's load average, then copies into the recipe's assets folder:

* ``command.txt``: the exact command, run from an empty folder;
* ``log.jsonl``: every 10th step's loss terms and every validation (AP per face-size band, NME);
* ``weights.safetensors``: the final weights (with ``--mesh`` also ``mesh_decoder.safetensors``, so that
  ``rfcore detect --mesh`` finds it beside them), and ``snapshots/step-<N>.safetensors``: the weights at the
  steps of :data:`SNAPSHOTS`, from a second run of the same command stopped after the last of them and
  keeping all its checkpoints (``--max-steps``, ``--keep-checkpoints`` change what is kept, not what is
  trained; the tool checks that both runs logged the same losses up to there);
* ``run.json``: wall time, machine, torch version, load average, the final validation, and the
  validation of the first :data:`CHECK_IMAGES` images that ``tests/train/test_recorded_run.py`` reproduces;
  for synthetic-to-real also the final weights' scores on both synthetic validation sets and on the
  bundled photographs (:func:`rfcore.evaluation.photographs.score_weights`), and with ``--mesh`` what
  ``rfcore mesh measure`` reports for the detected meshes (:func:`rfcore.evaluation.mesh.mesh_accuracy`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from rfcore.assets import FROM_SCRATCH_RUN, SYNTHETIC_TO_REAL_MESH_RUN, SYNTHETIC_TO_REAL_RUN
from rfcore.cli.mesh import MEASURE_IMAGES
from rfcore.cli.train import command_line
from rfcore.files import write_bytes, write_text
from rfcore.train.config import FROM_SCRATCH, SYNTHETIC_TO_REAL, SYNTHETIC_TO_REAL_MESH
from rfcore.train.log import parse_log, step_records, validation_records

CHECK_IMAGES = 48
CHECK_MESH_IMAGES = 12
RECIPES = {
    "synthetic-from-scratch": (FROM_SCRATCH, FROM_SCRATCH_RUN, (500, 2000)),
    "synthetic-to-real": (SYNTHETIC_TO_REAL, SYNTHETIC_TO_REAL_RUN, (500,)),
    "synthetic-to-real-mesh": (SYNTHETIC_TO_REAL_MESH, SYNTHETIC_TO_REAL_MESH_RUN, (500,)),
}
"""Recipe name -> its config, assets folder and snapshot steps (the last one also checks the rerun's losses)."""


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def sample_load(samples: list[float], stop: threading.Event) -> None:
    while not stop.wait(10):
        samples.append(os.getloadavg()[0])


def subset_check(weights: Path) -> dict:
    import torch

    from rfcore.detector import Detector
    from rfcore.train.validation import Validator, validation_samples

    torch.set_num_threads(1)
    network = Detector(weights, fuse=False).model
    result = Validator(validation_samples("synthetic", CHECK_IMAGES), "mobilenet0.25")(network)
    return {"images": CHECK_IMAGES, "ap": result["ap"], "nme": result["nme"], "faces": result["faces"]}


def transfer_scores(weights: Path) -> dict:
    """AP and NME per size band on both synthetic validation sets and on the bundled photographs."""
    import torch

    from rfcore.evaluation.photographs import score_weights
    from rfcore.train.validation import validation_samples

    torch.set_num_threads(1)
    return {name.replace("-", "_"): score_weights(weights, validation_samples(name))
            for name in ("synthetic", "synthetic-varied", "photographs")}


def mesh_scores(weights: Path, images: int = MEASURE_IMAGES) -> dict:
    """``rfcore mesh measure`` with its defaults on ``weights`` (its decoder beside them), on its first ``images``."""
    import torch

    from rfcore.detector import Detector
    from rfcore.evaluation.mesh import mesh_accuracy
    from rfcore.train.config import HeadTrainConfig

    torch.set_num_threads(1)
    config = HeadTrainConfig()
    result = mesh_accuracy(Detector(weights, mesh=True), config.dataset(held_out=True, length=images))
    return {"images": images, "seed": config.seed + 1, **result._asdict()}


def snapshots(command: str, work: Path, records: list[dict], steps: tuple[int, ...]) -> dict[int, Path]:
    """Weights of the recorded run at ``steps``, from a second run of its first steps keeping every checkpoint.

    Raises:
        RuntimeError: If the second run's losses differ from the recorded run's.
    """
    last = max(steps)
    extra = f" --out runs/snapshots --max-steps {last} --keep-checkpoints {last} --quiet"
    subprocess.run(shlex.split(command + extra), cwd=work, check=True)
    again, _ = parse_log(work / "runs" / "snapshots" / "log.jsonl")

    def losses(lines):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in step_records(lines) if r["step"] <= last]

    if losses(again) != losses(records):
        raise RuntimeError("the snapshot run's losses differ from the recorded run's: the machine is not deterministic")
    return {step: work / "runs" / "snapshots" / "checkpoints" / f"step-{step:08d}" / "weights.safetensors"
            for step in steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="synthetic-from-scratch")
    parser.add_argument("--work", type=Path, default=Path("/tmp/rfcore-record"), help="empty folder to run in")
    args = parser.parse_args()
    recipe, folder, steps = RECIPES[args.recipe]
    command = command_line(recipe)
    args.work.mkdir(parents=True, exist_ok=False)
    samples, stop = [], threading.Event()
    threading.Thread(target=sample_load, args=(samples, stop), daemon=True).start()
    started = datetime.now(timezone.utc)
    begin = time.perf_counter()
    subprocess.run(shlex.split(command), cwd=args.work, check=True)
    wall = time.perf_counter() - begin
    stop.set()
    out = args.work / recipe.out
    records, _ = parse_log(out / "log.jsonl")
    import torch

    run = {
        "command": command,
        "started_utc": started.isoformat(timespec="seconds"),
        "wall_seconds": round(wall, 1),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
                    "python": platform.python_version()},
        "load_average_1min": {"mean": round(sum(samples) / max(len(samples), 1), 2),
                              "max": round(max(samples, default=0.0), 2), "samples": len(samples)},
        "final_validation": validation_records(records)[-1],
        "subset_check": subset_check(out / "weights.safetensors"),
    }
    if recipe.variety:
        run["scores"] = transfer_scores(out / "weights.safetensors")
    if recipe.mesh:
        run["mesh"] = mesh_scores(out / "weights.safetensors")
        run["mesh_subset_check"] = mesh_scores(out / "weights.safetensors", CHECK_MESH_IMAGES)
    (folder / "snapshots").mkdir(parents=True, exist_ok=True)
    write_text(folder / "command.txt", command + "\n")
    write_text(folder / "run.json", json.dumps(run, indent=1) + "\n")
    for name in ("log.jsonl", "weights.safetensors", *(["mesh_decoder.safetensors"] if recipe.mesh else [])):
        write_bytes(folder / name, (out / name).read_bytes())
    for step, weights in snapshots(command, args.work, records, steps).items():
        write_bytes(folder / "snapshots" / f"step-{step:08d}.safetensors", weights.read_bytes())
    print(json.dumps(run, indent=1))


if __name__ == "__main__":
    main()
