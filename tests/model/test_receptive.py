"""Receptive fields: the recurrence on hand-sized stacks, and the traced fields of the real networks."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rfcore.config import get_config
from rfcore.model import RetinaFace
from rfcore.model.context import SSH
from rfcore.model.mobilenet import MobileNetV1
from rfcore.model.receptive import (
    PIXEL,
    ReceptiveField,
    layer_table,
    level_receptive_fields,
    stack_receptive_field,
    traced_receptive_fields,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Small traces run fastest on one thread."""


def test_stack_by_hand():
    # 3x3 s1: 3; 3x3 s2: 3 + 2 = 5, jump 2; 3x3 dilation 2 at jump 2: 5 + 2 * 2 * 2 = 13
    assert stack_receptive_field([(3, 1, 1)]) == ReceptiveField(3, 1)
    assert stack_receptive_field([(3, 1, 1), (3, 2, 1)]) == ReceptiveField(5, 2)
    assert stack_receptive_field([(3, 1, 1), (3, 2, 1), (3, 1, 2)]) == ReceptiveField(13, 2)
    assert stack_receptive_field([(1, 2, 1), (1, 2, 1)]) == ReceptiveField(1, 4)  # 1x1 convs see one pixel
    assert stack_receptive_field([]) == PIXEL
    assert stack_receptive_field([(3, 1, 1)], start=ReceptiveField(7, 4)) == ReceptiveField(15, 4)


@pytest.mark.parametrize("layer", [(0, 1, 1), (3, 0, 1), (3, 1), (3.0, 1, 1)])
def test_stack_rejects_bad_layers(layer):
    with pytest.raises(ValueError, match="layer 1"):
        stack_receptive_field([(3, 1, 1), layer])


def test_traced_conv_and_pool_equal_the_recurrence():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, 2, 1), nn.ReLU(), nn.MaxPool2d(3, 2, 1), nn.Conv2d(2, 2, 3, dilation=2))
    (field,) = traced_receptive_fields(net.eval(), [torch.zeros(1, 1, 32, 32)], [PIXEL])
    # 3; 3 + 2 * 2 = 7 at jump 4; 7 + 2 * 2 * 4 = 23
    assert field == stack_receptive_field([(3, 2, 1), (3, 2, 1), (3, 1, 2)]) == ReceptiveField(23, 4)


class _TwoBranches(nn.Module):
    """A 3x3 stride-2 branch up-sampled back and added to a 1x1 branch, then a 3x3 conv."""

    def __init__(self):
        super().__init__()
        self.coarse, self.fine, self.merge = nn.Conv2d(1, 1, 3, 2, 1), nn.Conv2d(1, 1, 1), nn.Conv2d(1, 1, 3, 1, 1)

    def forward(self, x):
        return self.merge(self.fine(x) + F.interpolate(self.coarse(x), scale_factor=2, mode="nearest"))


def test_traced_union_of_branches_and_upsampling():
    (field,) = traced_receptive_fields(_TwoBranches().eval(), [torch.zeros(1, 1, 16, 16)], [PIXEL])
    # coarse branch sees 3 pixels; up-sampling keeps 3 at jump 1; the union with 1 is 3; the merge adds 2
    assert field == ReceptiveField(5, 1)


def test_traced_fields_start_from_the_given_ones():
    conv = nn.Conv2d(1, 1, 3, padding=1)
    (field,) = traced_receptive_fields(conv, [torch.zeros(1, 1, 8, 8)], [ReceptiveField(11, 4)])
    assert field == ReceptiveField(11 + 2 * 4, 4)


def test_ssh_adds_three_3x3_convs():
    ssh = SSH(8).eval()
    (field,) = traced_receptive_fields(ssh, [torch.zeros(1, 8, 9, 9)], [ReceptiveField(10, 8)])
    assert field == ReceptiveField(10 + 3 * 2 * 8, 8)  # the 7x7 branch: three 3x3 convs
    (deformable,) = traced_receptive_fields(SSH(8, deformable=True).eval(), [torch.zeros(1, 8, 9, 9)], [PIXEL])
    assert deformable == ReceptiveField(7, 1, deformable=True)


def test_unknown_operation_is_named():
    with pytest.raises(ValueError, match="avg_pool2d"):
        traced_receptive_fields(nn.AvgPool2d(3), [torch.zeros(1, 1, 9, 9)], [PIXEL])


def test_batch_norm_in_training_mode_is_refused():
    with pytest.raises(ValueError, match="eval mode"):
        traced_receptive_fields(nn.BatchNorm2d(1).train(), [torch.zeros(2, 1, 4, 4)], [PIXEL])


def test_fields_must_match_inputs():
    with pytest.raises(ValueError, match="differ in number"):
        traced_receptive_fields(nn.Identity(), [torch.zeros(1, 1, 4, 4)], [PIXEL, PIXEL])


def test_mobilenet_by_hand():
    # stem 3x3 s2 then 13 blocks of depthwise 3x3 (stride s) + pointwise 1x1; only the 3x3s grow the field
    strides = [s for stage in ((1, 2, 1, 2, 1), (2, 1, 1, 1, 1, 1), (2, 1)) for s in stage]
    layers = [(3, 2, 1)] + [(3, s, 1) for s in strides]
    assert stack_receptive_field(layers) == ReceptiveField(315, 32)  # MobileNetV1's published 315
    rows = level_receptive_fields(RetinaFace.from_config(get_config("mobilenet0.25")))
    assert [row["backbone"] for row in rows] == [43, 219, 315]
    # P5 = lateral(C5); P4 = merge(lateral(C4) + up(P5)) adds 2 * 16; P3 adds 2 * 8; SSH adds 3 * 2 * stride
    assert [row["FPN"] for row in rows] == [315 + 32 + 16, 315 + 32, 315]
    assert [row["context"] for row in rows] == [363 + 48, 347 + 96, 315 + 192]
    assert not any(row["deformable"] for row in rows)


@pytest.mark.slow
def test_resnet50_and_paper_levels():
    # torchvision ResNet-50 strides in the 3x3 conv of a bottleneck (v1.5): 7 + 4 + 3*8 + (8 + 3*16) + ... = 427
    rows = level_receptive_fields(RetinaFace.from_config(get_config("paper")))
    assert [row["level"] for row in rows] == ["P2", "P3", "P4", "P5", "P6"]
    assert [row["backbone"] for row in rows] == [35, 91, 267, 427, None]
    assert rows[-1]["FPN"] == 427 + 2 * 32  # P6: 3x3 stride-2 conv on C5
    assert rows[-1]["context"] == 491 + 3 * 2 * 64
    assert all(row["deformable"] for row in rows)


def test_level_fields_need_a_multiple_of_the_coarsest_stride():
    with pytest.raises(ValueError, match="multiple of 32"):
        level_receptive_fields(RetinaFace.from_config(get_config("mobilenet0.25")), (100, 128))


def test_layer_table_chains_to_the_backbone_output():
    body = MobileNetV1().eval()
    image = torch.randn(1, 3, 64, 64)
    rows = layer_table(body.named_children(), image)
    assert [row["layer"] for row in rows] == ["stage1", "stage2", "stage3"]
    assert [row["output"] for row in rows] == [tuple(c.shape[1:]) for c in body(image)]
    assert [row["stride"] for row in rows] == [8, 16, 32]
    assert [row["receptive field"] for row in rows] == [43, 219, 315]
    assert sum(row["parameters"] for row in rows) == sum(p.numel() for p in body.parameters())
