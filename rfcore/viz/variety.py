"""Synthetic variety and what it is worth (notebook 06): a gallery of the options and the probes' table.

* :func:`render_variety_gallery`: the same synthetic images without options, with each option of
  :mod:`rfcore.data.variety` alone and with all of them, one row each, labelled;
* :func:`variety_table`: the rows of ``assets/runs/variety-probes/probes.json``
  (``tools/probe_variety.py``) as a Markdown table of AP on both synthetic validation sets and on the
  bundled photographs.
"""

from __future__ import annotations

import numpy as np

from rfcore.config import VARIETY_OPTIONS
from rfcore.data.synthetic import SyntheticFaces
from rfcore.data.variety import Variety
from rfcore.viz.draw import put_text, side_by_side, table_markdown


def render_variety_gallery(count: int = 4, size: int = 160, seed: int = 0, rows=("none", *VARIETY_OPTIONS, "all")) -> np.ndarray:
    """One row of ``count`` synthetic images per option: the same faces, poses and places in every row.

    Args:
        count: Images per row.
        size: Side of each image in pixels.
        seed: Seed of the images.
        rows: Option names (``"none"`` for the plain faces, ``"all"`` for every option).

    Returns:
        ``(rows * (size + 4) - 4, count * (size + 4) - 4 + label, 3)`` uint8 RGB, each row labelled on its left.
    """
    strips = []
    for name in rows:
        variety = Variety() if name == "none" else Variety.from_names([name])
        dataset = SyntheticFaces(count, size, faces=(1, 4), min_face=24, seed=seed, variety=variety)
        label = np.full((size, 100, 3), 255, np.uint8)
        put_text(label, name, (4, size // 2), (255, 255, 255))
        strips.append(side_by_side([label, *(dataset[i].image for i in range(count))]))
    gap = np.full((4, strips[0].shape[1], 3), 255, np.uint8)
    return np.concatenate([part for strip in strips for part in (strip, gap)][:-1], axis=0)


def variety_table(rows: list[dict]) -> str:
    """A Markdown table of probe rows: options, AP on the synthetic, varied and photograph sets, NME, wall time."""
    table = [{
        "probe": row["name"],
        "options": " ".join(row["variety"]) or "(today's faces)",
        "AP synthetic": row["synthetic"]["ap"]["all"],
        "AP varied": row["synthetic_varied"]["ap"]["all"],
        "AP photographs": row["photographs"]["ap"]["all"],
        "NME synthetic": row["synthetic"]["nme"]["all"],
        "minutes": row["wall_seconds"] / 60,
    } for row in rows]
    formats = {"AP synthetic": "{:.3f}", "AP varied": "{:.3f}", "AP photographs": "{:.3f}",
               "NME synthetic": "{:.1%}", "minutes": "{:.1f}"}
    return table_markdown(table, formats)
