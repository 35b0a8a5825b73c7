"""Record a capstone run for notebook 08 into assets/runs/capstone/<name>/run.json.

    python tools/record_capstone.py                          # the solutions: assets/runs/capstone/solutions/
    python tools/record_capstone.py --mistake encode_boxes   # one part replaced by its plausible mistake
                                                             # (rfcore.exercises.mistakes), its check skipped

Runs :func:`rfcore.exercises.capstone.capstone` with the default recipe, timing it and sampling the load
average, and writes ``run.json``: the command, the recipe, the wall and CPU time, the machine, torch version,
the load average, the parts and the run's loss records, validations and final summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import threading
import time
from datetime import datetime, timezone

import torch
from record_run import cpu_model, sample_load  # tools/ beside this script: one home for the machine's description

from rfcore.assets import CAPSTONE_RUNS
from rfcore.exercises.capstone import CHECKERS, CapstoneConfig, capstone, solution_parts
from rfcore.exercises.mistakes import MISTAKES
from rfcore.files import write_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mistake", choices=sorted(CHECKERS), help="replace this part by its plausible mistake")
    args = parser.parse_args()
    parts, skip, name = solution_parts(), (), "solutions"
    if args.mistake:
        wrong = MISTAKES[args.mistake]
        parts, skip, name = dataclasses.replace(parts, **{args.mistake: wrong}), (args.mistake,), wrong.__name__
    samples, stop = [os.getloadavg()[0]], threading.Event()
    threading.Thread(target=sample_load, args=(samples, stop), daemon=True).start()
    started_utc = datetime.now(timezone.utc).isoformat(timespec="seconds")
    wall, cpu = time.perf_counter(), time.process_time()
    result = capstone(parts, CapstoneConfig(), skip=skip)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    stop.set()
    record = {
        "command": "python tools/record_capstone.py" + (f" --mistake {args.mistake}" if args.mistake else ""),
        "parts": {part: getattr(parts, part).__module__ + "." + getattr(parts, part).__name__ for part in CHECKERS},
        "recipe": dataclasses.asdict(CapstoneConfig()),
        "started_utc": started_utc,
        "wall_seconds": round(wall, 1),
        "cpu_seconds_main_process": round(cpu, 1),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
                    "python": platform.python_version()},
        "load_average_1min": {"mean": round(sum(samples) / len(samples), 2), "max": round(max(samples), 2),
                              "samples": len(samples)},
        **result.to_dict(),
    }
    path = write_text(CAPSTONE_RUNS / name / "run.json", json.dumps(record, indent=1) + "\n")
    print(f"wrote {path}: AP {result.ap:.3f}, {wall / 60:.1f} min wall")


if __name__ == "__main__":
    main()
