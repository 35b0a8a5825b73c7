"""``rfcore anchors``: the anchor table of a preset."""

from __future__ import annotations

from rfcore.cli.common import MAX_SIDE, bounded_int
from rfcore.config import PRESETS


def add_parsers(subparsers) -> None:
    """Add ``anchors`` to the ``rfcore`` command line."""
    _add_anchors(subparsers)


def _add_anchors(subparsers) -> None:
    parser = subparsers.add_parser(
        "anchors",
        help="print the anchor layout of a preset",
        description="Print, per pyramid level, the stride, feature-map size, anchor sizes and anchor count "
        "of a preset at an input size (e.g. the paper's 102,300 anchors at 640x640).",
    )
    parser.add_argument("--preset", default="paper", choices=sorted(PRESETS), help="preset name (default: paper)")
    parser.add_argument(
        "--size", type=bounded_int(1, MAX_SIDE), nargs=2, default=(640, 640), metavar=("HEIGHT", "WIDTH"),
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
