import dataclasses

import pytest

from rfcore.config import PRESETS, get_config, paper_anchor_sizes


def test_presets_are_looked_up_by_name():
    assert get_config("paper").strides == (4, 8, 16, 32, 64)
    assert get_config("mobilenet0.25").strides == (8, 16, 32)


def test_unknown_preset_lists_valid_names():
    with pytest.raises(ValueError) as err:
        get_config("mobilenet")
    message = str(err.value)
    assert "'mobilenet'" in message
    for name in PRESETS:
        assert repr(name) in message


def test_presets_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_config("paper").pos_iou = 0.7


def test_paper_preset_matches_the_paper():
    cfg = get_config("paper")
    assert cfg.level_names == ("P2", "P3", "P4", "P5", "P6")
    assert (cfg.pos_iou, cfg.neg_iou, cfg.ohem_ratio) == (0.5, 0.3, 3)
    assert (cfg.lambda_box, cfg.lambda_pts, cfg.lambda_pixel) == (0.25, 0.1, 0.01)
    assert cfg.anchors_per_location == 3


def test_public_layout_preset_matches_the_public_weights():
    cfg = get_config("mobilenet0.25")
    assert cfg.anchor_sizes == ((16, 32), (64, 128), (256, 512))
    assert cfg.variances == (0.1, 0.2)
    assert cfg.pos_iou == cfg.neg_iou == 0.35
    assert cfg.ohem_ratio == 7
    assert cfg.level_names == ("P3", "P4", "P5")


def test_paper_anchor_sizes_step_by_cube_root_of_two():
    sizes = [s for level in paper_anchor_sizes() for s in level]
    ratios = [b / a for a, b in zip(sizes, sizes[1:])]
    assert all(abs(r - 2 ** (1 / 3)) < 1e-12 for r in ratios)


def test_inconsistent_config_is_rejected():
    with pytest.raises(ValueError, match="neg_iou"):
        dataclasses.replace(get_config("paper"), neg_iou=0.6)
    with pytest.raises(ValueError, match="anchor size groups"):
        dataclasses.replace(get_config("paper"), strides=(4, 8))
