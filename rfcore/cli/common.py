"""What the ``rfcore`` commands share: their exit statuses, error lines and common options.

Every error a user can cause ends a command with one line on stderr and one of these statuses (the README's
table): 0 done, 1 some files failed (the others were processed) or training diverged, :data:`EXIT_BAD_INPUT`,
:data:`EXIT_DISK_FULL`, :data:`EXIT_INTERRUPTED`.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from rfcore.config import PRESETS
from rfcore.detect_config import DEFAULT_MAX_SIZE, MAX_DECODE_PIXELS, OPENCV_MAX_PIXELS, DetectConfig

EXIT_DIVERGED = 1
"""Exit status of ``rfcore train`` when the loss or the weights stop being finite."""

EXIT_BAD_INPUT = 2
"""Exit status for bad options, missing data or weights, or a checkpoint that does not fit."""

EXIT_DISK_FULL = 3
"""Exit status of any command when the device it writes to fills up (``rfcore train`` keeps its last good
checkpoint)."""

EXIT_INTERRUPTED = 130
"""Exit status of any command stopped by Ctrl-C (SIGINT), as shells report it (128 + 2)."""

PRESET_HELP = ("preset of the weights, needed only for a file without one in its metadata whose tensors do not "
               "tell it (rfcore's files record theirs)")
"""``--preset`` of every command that loads weights: the file names its own."""


def error(command: str, err: Exception) -> None:
    print(f"rfcore {command}: {err}", file=sys.stderr, flush=True)


def exit_status(err: BaseException) -> int:
    """The status of an error a user caused: :data:`EXIT_DISK_FULL` for a full device, else :data:`EXIT_BAD_INPUT`."""
    from rfcore.files import is_disk_full

    return EXIT_DISK_FULL if is_disk_full(err) else EXIT_BAD_INPUT


def fail(command: str, err: BaseException) -> int:
    """Print ``err`` as the one error line of ``command`` and return its :func:`exit_status`."""
    error(command, err)
    return exit_status(err)


def bounded_int(low: int, high: int):
    """An ``argparse`` type: an integer in ``[low, high]`` (argparse names the option in its error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"takes a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:,} and {high:,}, got {text}")
        return value

    return parse


def finite_float(low: float = -math.inf, high: float = math.inf):
    """An ``argparse`` type: a finite number in ``[low, high]`` (argparse names the option in its error)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"takes a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}, got {text}")
        return value

    return parse


def cores() -> int:
    """CPU cores this process may run on (its affinity where the system says, else the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


MAX_BATCH = 256
"""Upper bound of every batch-size option of the inference commands (256 VGA frames are 0.9 GB of network input)."""

MAX_SIDE = 16_384
"""Upper bound of every size option in pixels (a 16384^2 RGB image is 0.8 GB, a float32 network input 3.2 GB)."""


def add_memory_options(parser, max_size_help: str) -> None:
    parser.add_argument(
        "--max-size", type=bounded_int(0, MAX_SIDE), default=DEFAULT_MAX_SIZE, metavar="PIXELS",
        help=f"{max_size_help} (default: {DEFAULT_MAX_SIZE}, which keeps one image under about 1.6 GB of memory; "
        "0: no limit). A JPEG larger than needed is decoded at 1/2, 1/4 or 1/8 size",
    )
    parser.add_argument(
        "--max-pixels", type=bounded_int(0, OPENCV_MAX_PIXELS), default=MAX_DECODE_PIXELS, metavar="N",
        help=f"refuse image files that would decode to more than N pixels, before decoding them (default: "
        f"{MAX_DECODE_PIXELS:,}, 300 MB; 0: OpenCV's own limit, {OPENCV_MAX_PIXELS:,})",
    )


def add_threshold_option(parser) -> None:
    default = DetectConfig.threshold
    parser.add_argument("--threshold", type=finite_float(0, 1), default=default,
                        help=f"face probability to exceed (default: {default})")


def add_weights_options(parser) -> None:
    parser.add_argument(
        "--weights", type=Path, metavar="PATH",
        help="safetensors weights (default: the bundled rfcore/assets/weights/retinaface_mobilenet0.25.safetensors)",
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), help=PRESET_HELP)

