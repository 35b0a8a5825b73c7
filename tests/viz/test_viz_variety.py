"""rfcore.viz.variety: the gallery of the synthetic options and the probes' table."""

import numpy as np

from rfcore.viz.variety import render_variety_gallery, variety_table


def test_the_gallery_has_one_labelled_row_per_option_and_the_rows_differ():
    gallery = render_variety_gallery(count=2, size=64, rows=("none", "details", "all"))
    assert gallery.shape == (3 * 64 + 2 * 4, 100 + 4 + 2 * 64 + 4, 3) and gallery.dtype == np.uint8
    rows = [gallery[r * 68 : r * 68 + 64, 104:] for r in range(3)]
    assert not np.array_equal(rows[0], rows[1]) and not np.array_equal(rows[1], rows[2])
    assert (gallery[:64, :100] < 255).any()  # the label


def test_the_table_lists_each_probe_with_its_scores():
    scores = {"ap": {"all": 0.5}, "nme": {"all": 0.125}}
    rows = [{"name": "today", "variety": [], "synthetic": scores, "synthetic_varied": scores, "photographs":
             {"ap": {"all": 0.25}, "nme": {"all": None}}, "wall_seconds": 240.0},
            {"name": "details", "variety": ["details"], "synthetic": scores, "synthetic_varied": scores,
             "photographs": scores, "wall_seconds": 300.0}]
    lines = variety_table(rows).splitlines()
    assert len(lines) == 4 and lines[0].startswith("| probe | options")
    assert lines[2] == "| today | (today's faces) | 0.500 | 0.500 | 0.250 | 12.5% | 4.0 |"
    assert lines[3].startswith("| details | details |")
