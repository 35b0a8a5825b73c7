"""Tests of rfcore.model.summary: parameters per stage, feature shapes per level."""

import pytest
import torch

from rfcore.config import get_config
from rfcore.model import RetinaFace
from rfcore.model.summary import level_shapes, parameter_counts, stage_of


@pytest.fixture(scope="module")
def mobilenet():
    return RetinaFace.from_config(get_config("mobilenet0.25"))


def test_mobilenet_parameters_per_stage_add_up_to_426608(mobilenet):
    assert parameter_counts(mobilenet) == {
        "backbone": 213_072,
        "FPN": 103_040,  # laterals 1x1 from 64/128/256 channels, two 3x3 merges, all with batch norm
        "context": 3 * 34_752,
        "heads": 3 * 64 * (2 + 4 + 10) * 2 + 3 * 2 * 16,  # 1x1 convs: weights + biases = 6,240
        "total": 426_608,
    }


def test_mobilenet_shapes_per_level_at_640(mobilenet):
    rows = level_shapes(mobilenet, (640, 640))
    assert rows == [
        {"level": "P3", "stride": 8, "backbone": (64, 80, 80), "FPN": (64, 80, 80), "context": (64, 80, 80),
         "anchors": 12_800},
        {"level": "P4", "stride": 16, "backbone": (128, 40, 40), "FPN": (64, 40, 40), "context": (64, 40, 40),
         "anchors": 3_200},
        {"level": "P5", "stride": 32, "backbone": (256, 20, 20), "FPN": (64, 20, 20), "context": (64, 20, 20),
         "anchors": 800},
    ]
    assert sum(row["anchors"] for row in rows) == 16_800


def test_level_shapes_leaves_modes_and_statistics_alone(mobilenet):
    mobilenet.train()
    mobilenet.body.stage1[0][1].eval()  # a frozen batch norm must stay frozen
    before = {k: v.clone() for k, v in mobilenet.state_dict().items()}
    level_shapes(mobilenet, (33, 17))
    assert mobilenet.training and not mobilenet.body.stage1[0][1].training and mobilenet.fpn.training
    assert all(torch.equal(before[k], v) for k, v in mobilenet.state_dict().items())
    assert all(not module._forward_hooks for module in mobilenet.modules())


def test_paper_model_has_an_extra_level_and_shared_heads():
    model = RetinaFace.from_config(get_config("paper"))
    rows = level_shapes(model, (64, 96))
    assert [row["level"] for row in rows] == ["P2", "P3", "P4", "P5", "P6"]
    assert rows[0]["backbone"] == (256, 16, 24) and rows[3]["backbone"] == (2048, 2, 3)
    assert rows[4]["backbone"] is None and rows[4]["FPN"] == (256, 1, 2)
    assert [row["anchors"] for row in rows] == [16 * 24 * 3, 8 * 12 * 3, 4 * 6 * 3, 2 * 3 * 3, 1 * 2 * 3]
    counts = parameter_counts(model)
    assert counts["heads"] == 256 * 3 * (2 + 4 + 10) + 3 * 16  # one shared head per task
    assert counts["total"] == sum(p.numel() for p in model.parameters())


def test_stage_of_names_the_stage_or_raises():
    assert [stage_of(n) for n in ("body.stage1.0.0.weight", "fpn.merge1.0.weight", "ssh3.conv3X3.0.weight",
                                  "LandmarkHead.2.conv1x1.bias", "MeshHead.0.conv1x1.weight")] == [
        "backbone", "FPN", "context", "heads", "heads"]
    with pytest.raises(ValueError, match="'extra.weight' belongs to no stage"):
        stage_of("extra.weight")
