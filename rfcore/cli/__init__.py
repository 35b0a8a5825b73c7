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
from rfcore.cli.common import EXIT_BAD_INPUT, EXIT_DISK_FULL, EXIT_INTERRUPTED, error
from rfcore.files import DiskFull, is_disk_full


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
    """Entry point of the ``rfcore`` console script; the exit status follows :mod:`rfcore.cli.common`'s table."""
    args = build_parser().parse_args(argv)
    if sys.stdout is None:  # started with stdout closed (`rfcore ... >&-`)
        error(args.command, "standard output is closed: send it somewhere, e.g. > /dev/null")
        return EXIT_BAD_INPUT
    try:
        status = args.run(args)
        sys.stdout.flush()
    except DiskFull as err:  # a write beyond the per-file loops: the JSON lines file, converted or exported weights
        error(args.command, err)
        return EXIT_DISK_FULL
    except KeyboardInterrupt:
        error(args.command, "interrupted (Ctrl-C); files already written are complete, none is half-written")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader closed the pipe early (e.g. `rfcore detect ... | head`): stop quietly.
        _silence_stdout()
        return 1
    except OSError as err:
        if not is_disk_full(err):  # a write the command's own checks could not foresee (/proc, a vanished folder)
            error(args.command, f"{err.filename}: {err.strerror}" if err.filename else err.strerror or err)
            return EXIT_BAD_INPUT
        _silence_stdout()  # stdout is a full device (`> /dev/full`): its buffer can never be flushed
        error(args.command, "no space left on the device of standard output; free some space or redirect it")
        return EXIT_DISK_FULL
    return status


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
