"""What the ``rfcore`` commands share: their exit statuses, error lines and common options."""

from __future__ import annotations

import sys
from pathlib import Path

from rfcore.config import PRESETS
from rfcore.detect_config import DEFAULT_MAX_SIZE, MAX_DECODE_PIXELS, DetectConfig

EXIT_DIVERGED = 1
"""Exit status of ``rfcore train`` when the loss or the weights stop being finite."""

EXIT_BAD_INPUT = 2
"""Exit status for bad options, missing data or weights, or a checkpoint that does not fit."""

EXIT_DISK_FULL = 3
"""Exit status of any command when the device it writes to fills up (``rfcore train`` keeps its last good
checkpoint)."""

PRESET_HELP = ("preset of the weights, needed only for a file without one in its metadata whose tensors do not "
               "tell it (rfcore's files record theirs)")
"""``--preset`` of every command that loads weights: the file names its own."""


def error(command: str, err: Exception) -> None:
    print(f"rfcore {command}: {err}", file=sys.stderr, flush=True)


def add_memory_options(parser, max_size_help: str) -> None:
    parser.add_argument(
        "--max-size", type=int, default=DEFAULT_MAX_SIZE, metavar="PIXELS",
        help=f"{max_size_help} (default: {DEFAULT_MAX_SIZE}, which keeps one image under about 1.6 GB of memory; "
        "0: no limit). A JPEG larger than needed is decoded at 1/2, 1/4 or 1/8 size",
    )
    parser.add_argument(
        "--max-pixels", type=int, default=MAX_DECODE_PIXELS, metavar="N",
        help=f"refuse image files that would decode to more than N pixels, before decoding them (default: "
        f"{MAX_DECODE_PIXELS:,}, 300 MB; 0: no limit)",
    )


def add_threshold_option(parser) -> None:
    default = DetectConfig.threshold
    parser.add_argument("--threshold", type=float, default=default,
                        help=f"face probability to exceed (default: {default})")


def add_weights_options(parser) -> None:
    parser.add_argument(
        "--weights", type=Path, metavar="PATH",
        help="safetensors weights (default: assets/weights/retinaface_mobilenet0.25.safetensors in the repository)",
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), help=PRESET_HELP)

