"""ResNet backbones (He et al. 2016) from torchvision, cut before the classifier.

RetinaFace reads the last map of each residual stage: C2..C5 at strides
4, 8, 16, 32 [paper §4.2]. The layers keep torchvision's names (``conv1``,
``bn1``, ``layer1`` ... ``layer4``), which are also the names in the public
ResNet-50 RetinaFace checkpoint (biubug6/Pytorch_Retinaface keeps them under
``body.``). torchvision's ImageNet weights would be downloaded at run time,
so the network is built with ``weights=None``; a local ImageNet checkpoint
(torchvision's ``resnet50-*.pth`` file, say) can be loaded instead.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from rfcore.files import load_plain_tensors

DEPTHS = ("resnet50", "resnet152")
"""Backbone names accepted by :class:`ResNetBody`."""


def load_imagenet_checkpoint(net: nn.Module, path: str | Path) -> None:
    """Load a local torchvision ImageNet checkpoint into a full ResNet.

    Args:
        net: A torchvision ResNet, classifier included.
        path: File saved with ``torch.save(resnet.state_dict(), path)``; it
            is read with ``weights_only=True``, so it cannot run code.

    Raises:
        ValueError: If the file is not a plain tensor checkpoint or its keys
            do not match ``net``.
    """
    state = load_plain_tensors(path)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state_dict, got {type(state).__name__}")
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{path}: not a matching ResNet checkpoint; missing {missing[:5]}, unexpected {unexpected[:5]}"
        )


class ResNetBody(nn.Module):
    """A torchvision ResNet returning the maps of its four residual stages.

    Args:
        name: ``"resnet50"`` or ``"resnet152"``.
        imagenet_checkpoint: Optional local torchvision ImageNet checkpoint
            to start from; random initialisation otherwise.

    Attributes:
        strides: Stride of each returned map, finest first: ``(4, 8, 16, 32)``.
        out_channels: Channels of each returned map: ``(256, 512, 1024, 2048)``.

    Raises:
        ValueError: If ``name`` is not in :data:`DEPTHS`.
    """

    strides = (4, 8, 16, 32)

    def __init__(self, name: str = "resnet50", imagenet_checkpoint: str | Path | None = None) -> None:
        super().__init__()
        if name not in DEPTHS:
            raise ValueError(f"unknown ResNet {name!r}; expected one of {DEPTHS}")
        net = getattr(torchvision.models, name)(weights=None)
        if imagenet_checkpoint is not None:
            load_imagenet_checkpoint(net, imagenet_checkpoint)
        # Keep the stem and the residual stages; avgpool and fc are dropped.
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.out_channels = tuple(layer[-1].conv3.out_channels for layer in self.stages)

    @property
    def stages(self) -> tuple[nn.Module, ...]:
        """The four residual stages, finest first."""
        return (self.layer1, self.layer2, self.layer3, self.layer4)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Compute C2..C5.

        Args:
            images: ``(N, 3, H, W)`` input.

        Returns:
            ``[C2, C3, C4, C5]`` with shapes ``(N, out_channels[k],
            ceil(H / s_k), ceil(W / s_k))`` for ``s_k`` in :attr:`strides`.
        """
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features
