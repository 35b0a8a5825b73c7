"""The ``rfcore data`` commands: fetching and arranging a dataset (today WIDER FACE) on the user's request.

This is the only command of rfcore that uses the network. The work is done by
:func:`rfcore.widerface_archives.fetch_widerface`; the parts, their sources
and licences come from :data:`rfcore.widerface_archives.PARTS`.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from rfcore.cli.common import EXIT_BAD_INPUT, EXIT_DISK_FULL, error
from rfcore.download import DownloadStopped
from rfcore.files import DiskFull
from rfcore.widerface_archives import MIRROR_ENV, PARTS, fetch_widerface

EXIT_NETWORK = 4
"""Exit status of ``rfcore data`` when an archive could not be downloaded (what arrived is kept to resume)."""

DESCRIPTION = (
    "Fetch WIDER FACE, check every archive (the published MD5 where there is one, otherwise every file's CRC-32 "
    "and the expected contents) and arrange it in DIR as rfcore eval and rfcore train read it. An interrupted "
    "download resumes where it stopped when the command is run again; a damaged or wrong archive is refused and "
    "named. Archives are kept in DIR/archives. Nothing is downloaded by any other rfcore command."
)


def epilog() -> str:
    """The parts, where each comes from and its licence; the layout; examples."""
    lines = ["parts (default: all):"]
    for part in PARTS.values():
        lines += textwrap.wrap(f"{part.archive}: {part.what}", 100, initial_indent=f"  {part.name:<13}",
                               subsequent_indent=" " * 15)
        lines += textwrap.wrap(f"from {part.source}; {part.licence}", 100, initial_indent=" " * 15,
                               subsequent_indent=" " * 15)
    lines += [
        "",
        "The images come from the Hugging Face copy of the official archives (CUHK-CSE/wider_face), else Google",
        "Drive; MD5s and Drive ids are torchvision's (torchvision.datasets.WIDERFace). WIDER FACE is for",
        "non-commercial research only: by fetching it you accept its terms.",
        "",
        "DIR afterwards: train/images, train/label.txt, val/images, val/label.txt, ground_truth/*.mat,",
        "wider_face_split/, archives/, widerface.json (what was arranged from which archive)",
        "",
        "examples:",
        "  rfcore data widerface data/widerface                          # everything (1.9 GB)",
        "  rfcore data widerface data/widerface --parts val ground-truth # for rfcore eval (370 MB)",
        "  rfcore data widerface data/widerface --from ~/Downloads       # archives already downloaded",
        "  rfcore eval --widerface data/widerface",
        "  rfcore train --data widerface --widerface data/widerface",
    ]
    return "\n".join(lines)


def add_parsers(subparsers) -> argparse.ArgumentParser:
    """Add ``data`` and its ``widerface`` subcommand to the ``rfcore`` command line."""
    parser = subparsers.add_parser("data", help="fetch and arrange a dataset (WIDER FACE)",
                                   description="Fetch and arrange a dataset.")
    kinds = parser.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    wider = kinds.add_parser("widerface", help="WIDER FACE images, annotations and evaluation ground truth",
                             description=textwrap.fill(DESCRIPTION, 100), epilog=epilog(),
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    wider.add_argument("dir", type=Path, metavar="DIR", help="folder to arrange the data in (created)")
    wider.add_argument("--parts", nargs="+", default=list(PARTS), metavar="PART",
                       help=f"what to fetch: {', '.join(PARTS)} (default: all)")
    wider.add_argument("--from", dest="archives", type=Path, metavar="FOLDER",
                       help="take the official archives from FOLDER instead of downloading (no network)")
    wider.add_argument("--mirror", metavar="URL",
                       help=f"fetch every archive from URL/<official name> instead (default: ${MIRROR_ENV} if set)")
    wider.add_argument("--quiet", action="store_true", help="no progress bars")
    wider.set_defaults(run=run_widerface)
    return parser


def run_widerface(args: argparse.Namespace) -> int:
    """Run ``rfcore data widerface``; the exit status."""
    command = "data widerface"
    try:
        folder = fetch_widerface(args.dir, args.parts, archives=args.archives, mirror=args.mirror,
                                 progress=not args.quiet)
    except DiskFull as err:
        error(command, err)
        return EXIT_DISK_FULL
    except DownloadStopped as err:
        error(command, err)
        return EXIT_NETWORK
    except (OSError, ValueError) as err:
        error(command, err)
        return EXIT_BAD_INPUT
    print(folder.describe(args.parts))
    if folder.can_evaluate:
        print(f"evaluate: rfcore eval --widerface {folder.root}")
    if folder.can_train:
        print(f"train:    rfcore train --data widerface --widerface {folder.root}")
    sys.stdout.flush()
    return 0
