"""Tests of rfcore.model.fuse: folded batch norm, merged heads, the fused network."""

from pathlib import Path

import pytest
import torch
from torch import nn

from rfcore.config import get_config
from rfcore.model import RetinaFace
from rfcore.model.blocks import DeformableConv2d
from rfcore.model.fuse import conv_bn_pairs, fold_batch_norm, fuse_for_inference
from rfcore.weights_io import load_weights

SHIPPED = Path(__file__).resolve().parents[2] / "assets" / "weights" / "retinaface_mobilenet0.25.safetensors"


def randomise_batch_norms(model, seed=0):
    """Give every batch norm non-trivial statistics, so that folding has something to fold."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                size = module.num_features
                module.running_mean.copy_(torch.rand(size, generator=generator) - 0.5)
                module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(size, generator=generator) - 0.5)
    return model.eval()


@pytest.mark.parametrize(
    "conv, in_channels",
    [
        (nn.Conv2d(3, 6, 3, padding=1, bias=True), 3),
        (nn.Conv2d(6, 6, 3, groups=6, bias=False), 6),  # depthwise, no bias
        (DeformableConv2d(3, 6), 3),
    ],
)
def test_fold_batch_norm_computes_conv_then_bn(conv, in_channels):
    bn = randomise_batch_norms(nn.Sequential(nn.BatchNorm2d(6)))[0]
    x = torch.randn(2, in_channels, 9, 11)
    with torch.no_grad():
        expected = bn(conv(x))
        folded = fold_batch_norm(conv, bn)
        assert (folded(x) - expected).abs().max() < 1e-5
    assert folded is not conv


@pytest.mark.slow
def test_shipped_model_fused_equals_unfused():
    model = RetinaFace.from_config(get_config("mobilenet0.25"))
    load_weights(model, SHIPPED)
    model.eval()
    fused = fuse_for_inference(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    for shape in [(1, 3, 480, 640), (2, 3, 97, 131)]:
        images = 50 * torch.randn(*shape)
        with torch.inference_mode():
            expected, got = model(images), fused(images)
        assert got.mesh_params is None
        for a, b in zip(expected[:3], got[:3]):
            assert a.shape == b.shape
            assert (a - b).abs().max() < 1e-4


@pytest.mark.parametrize("preset", ["resnet50", "paper"])
@pytest.mark.slow
def test_other_presets_fuse_with_mesh_head(preset):
    torch.manual_seed(0)
    model = randomise_batch_norms(RetinaFace.from_config(get_config(preset), mesh_head=True))
    pairs = list(conv_bn_pairs(model))
    assert len(pairs) == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # every BN found
    images = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        expected, got = model(images), fuse_for_inference(model)(images)
    for a, b in zip(expected, got):
        assert (a - b).abs().max() < 1e-5 * a.abs().max().clamp(min=1)
