"""The ``rfcore`` command line.

Every subcommand is a thin layer over a library function; ``rfcore --help``
and ``rfcore SUBCOMMAND --help`` explain the options.
"""

from __future__ import annotations

import argparse
import sys

from rfcore.config import PRESETS


def _add_anchors(subparsers) -> None:
    parser = subparsers.add_parser(
        "anchors",
        help="print the anchor layout of a preset",
        description="Print, per pyramid level, the stride, feature-map size, anchor sizes and anchor count "
        "of a preset at an input size (e.g. the paper's 102,300 anchors at 640x640).",
    )
    parser.add_argument("--preset", default="paper", choices=sorted(PRESETS), help="preset name (default: paper)")
    parser.add_argument(
        "--size", type=int, nargs=2, default=(640, 640), metavar=("HEIGHT", "WIDTH"),
        help="input size in pixels (default: 640 640)",
    )
    parser.set_defaults(run=_run_anchors)


def _run_anchors(args) -> int:
    from rfcore.anchors import anchor_table

    rows = anchor_table(PRESETS[args.preset], tuple(args.size))
    print(f"preset {args.preset!r} at {args.size[0]}x{args.size[1]}")
    print(f"{'level':<6}{'stride':>7}{'grid':>11}  {'anchor sizes':<26}{'anchors':>9}{'share':>8}")
    for row in rows:
        grid = f"{row['grid'][0]}x{row['grid'][1]}"
        sizes = ", ".join(f"{s:g}" for s in row["sizes"])
        print(f"{row['level']:<6}{row['stride']:>7}{grid:>11}  {sizes:<26}{row['anchors']:>9,}{row['share']:>8.1%}")
    print(f"total anchors: {sum(r['anchors'] for r in rows):,}")
    return 0


def _add_bench(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure performance against a peer in the same run",
        description="Benchmarks report medians and ratios against a peer implementation measured in the same run.",
    )
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    targets = kinds.add_parser(
        "targets",
        help="target assignment (matching + box + landmark encoding) for a batch",
        description="Time batched target assignment (rfcore.matching.TargetAssigner) against a loop that "
        "matches one image at a time with the dense IoU matrix, on random WIDER-like faces, and check both "
        "give identical targets.",
    )
    targets.add_argument(
        "--presets", nargs="+", default=["paper", "mobilenet0.25"], choices=sorted(PRESETS),
        help="presets to measure (default: paper mobilenet0.25)",
    )
    targets.add_argument("--batch", type=int, default=32, help="images per batch (default: 32)")
    targets.add_argument("--faces", type=int, default=50, help="faces per image (default: 50)")
    targets.add_argument("--size", type=int, default=640, help="square image side in pixels (default: 640)")
    targets.add_argument("--repeats", type=int, default=5, help="timed runs per method, median reported (default: 5)")
    targets.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    targets.set_defaults(run=_run_bench_targets)


def _run_bench_targets(args) -> int:
    import torch

    from rfcore.bench import bench_targets, format_targets_report

    for name, value in (("--batch", args.batch), ("--faces", args.faces), ("--size", args.size), ("--repeats", args.repeats)):
        if value < 1:
            raise SystemExit(f"rfcore bench targets: {name} must be at least 1, got {value}")
    if args.threads:
        torch.set_num_threads(args.threads)
    results = bench_targets(args.presets, args.batch, args.faces, args.size, args.repeats)
    print(format_targets_report(results, args.batch, args.faces, args.size))
    return 0 if all(r["identical"] for r in results) else 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``rfcore`` command."""
    parser = argparse.ArgumentParser(
        prog="rfcore",
        description="RetinaFace you can read, run and learn from.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_anchors(subparsers)
    _add_bench(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rfcore`` console script."""
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
