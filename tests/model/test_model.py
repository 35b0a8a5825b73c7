"""Tests of rfcore.model: layer layout, output shapes and anchor order."""

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
import torchvision

from rfcore.anchors import make_anchors
from rfcore.config import get_config
from rfcore.model import RetinaFace
from rfcore.model.blocks import DeformableConv2d, conv_bn
from rfcore.model.heads import Head, LevelHeads
from rfcore.model.resnet import ResNetBody
from rfcore.model.retinaface import pyramid_layout


@pytest.fixture(scope="module")
def mobilenet():
    torch.manual_seed(0)
    return RetinaFace.from_config(get_config("mobilenet0.25")).eval()


def test_mobilenet_has_426608_parameters(mobilenet):
    assert sum(p.numel() for p in mobilenet.parameters()) == 426_608


@pytest.mark.parametrize("preset", ["mobilenet0.25", "resnet50"])
def test_state_dict_is_the_public_checkpoint_layout(preset, public_layout):
    model = RetinaFace.from_config(get_config(preset))
    layout = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert layout == public_layout[preset]


@pytest.mark.parametrize("batch, height, width", [(1, 640, 640), (2, 479, 641), (1, 33, 17)])
def test_mobilenet_outputs_one_row_per_anchor(mobilenet, batch, height, width):
    cfg = get_config("mobilenet0.25")
    with torch.no_grad():
        out = mobilenet(torch.randn(batch, 3, height, width))
    anchors = len(make_anchors(cfg, (height, width)))
    assert out.logits.shape == (batch, anchors, 2)
    assert out.box_deltas.shape == (batch, anchors, 4)
    assert out.landmark_deltas.shape == (batch, anchors, 10)
    assert out.mesh_params is None


def test_resnet50_outputs_one_row_per_anchor():
    cfg = get_config("resnet50")
    model = RetinaFace.from_config(cfg).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 479, 641))
    assert out.logits.shape == (1, len(make_anchors(cfg, (479, 641))), 2)


@pytest.mark.slow
def test_paper_model_has_102300_anchors_at_640():
    cfg = get_config("paper")
    model = RetinaFace.from_config(cfg).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 640, 640))
    assert out.logits.shape == (1, 102_300, 2)
    assert out.box_deltas.shape == (1, 102_300, 4)
    assert out.landmark_deltas.shape == (1, 102_300, 10)
    assert len(model.fpn.extra) == 1  # P6 from C5
    assert isinstance(model.ssh1.conv3X3[0], DeformableConv2d)


def test_mesh_head_adds_144_values_per_anchor():
    cfg = get_config("mobilenet0.25")
    model = RetinaFace.from_config(cfg, mesh_head=True).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 96))
    assert out.mesh_params.shape == (1, len(make_anchors(cfg, (64, 96))), 144)


@pytest.mark.parametrize("shared", [False, True])
def test_heads_at_a_few_anchors_equal_the_full_heads_there(shared):
    torch.manual_seed(0)
    heads = LevelHeads(num_levels=3, in_channels=8, num_anchors=2, values_per_anchor=5, shared=shared)
    features = [torch.randn(2, 8, side, side + 1, requires_grad=True) for side in (6, 3, 2)]
    full = heads(features)  # (2, 2 * (42 + 12 + 6), 5)
    image = torch.tensor([1, 0, 1, 0, 1, 1])
    anchor = torch.tensor([119, 0, 84, 83, 5, 100])  # all three levels, out of order, both anchors of a cell
    got = heads.at(features, image, anchor)
    torch.testing.assert_close(got, full[image, anchor], rtol=0, atol=1e-6)
    weights = torch.randn(6, 5)
    grads = torch.autograd.grad((got * weights).sum(), [*features, *heads.parameters()])
    expected = torch.autograd.grad((full[image, anchor] * weights).sum(), [*features, *heads.parameters()])
    for ours, theirs in zip(grads, expected):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_heads_at_no_anchor_still_reach_every_parameter():
    heads = LevelHeads(num_levels=2, in_channels=4, num_anchors=2, values_per_anchor=3)
    features = [torch.randn(1, 4, 4, 4), torch.randn(1, 4, 2, 2)]
    got = heads.at(features, torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    assert got.shape == (0, 3)
    got.sum().backward()  # what DistributedDataParallel needs: a gradient, zero, for every head
    assert all(p.grad is not None and not p.grad.any() for p in heads.parameters())


def test_shared_heads_use_one_conv_for_all_levels():
    cfg = dataclasses.replace(get_config("mobilenet0.25"), shared_heads=True)
    model = RetinaFace.from_config(cfg).eval()
    assert len(model.ClassHead) == len(model.BboxHead) == len(model.LandmarkHead) == 1
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 96))
    assert out.landmark_deltas.shape == (1, len(make_anchors(cfg, (64, 96))), 10)


def test_head_rows_follow_cell_then_anchor_order():
    # With an identity 1x1 conv, the head only reorders its input.
    rows, cols, anchors, k = 2, 3, 2, 4
    head = Head(anchors * k, anchors, k)
    with torch.no_grad():
        head.conv1x1.weight.copy_(torch.eye(anchors * k)[:, :, None, None])
        head.conv1x1.bias.zero_()
    values = torch.arange(rows * cols * anchors * k, dtype=torch.float32).reshape(rows, cols, anchors, k)
    # (H, W, A, k) -> (H, W, A*k) -> (1, A*k, H, W): channel a*k + j is value j of anchor a
    features = values.reshape(rows, cols, anchors * k).permute(2, 0, 1)[None]
    out = head(features)[0]
    y, x, a = 1, 2, 1
    assert torch.equal(out[(y * cols + x) * anchors + a], values[y, x, a])
    assert torch.equal(out, values.reshape(-1, k))


def test_fresh_deformable_conv_equals_plain_conv():
    torch.manual_seed(0)
    layer = DeformableConv2d(5, 7)
    x = torch.randn(2, 5, 9, 11)
    plain = F.conv2d(x, layer.conv.weight, padding=1)
    torch.testing.assert_close(layer(x), plain, rtol=1e-5, atol=1e-5)


def test_conv_bn_keeps_ceil_sizes_and_rejects_grouped_deformable():
    block = conv_bn(3, 4, 3, stride=2)
    assert block(torch.randn(1, 3, 7, 9)).shape == (1, 4, 4, 5)
    with pytest.raises(ValueError, match="groups=1"):
        conv_bn(4, 4, groups=4, deformable=True)


def test_forward_rejects_bad_input(mobilenet):
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        mobilenet(torch.randn(3, 64, 64))
    with pytest.raises(ValueError, match="uint8"):
        mobilenet(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


@pytest.mark.parametrize(
    "strides, message",
    [((8, 24, 32), "double"), ((2, 4, 8, 16, 32), "not one of the backbone"), ((4, 8), "stop before")],
)
def test_pyramid_layout_rejects_strides_the_backbone_cannot_give(strides, message):
    with pytest.raises(ValueError, match=message):
        pyramid_layout((4, 8, 16, 32), strides)


def test_pyramid_layout_counts_extra_levels():
    assert pyramid_layout((4, 8, 16, 32), (8, 16, 32)) == (1, 0)
    assert pyramid_layout((4, 8, 16, 32), (4, 8, 16, 32, 64)) == (0, 1)


def test_unknown_backbone_is_rejected():
    cfg = dataclasses.replace(get_config("mobilenet0.25"), backbone="vgg16")
    with pytest.raises(ValueError, match="vgg16"):
        RetinaFace.from_config(cfg)


def test_resnet_loads_a_local_imagenet_checkpoint(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.resnet50(weights=None)
    path = tmp_path / "resnet50.pth"
    torch.save(reference.state_dict(), path)
    body = ResNetBody("resnet50", imagenet_checkpoint=path)
    assert torch.equal(body.layer4[2].conv3.weight, reference.layer4[2].conv3.weight)
    assert not hasattr(body, "fc")


def test_resnet_rejects_a_foreign_checkpoint(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="other.pth"):
        ResNetBody("resnet50", imagenet_checkpoint=path)


def test_in_place_activations_give_the_same_outputs_and_gradients_as_out_of_place():
    torch.manual_seed(0)
    model = RetinaFace.from_config(get_config("mobilenet0.25")).train()
    copy_out_of_place = copy.deepcopy(model)
    for module in copy_out_of_place.modules():
        if isinstance(module, (torch.nn.ReLU, torch.nn.LeakyReLU)):
            module.inplace = False
    assert any(isinstance(m, torch.nn.LeakyReLU) and m.inplace for m in model.modules())
    images = 50 * torch.randn(2, 3, 64, 96)
    losses = [sum(t.square().mean() for t in m(images)[:3]) for m in (model, copy_out_of_place)]
    for loss in losses:
        loss.backward()
    assert torch.allclose(losses[0], losses[1])
    for (name, a), (_, b) in zip(model.named_parameters(), copy_out_of_place.named_parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-6), name
