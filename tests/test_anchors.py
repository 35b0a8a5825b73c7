import dataclasses

import pytest
import torch

from rfcore.anchors import anchor_levels, anchor_table, make_anchors
from rfcore.config import get_config

# Table 2 of the paper, pixels at 640x640. The paper prints 161.26 for
# 128 * 2**(1/3) = 161.2699..., every other entry is rounded to 2 decimals.
PAPER_TABLE_2 = [16, 20.16, 25.40, 32, 40.32, 50.80, 64, 80.63, 101.59, 128, 161.26, 203.19, 256, 322.54, 406.37]


def tiny_config():
    """One level, stride 8, one 8-px anchor: a grid small enough to write out."""
    return dataclasses.replace(get_config("mobilenet0.25"), strides=(8,), anchor_sizes=((8.0,),))


def test_two_by_two_grid_by_hand():
    anchors = make_anchors(tiny_config(), (16, 16))
    expected = torch.tensor([[4, 4, 8, 8], [12, 4, 8, 8], [4, 12, 8, 8], [12, 12, 8, 8]], dtype=torch.float32)
    assert torch.equal(anchors, expected)


def test_paper_anchor_count_and_share_at_640():
    anchors = make_anchors(get_config("paper"), (640, 640))
    assert anchors.shape == (102_300, 4)
    table = anchor_table(get_config("paper"), (640, 640))
    assert [row["anchors"] for row in table] == [76_800, 19_200, 4_800, 1_200, 300]
    assert table[0]["share"] == pytest.approx(0.75, abs=0.001)


def test_paper_anchor_sizes_are_table_2():
    anchors = make_anchors(get_config("paper"), (640, 640))
    sizes = torch.unique(anchors[:, 2]).tolist()
    assert len(sizes) == 15
    for size, paper in zip(sizes, PAPER_TABLE_2):
        assert abs(size - paper) < 0.011


def test_public_layout_count_at_640():
    assert make_anchors(get_config("mobilenet0.25"), (640, 640)).shape == (16_800, 4)


def test_order_is_level_then_row_major_then_size():
    cfg = get_config("paper")
    anchors = make_anchors(cfg, (64, 96))
    # first three anchors: three sizes at cell (0, 0) of P2
    assert torch.equal(anchors[:3, :2], torch.tensor([[2.0, 2.0]] * 3))
    assert anchors[:3, 2].tolist() == pytest.approx([16, 20.1587, 25.3984], abs=1e-3)
    # next cell along the row, then the first cell of the next row
    assert anchors[3, :2].tolist() == [6.0, 2.0]
    assert anchors[3 * 24, :2].tolist() == [2.0, 6.0]
    # P3 starts right after all P2 anchors
    p2 = 16 * 24 * 3
    assert anchors[p2, :3].tolist() == [4.0, 4.0, 32.0]


def test_non_square_and_non_multiple_sizes_use_ceil():
    cfg = get_config("paper")
    levels = anchor_levels(cfg, (479, 641))
    assert [level.grid for level in levels] == [(120, 161), (60, 81), (30, 41), (15, 21), (8, 11)]
    anchors = make_anchors(cfg, (479, 641))
    assert len(anchors) == sum(level.count for level in levels) == 3 * (120 * 161 + 60 * 81 + 30 * 41 + 15 * 21 + 8 * 11)
    # the last anchor of P6 sits at cell (7, 10)
    assert anchors[-1, :2].tolist() == [(10 + 0.5) * 64, (7 + 0.5) * 64]


def test_levels_tile_the_flat_layout():
    levels = anchor_levels(get_config("mobilenet0.25"), (300, 500))
    anchors = make_anchors(get_config("mobilenet0.25"), (300, 500))
    for level in levels:
        assert torch.equal(anchors[level.start : level.start + level.count], level.anchors())


@pytest.mark.parametrize("size", [(-640, 640), (640, 0), (640,), "640x640", (640.5, 640), None])
def test_bad_image_size_is_a_clear_error(size):
    with pytest.raises(ValueError, match="image_size"):
        make_anchors(get_config("paper"), size)
