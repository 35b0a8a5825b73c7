"""Start-up of the ``rfcore`` command: ``rfcore --help`` in fresh processes against ``import rfcore``.

The command line builds its parser from modules that import no deep-learning code and imports what the
chosen command needs only once the arguments are parsed, so asking for help should cost about as much as
starting Python and importing the package (the peer). Every run is a new interpreter, as a user's shell
starts one; the commands take turns (:func:`rfcore.bench.timing.interleaved_medians`).
"""

from __future__ import annotations

import subprocess
import sys

from rfcore.bench.timing import interleaved_medians

COMMANDS = {
    "rfcore --help": ("-m", "rfcore", "--help"),
    "rfcore detect --help": ("-m", "rfcore", "detect", "--help"),
    "python -c 'import rfcore' (peer)": ("-c", "import rfcore"),
}
"""What is timed: arguments of a fresh ``python`` process."""

HELP_GOAL_SECONDS = 0.5
"""``rfcore --help`` should answer within this."""


def run_python(args: tuple[str, ...]) -> None:
    """Run ``python ARGS`` (this interpreter) to the end, its output discarded; raise if it fails."""
    subprocess.run([sys.executable, *args], stdout=subprocess.DEVNULL, check=True)


def bench_cli(repeats: int = 10) -> dict[str, float]:
    """Median seconds of each of :data:`COMMANDS`, each run a new process, the commands taking turns.

    Args:
        repeats: Timed runs of each command (after one warm-up run per round).
    """
    runs = {name: (lambda args=args: run_python(args)) for name, args in COMMANDS.items()}
    return interleaved_medians(runs, repeats, rounds=repeats)


def format_cli_report(medians: dict[str, float], repeats: int) -> str:
    """The report: each command's median, its ratio to the peer, and the goal for ``rfcore --help``."""
    peer = medians["python -c 'import rfcore' (peer)"]
    width = max(map(len, medians))
    lines = [f"median of {repeats} fresh processes each, in turns ({sys.executable})"]
    lines += [f"  {name:<{width}}  {seconds:6.3f} s  {seconds / peer:5.2f}x the peer"
              for name, seconds in medians.items()]
    help_seconds = medians["rfcore --help"]
    verdict = "met" if help_seconds < HELP_GOAL_SECONDS else "MISSED"
    lines.append(f"goal: rfcore --help under {HELP_GOAL_SECONDS} s: {verdict} ({help_seconds:.3f} s)")
    return "\n".join(lines)
