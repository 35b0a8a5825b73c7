"""``rfcore experiment ablation``: the paper's Tab. 3 in miniature (:mod:`rfcore.train.ablation`).

Every variant and seed is one ``rfcore train`` process (its command from :func:`rfcore.cli.train.command_line`),
``--jobs`` of them at a time; their output goes to ``<run>/train.out``. Then the summary: ``ablation.json`` (every
run's figures, each variant's mean and spread, the commands), ``ablation.md`` (the table) and ``ablation.png``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from rfcore.cli.common import EXIT_BAD_INPUT
from rfcore.cli.train import command_line
from rfcore.files import write_bytes, write_text
from rfcore.train.config import ABLATION_SEEDS

DESCRIPTION = (
    "Train the paper's ablation (Tab. 3) in miniature from scratch on synthetic faces: classification + box, "
    "+ five landmarks, + landmarks and the dense branch (L_pixel through the pre-trained mesh decoder), several "
    "seeds each, every run scored on the held-out synthetic validation set (AP per face-size band, landmark NME). "
    "Writes each run to OUT/<variant>/seed-<s>/ and the table and plot to OUT/ablation.{json,md,png}."
)


def add_parsers(subparsers) -> argparse.ArgumentParser:
    """Add ``experiment ablation`` to the ``rfcore`` command line."""
    parser = subparsers.add_parser("experiment", help="experiments made of several training runs",
                                   description="Experiments made of several training runs.")
    kinds = parser.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    ablation = kinds.add_parser("ablation", help="the paper's ablation (Tab. 3) in miniature", description=DESCRIPTION)
    ablation.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    ablation.add_argument("--seeds", type=int, nargs="+", default=list(ABLATION_SEEDS), metavar="S",
                          help=f"seeds of each variant (default: {' '.join(map(str, ABLATION_SEEDS))})")
    ablation.add_argument("--jobs", type=int, default=2, metavar="N",
                          help="runs at a time, one CPU thread each (default: 2)")
    ablation.add_argument("--resume", action="store_true",
                          help="continue an interrupted ablation: finished runs are only read, others resume")
    ablation.set_defaults(run=run_ablation)
    return parser


def run_ablation(args: argparse.Namespace) -> int:
    """Run every variant and seed, then write and print the summary; the exit status."""
    from rfcore.train.ablation import ablation_configs, summarise
    from rfcore.train.checkpoint import checkpoint_dirs
    from rfcore.viz.ablation import ablation_table, plot_ablation

    if args.jobs < 1:
        print(f"rfcore experiment ablation: --jobs must be at least 1, got {args.jobs}", file=sys.stderr)
        return EXIT_BAD_INPUT
    configs = ablation_configs(args.out, args.seeds)
    # the summary keeps each run's command from scratch; with --resume a run continues only where there is a
    # checkpoint (train refuses to resume nothing), and a finished run whose checkpoints were pruned is only read
    commands = {key: command_line(cfg) for key, cfg in configs.items()}
    finished = {key for key, cfg in configs.items()
                if args.resume and not checkpoint_dirs(cfg.out) and (Path(cfg.out) / "weights.safetensors").is_file()}
    to_run = {key: command + (" --resume" if args.resume and checkpoint_dirs(configs[key].out) else "")
              for key, command in commands.items() if key not in finished}
    failed = run_all(to_run, configs, args.jobs)
    if failed:
        print(f"rfcore experiment ablation: {len(failed)} runs failed, e.g. {failed[0]}; see its train.out, "
              "then rerun with --resume", file=sys.stderr)
        return EXIT_BAD_INPUT
    rows = summarise(configs)
    summary = {"rows": rows, "commands": {f"{name} seed {seed}": command for (name, seed), command in commands.items()}}
    write_text(args.out / "ablation.json", json.dumps(summary, indent=1) + "\n")
    table = ablation_table(rows)
    write_text(args.out / "ablation.md", table + "\n")
    figure = plot_ablation(rows)
    write_bytes(args.out / "ablation.png", figure_png(figure))
    print(table)
    return 0


def run_all(commands: dict, configs: dict, jobs: int) -> list[str]:
    """Run the commands, ``jobs`` at a time, each in its own run folder; the folders of those that failed."""
    waiting, running, failed, started = list(commands), {}, [], time.perf_counter()
    while waiting or running:
        while waiting and len(running) < jobs:
            key = waiting.pop(0)
            folder = Path(configs[key].out)
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / "train.out", "w") as output:
                running[key] = subprocess.Popen(shlex.split(commands[key]), stdout=output, stderr=subprocess.STDOUT)
            print(f"[{elapsed(started)}] started {key[0]} seed {key[1]}", flush=True)
        time.sleep(1)
        for key, process in list(running.items()):
            if process.poll() is not None:
                del running[key]
                if process.returncode:
                    failed.append(configs[key].out)
                print(f"[{elapsed(started)}] {'FAILED' if process.returncode else 'finished'} {key[0]} seed {key[1]}",
                      flush=True)
    return failed


def elapsed(started: float) -> str:
    minutes, seconds = divmod(int(time.perf_counter() - started), 60)
    return f"{minutes:3d}:{seconds:02d}"


def figure_png(figure) -> bytes:
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()
