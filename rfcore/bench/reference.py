"""A reference network for ``rfcore bench detect``: MobileNet-0.25 RetinaFace as biubug6 writes it.

**For measuring only; not part of rfcore's model.** This is the layout and
the forward pass of the public PyTorch RetinaFace
(biubug6/Pytorch_Retinaface, ``models/net.py`` and ``models/retinaface.py``),
written here in our own words so that the benchmark can time rfcore's
teaching model against the way the most used PyTorch port computes the same
network, in one process, on the same input. Its ``state_dict`` keys are
those of the public checkpoints, as rfcore's are, so it loads rfcore weights
by name and must give rfcore's outputs (tested).

What it does as biubug6 does: every activation after a convolution runs in
place (``inplace=True``); the context module ends with an out-of-place ReLU
after the concatenation; the pyramid adds the upsampled coarser level to a
new tensor; the heads make their permuted output contiguous and view it. It
returns the raw class logits where biubug6's test mode applies a softmax,
so that the outputs compare one to one with rfcore's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SLOPE = 0.1
"""Leaky ReLU slope of the MobileNet backbone and, at 64 channels, of the pyramid and context modules."""


def conv_norm(inputs: int, outputs: int, kernel: int = 3, stride: int = 1, groups: int = 1, act: bool = True):
    """Convolution without bias, batch norm and (``act``) an in-place leaky ReLU."""
    layers = [nn.Conv2d(inputs, outputs, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(outputs)]
    if act:
        layers.append(nn.LeakyReLU(SLOPE, inplace=True))
    return nn.Sequential(*layers)


def separable(inputs: int, outputs: int, stride: int) -> nn.Sequential:
    """Depthwise 3x3 then pointwise 1x1, each with batch norm and in-place leaky ReLU (six layers)."""
    return nn.Sequential(*conv_norm(inputs, inputs, 3, stride, groups=inputs), *conv_norm(inputs, outputs, 1))


class Backbone(nn.Module):
    """MobileNetV1 at width 0.25; returns the stride-8, 16 and 32 maps."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(
            conv_norm(3, 8, stride=2), separable(8, 16, 1), separable(16, 32, 2), separable(32, 32, 1),
            separable(32, 64, 2), separable(64, 64, 1),
        )
        self.stage2 = nn.Sequential(separable(64, 128, 2), *(separable(128, 128, 1) for _ in range(5)))
        self.stage3 = nn.Sequential(separable(128, 256, 2), separable(256, 256, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(N, 3, H, W)`` -> ``[(N, 64, H/8, W/8), (N, 128, H/16, W/16), (N, 256, H/32, W/32)]``."""
        c3 = self.stage1(x)
        c4 = self.stage2(c3)
        return [c3, c4, self.stage3(c4)]


class Pyramid(nn.Module):
    """Three laterals and two merges; the upsampled level is added into a new tensor."""

    def __init__(self, channels: tuple[int, ...] = (64, 128, 256), width: int = 64) -> None:
        super().__init__()
        self.output1, self.output2, self.output3 = (conv_norm(c, width, 1) for c in channels)
        self.merge1, self.merge2 = conv_norm(width, width), conv_norm(width, width)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Backbone maps, finest first -> pyramid levels of ``width`` channels, finest first."""
        p3, p4, p5 = self.output1(features[0]), self.output2(features[1]), self.output3(features[2])
        p4 = self.merge2(p4 + F.interpolate(p5, size=p4.shape[-2:], mode="nearest"))
        p3 = self.merge1(p3 + F.interpolate(p4, size=p3.shape[-2:], mode="nearest"))
        return [p3, p4, p5]


class Context(nn.Module):
    """SSH: 3x3, 5x5 and 7x7 branches concatenated, then an out-of-place ReLU."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        half, quarter = width // 2, width // 4
        self.conv3X3 = conv_norm(width, half, act=False)
        self.conv5X5_1 = conv_norm(width, quarter)
        self.conv5X5_2 = conv_norm(quarter, quarter, act=False)
        self.conv7X7_2 = conv_norm(quarter, quarter)
        self.conv7x7_3 = conv_norm(quarter, quarter, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> ``(N, C, H, W)``."""
        shared = self.conv5X5_1(x)
        branches = [self.conv3X3(x), self.conv5X5_2(shared), self.conv7x7_3(self.conv7X7_2(shared))]
        return F.relu(torch.cat(branches, dim=1))


class Head(nn.Module):
    """One 1x1 convolution; output permuted, made contiguous and viewed as ``(N, H*W*A, k)``."""

    def __init__(self, values: int, width: int = 64, anchors: int = 2) -> None:
        super().__init__()
        self.values = values
        self.conv1x1 = nn.Conv2d(width, anchors * values, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1).contiguous()  # (N, A*k, H, W) -> (N, H, W, A*k)
        return out.view(out.shape[0], -1, self.values)


class ReferenceRetinaFace(nn.Module):
    """MobileNet-0.25 RetinaFace in biubug6's layout and forward pass (see the module docstring).

    ``forward`` returns ``(logits, box_deltas, landmark_deltas)``, each
    ``(N, A, k)`` in rfcore's anchor order.
    """

    def __init__(self) -> None:
        super().__init__()
        self.body = Backbone()
        self.fpn = Pyramid()
        self.ssh1, self.ssh2, self.ssh3 = Context(), Context(), Context()
        self.ClassHead = nn.ModuleList(Head(2) for _ in range(3))
        self.BboxHead = nn.ModuleList(Head(4) for _ in range(3))
        self.LandmarkHead = nn.ModuleList(Head(10) for _ in range(3))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pyramid = self.fpn(self.body(images))
        features = [self.ssh1(pyramid[0]), self.ssh2(pyramid[1]), self.ssh3(pyramid[2])]
        return tuple(
            torch.cat([head(x) for head, x in zip(heads, features)], dim=1)
            for heads in (self.ClassHead, self.BboxHead, self.LandmarkHead)
        )


def reference_model(state_dict: dict[str, torch.Tensor]) -> ReferenceRetinaFace:
    """The reference network with rfcore MobileNet-0.25 weights (same keys), in evaluation mode."""
    model = ReferenceRetinaFace()
    model.load_state_dict(state_dict)
    return model.eval()
