"""``rfcore bench memory``: peak memory of ``rfcore detect`` on large images.

Each case writes a square image of the given side (a tiled photograph, so
the detector has faces to find) as a JPEG, PNG, TIFF or GIF, or a small
picture whose header claims that side (:func:`forge_header`, a hostile
file), runs ``rfcore detect`` on it in a fresh Python process, and reports
that process's peak resident set size as the kernel counts it (``VmHWM``),
so nothing but the command itself is measured. A run refused by a memory
guard counts too: the point is that it stops before decoding, at a small peak.

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

FORGED_CASES = ((65000, ".jpg"), (60000, ".png"), (20000, ".tif"), (20000, ".gif"))
"""``(side, format)`` of the measured hostile files: a 64x64 picture whose header claims ``side x side``."""


def forge_header(path: Path, side: int, picture_side: int = 64) -> Path:
    """Write a ``picture_side``-pixel picture in ``path``'s format (JPEG, PNG, TIFF, GIF) whose header claims ``side``.

    The file stays small (a few kB) while a decoder that believed it would allocate ``3 * side**2`` bytes or more.
    """
    image = np.random.default_rng(0).integers(0, 256, (picture_side, picture_side, 3), np.uint8)
    ok, encoded = cv2.imencode(path.suffix, image)
    if not ok:
        raise OSError(f"could not encode a picture as {path.suffix}")
    data = bytearray(encoded.tobytes())
    if path.suffix in (".jpg", ".jpeg"):
        sof = next(k for k in range(2, len(data) - 9) if data[k] == 0xFF and data[k + 1] in (0xC0, 0xC1, 0xC2))
        data[sof + 5 : sof + 9] = side.to_bytes(2, "big") * 2  # height, width
    elif path.suffix == ".png":
        data[16:24] = side.to_bytes(4, "big") * 2  # IHDR width, height
    elif path.suffix == ".gif":
        data[6:10] = side.to_bytes(2, "little") * 2  # logical screen width, height
    elif path.suffix in (".tif", ".tiff"):
        _forge_tiff_sides(data, side)
    else:
        raise ValueError(f"cannot forge a {path.suffix} header")
    return write_bytes(path, bytes(data))


def _forge_tiff_sides(data: bytearray, side: int) -> None:
    """Set ImageWidth and ImageLength of a little-endian classic TIFF's first directory to ``side``."""
    offset = int.from_bytes(data[4:8], "little")
    for k in range(int.from_bytes(data[offset : offset + 2], "little")):
        entry = offset + 2 + 12 * k
        if int.from_bytes(data[entry : entry + 2], "little") in (256, 257):
            width = 2 if int.from_bytes(data[entry + 2 : entry + 4], "little") == 3 else 4
            data[entry + 8 : entry + 8 + width] = side.to_bytes(width, "little")


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


def bench_memory(cases=DEFAULT_CASES, extra_args: tuple[str, ...] = (), forged=()) -> list[dict]:
    """Peak memory of ``rfcore detect IMAGE`` for each ``(side, format)`` case.

    Args:
        cases: ``(side, suffix)`` pairs of real images, e.g. ``(20000, ".png")``.
        extra_args: More ``rfcore detect`` options, e.g. ``("--max-pixels", "0")``.
        forged: ``(side, suffix)`` pairs of hostile files (:func:`forge_header`), e.g. :data:`FORGED_CASES`.

    Returns:
        Per case: ``side``, ``format``, ``forged``, ``file_bytes``, ``peak_bytes``, ``status`` and ``message``.
    """
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for (side, suffix), hostile in [*((case, False) for case in cases), *((case, True) for case in forged)]:
            path = Path(folder) / f"{'forged' if hostile else 'large'}_{side}{suffix}"
            (forge_header if hostile else write_large_image)(path, side)
            peak, status, message = peak_rss(["detect", str(path), *extra_args])
            results.append({"side": side, "format": suffix[1:], "forged": hostile, "file_bytes": path.stat().st_size,
                            "peak_bytes": peak, "status": status, "message": message})
            path.unlink()
    return results


def format_memory_report(results: list[dict], extra_args: tuple[str, ...] = ()) -> str:
    """A line per case, and whether every peak stayed under :data:`PEAK_GOAL_BYTES`."""
    options = " ".join(extra_args) or "default options"
    lines = [f"peak resident memory of `rfcore detect IMAGE` ({options}), one fresh process per image"]
    for r in results:
        outcome = "detected" if r["status"] == 0 else f"exit {r['status']}: {r['message'][:110]}"
        size = f"{'claims ' if r.get('forged') else ''}{r['side']}x{r['side']}"
        lines.append(f"  {size:>18} {r['format']:<4} ({format_bytes(r['file_bytes']):>8}): "
                     f"peak {format_bytes(r['peak_bytes']):>8}  {outcome}")
    worst = max(r["peak_bytes"] for r in results)
    verdict = "met" if worst < PEAK_GOAL_BYTES else "MISSED"
    lines.append(f"goal: peak under {format_bytes(PEAK_GOAL_BYTES)}: worst {format_bytes(worst)}, {verdict}")
    return "\n".join(lines)
