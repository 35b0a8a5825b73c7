"""MobileNet-0.25, the light-weight backbone of RetinaFace [paper §4.8].

MobileNetV1 (Howard et al. 2017) factorises each 3x3 convolution into a
depthwise 3x3 convolution (one filter per channel) and a pointwise 1x1
convolution that mixes channels; the width multiplier 0.25 keeps a quarter
of the channels. The layer table and the leaky ReLU (slope 0.1) after every
convolution follow biubug6/Pytorch_Retinaface (models/net.py), whose
checkpoint keys ``body.stage{1,2,3}.<block>.<layer>`` this module reproduces.
"""

from __future__ import annotations

import torch
from torch import nn

from rfcore.model.blocks import conv_bn

NEGATIVE_SLOPE = 0.1
"""Leaky ReLU slope of every backbone convolution (confirmed by the ONNX export)."""

STEM_CHANNELS = 32
"""Output channels of the first (full) 3x3 stride-2 convolution at width 1."""

STAGES = (
    ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1)),
    ((512, 2), (512, 1), (512, 1), (512, 1), (512, 1), (512, 1)),
    ((1024, 2), (1024, 1)),
)
"""``(out_channels at width 1, stride)`` of the depthwise-separable blocks of
each stage. Stage 1 (after the stem) ends at stride 8, stage 2 at 16, stage 3
at 32: the inputs C3, C4, C5 of the feature pyramid."""


def depthwise_separable(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """Depthwise 3x3 conv + BN + act, then pointwise 1x1 conv + BN + act.

    The two halves are flattened into one ``nn.Sequential`` of six layers,
    so the convolutions sit at indices 0 and 3 as in the public checkpoints.
    """
    depthwise = conv_bn(in_channels, in_channels, 3, stride, groups=in_channels, negative_slope=NEGATIVE_SLOPE)
    pointwise = conv_bn(in_channels, out_channels, 1, negative_slope=NEGATIVE_SLOPE)
    return nn.Sequential(*depthwise, *pointwise)


class MobileNetV1(nn.Module):
    """MobileNetV1 without its classifier, returning the last map of each stage.

    Args:
        width: Width multiplier applied to every layer's channels.

    Attributes:
        strides: Stride of each returned map, finest first: ``(8, 16, 32)``.
        out_channels: Channels of each returned map (``(64, 128, 256)`` at
            width 0.25).
    """

    strides = (8, 16, 32)

    def __init__(self, width: float = 0.25) -> None:
        super().__init__()
        channels = int(STEM_CHANNELS * width)
        # The stem opens stage 1; each stage then stacks its separable blocks.
        stages = [[conv_bn(3, channels, 3, stride=2, negative_slope=NEGATIVE_SLOPE)], [], []]
        out_channels = []
        for layers, blocks in zip(stages, STAGES):
            for base, stride in blocks:
                layers.append(depthwise_separable(channels, int(base * width), stride))
                channels = int(base * width)
            out_channels.append(channels)
        self.stage1, self.stage2, self.stage3 = (nn.Sequential(*layers) for layers in stages)
        self.out_channels = tuple(out_channels)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Compute the stride-8, 16 and 32 feature maps.

        Args:
            images: ``(N, 3, H, W)`` input.

        Returns:
            ``[C3, C4, C5]`` with shapes ``(N, out_channels[k], ceil(H / s_k),
            ceil(W / s_k))`` for ``s_k`` in :attr:`strides`.
        """
        c3 = self.stage1(images)
        c4 = self.stage2(c3)
        c5 = self.stage3(c4)
        return [c3, c4, c5]
