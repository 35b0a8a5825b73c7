"""``rfcore bench memory``: peak memory of ``rfcore detect`` on large images.

Each case writes a square image of the given side (a tiled photograph, so
the detector has faces to find) as a JPEG or PNG, runs ``rfcore detect`` on
it in a fresh Python process, and reports that process's peak resident set
size as the kernel counts it (``VmHWM``), so nothing but the command itself
is measured. A run refused by a memory guard counts
too: the point is that it stops before decoding, at a small peak.

The goal is a peak under :data:`PEAK_GOAL_BYTES` with the default settings,
whatever the file's size.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from rfcore.assets import IMAGES, load_image
from rfcore.files import format_bytes, write_bytes

PEAK_GOAL_BYTES = 2_000_000_000
"""Largest peak resident memory ``rfcore detect`` should reach with its defaults."""

DEFAULT_CASES = ((6000, ".jpg"), (6000, ".png"), (20000, ".jpg"), (20000, ".png"))
"""``(side, format)`` of the measured images."""


def write_large_image(path: Path, side: int) -> Path:
    """A ``side x side`` image tiled from the bundled group picture, written as ``path``'s format."""
    tile = cv2.cvtColor(load_image(IMAGES / "group.jpg"), cv2.COLOR_RGB2BGR)
    reps = (-(-side // tile.shape[0]), -(-side // tile.shape[1]), 1)
    image = np.tile(tile, reps)[:side, :side]
    ok, encoded = cv2.imencode(path.suffix, image)
    if not ok:
        raise OSError(f"could not encode a {side}x{side} image as {path.suffix}")
    return write_bytes(path, encoded.tobytes())


PEAK_REPORTER = """
import sys
from rfcore.cli import main
try:
    status = main(sys.argv[1:])
finally:
    peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print("peak-rss", int(peak.split()[1]) * 1024, file=sys.stderr)
sys.exit(status)
"""
"""The child process: ``rfcore`` itself, then its high-water mark of resident memory on stderr.

``VmHWM`` belongs to the process's own address space, which ``exec`` makes
afresh; ``ru_maxrss`` would also count the parent's pages the child had
between ``fork`` and ``exec``."""


def peak_rss(args: list[str]) -> tuple[int, int, str]:
    """Run ``rfcore ARGS`` in a new Python process (Linux: reads ``/proc/self/status``).

    Returns:
        ``(peak resident bytes, exit status, last line rfcore wrote to stderr)``.
    """
    done = subprocess.run([sys.executable, "-c", PEAK_REPORTER, *args], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    *lines, last = done.stderr.strip().splitlines()
    return int(last.split()[1]), done.returncode, lines[-1] if lines else ""


def bench_memory(cases=DEFAULT_CASES, extra_args: tuple[str, ...] = ()) -> list[dict]:
    """Peak memory of ``rfcore detect IMAGE`` for each ``(side, format)`` case.

    Args:
        cases: ``(side, suffix)`` pairs, e.g. ``(20000, ".png")``.
        extra_args: More ``rfcore detect`` options, e.g. ``("--max-pixels", "0")``.

    Returns:
        Per case: ``side``, ``format``, ``file_bytes``, ``peak_bytes``, ``status`` and ``message``.
    """
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for side, suffix in cases:
            path = write_large_image(Path(folder) / f"large_{side}{suffix}", side)
            peak, status, message = peak_rss(["detect", str(path), *extra_args])
            results.append({"side": side, "format": suffix[1:], "file_bytes": path.stat().st_size,
                            "peak_bytes": peak, "status": status, "message": message})
            path.unlink()
    return results


def format_memory_report(results: list[dict], extra_args: tuple[str, ...] = ()) -> str:
    """A line per case, and whether every peak stayed under :data:`PEAK_GOAL_BYTES`."""
    options = " ".join(extra_args) or "default options"
    lines = [f"peak resident memory of `rfcore detect IMAGE` ({options}), one fresh process per image"]
    for r in results:
        outcome = "detected" if r["status"] == 0 else f"exit {r['status']}: {r['message'][:110]}"
        size = f"{r['side']}x{r['side']}"
        lines.append(f"  {size:>11} {r['format']:<4} ({format_bytes(r['file_bytes']):>8}): "
                     f"peak {format_bytes(r['peak_bytes']):>8}  {outcome}")
    worst = max(r["peak_bytes"] for r in results)
    verdict = "met" if worst < PEAK_GOAL_BYTES else "MISSED"
    lines.append(f"goal: peak under {format_bytes(PEAK_GOAL_BYTES)}: worst {format_bytes(worst)}, {verdict}")
    return "\n".join(lines)
