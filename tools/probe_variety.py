"""Measure what each synthetic-variety option is worth: short training probes, scored on synthetic and real faces.

    python tools/probe_variety.py NAME [--variety OPTION ...] [--table FILE] [--work DIR] [MORE TRAIN FLAGS]

Trains :data:`PROBE` (a short from-scratch ``rfcore train`` on synthetic faces) with the given
``--variety`` options in ``DIR/NAME``, timing it, then scores its final weights on the held-out
synthetic validation set (:data:`rfcore.data.synthetic.VALIDATION`), the second one drawn with every
option (:data:`rfcore.data.synthetic.VALIDATION_VARIED`) and the bundled photographs
(:func:`rfcore.evaluation.photographs.photograph_samples`), and appends a row (name, command, wall time,
load average, the three scores) to ``--table`` (default ``assets/runs/variety-probes/probes.json``).
Run it pinned to one core: ``taskset -c 1 env OMP_NUM_THREADS=1 python tools/probe_variety.py ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import time
from pathlib import Path

from rfcore.assets import VARIETY_PROBES
from rfcore.files import write_text

PROBE = ("rfcore train --data synthetic --num-images 600 --size 160 --batch-size 16 --epochs 40 --threads 1 "
         "--workers 0 --log-every 50 --quiet")
"""The probe recipe: 1,520 steps of 16 images of 160 x 160 from 600 synthetic images."""

TABLE = VARIETY_PROBES / "probes.json"


def score(weights: Path) -> dict:
    """AP (per band) and NME of ``weights`` on the three evaluation sets."""
    import torch

    from rfcore.data.synthetic import validation_set
    from rfcore.evaluation.photographs import photograph_samples, score_weights

    torch.set_num_threads(1)
    sets = {
        "synthetic": [validation_set()[i] for i in range(len(validation_set()))],
        "synthetic_varied": [validation_set(varied=True)[i] for i in range(len(validation_set(varied=True)))],
        "photographs": photograph_samples(),
    }
    return {name: score_weights(weights, samples) for name, samples in sets.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("--variety", nargs="*", default=[])
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--work", type=Path, default=Path("/tmp/variety-probes"))
    parser.add_argument("--scored-only", type=float, metavar="WALL_SECONDS",
                        help="do not train: score DIR/NAME, trained already by the same command in this many seconds")
    args, extra = parser.parse_known_args()  # the rest: more rfcore train flags
    extra = [flag for flag in extra if flag != "--"]
    out = args.work / args.name
    command = PROBE + (" --variety " + " ".join(args.variety) if args.variety else "") + " " + " ".join(extra)
    command = command.strip() + f" --out {out}"
    started, load = time.perf_counter(), os.getloadavg()[0]
    if args.scored_only is None:
        subprocess.run(shlex.split(command), check=True)
    wall = time.perf_counter() - started if args.scored_only is None else args.scored_only
    row = {"name": args.name, "variety": args.variety, "command": command.replace(f" --out {out}", ""),
           "wall_seconds": round(wall, 1), "load_average_1min_at_start": load,
           **score(out / "weights.safetensors")}
    rows = json.loads(args.table.read_text()) if args.table.exists() else []
    rows = [r for r in rows if r["name"] != args.name] + [row]
    args.table.parent.mkdir(parents=True, exist_ok=True)
    write_text(args.table, json.dumps(rows, indent=1) + "\n")
    print(json.dumps({k: (v["ap"]["all"] if isinstance(v, dict) and "ap" in v else v) for k, v in row.items()}))


if __name__ == "__main__":
    main()
