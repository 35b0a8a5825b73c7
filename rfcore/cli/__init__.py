"""The ``rfcore`` command line: one module per command family, each adding its subcommands.

* :mod:`rfcore.cli.detect`: ``detect`` (images and videos) and ``align``;
* :mod:`rfcore.cli.anchors`: ``anchors``;
* :mod:`rfcore.cli.train`: ``train``;
* :mod:`rfcore.cli.experiment`: ``experiment ablation``;
* :mod:`rfcore.cli.mesh`: ``mesh pretrain``, ``mesh train-head`` and ``mesh measure``;
* :mod:`rfcore.cli.evaluation`: ``eval``;
* :mod:`rfcore.cli.data`: ``data widerface`` (the only command that downloads);
* :mod:`rfcore.cli.weights`: ``export`` and ``convert``;
* :mod:`rfcore.cli.bench`: ``bench`` and its kinds;
* :mod:`rfcore.cli.common`: exit statuses, error lines, shared options.

Every subcommand is a thin layer over a library function; ``rfcore --help``
and ``rfcore SUBCOMMAND --help`` explain the options.
"""

from __future__ import annotations

import argparse
import os
import sys

from rfcore.cli import anchors, bench, data, detect, evaluation, experiment, mesh, train, weights
from rfcore.cli.common import EXIT_DISK_FULL, error
from rfcore.files import DiskFull


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``rfcore`` command."""
    parser = argparse.ArgumentParser(
        prog="rfcore",
        description="RetinaFace you can read, run and learn from.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for family in (anchors, bench, data, detect, evaluation, experiment, mesh, train, weights):
        family.add_parsers(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rfcore`` console script."""
    args = build_parser().parse_args(argv)
    try:
        status = args.run(args)
        sys.stdout.flush()
    except DiskFull as err:  # a write beyond the per-file loops: the JSON lines file, converted or exported weights
        error(args.command, err)
        return EXIT_DISK_FULL
    except BrokenPipeError:
        # The reader closed the pipe early (e.g. `rfcore detect ... | head`): stop quietly,
        # and point stdout at /dev/null so the interpreter's final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return status
