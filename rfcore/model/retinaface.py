"""RetinaFace: backbone -> feature pyramid -> context modules -> heads [paper §4.2, Fig. 2].

For an ``(N, 3, H, W)`` batch the network predicts, for each of the ``A``
anchors that :func:`rfcore.anchors.make_anchors` lays on an ``H x W`` image,
two face / background logits, four box deltas and ten landmark deltas (and,
optionally, 144 mesh parameters), all in that function's anchor order.

Module names follow the public PyTorch checkpoints
(biubug6/Pytorch_Retinaface): ``body``, ``fpn``, ``ssh1`` ... ``sshL``,
``ClassHead``, ``BboxHead``, ``LandmarkHead``. For the ``"mobilenet0.25"``
and ``"resnet50"`` presets, ``model.state_dict()`` has exactly the keys and
shapes of those checkpoints, so they load by name (:mod:`rfcore.weights`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from rfcore.config import RetinaFaceConfig
from rfcore.model.context import SSH
from rfcore.model.fpn import FPN
from rfcore.model.heads import LevelHeads
from rfcore.model.mobilenet import MobileNetV1
from rfcore.model.resnet import DEPTHS, ResNetBody

MESH_PARAMS = 144
"""Mesh-branch outputs per anchor: 128 shape/texture + 7 camera + 9 light [paper §3.2]."""


class RetinaFaceOutput(NamedTuple):
    """Raw network outputs, one row per anchor in :func:`rfcore.anchors.make_anchors` order.

    Attributes:
        logits: ``(N, A, 2)`` background / face logits; ``softmax(-1)[..., 1]``
            is the face probability.
        box_deltas: ``(N, A, 4)`` encoded boxes; decode with
            :func:`rfcore.boxes.decode_boxes`.
        landmark_deltas: ``(N, A, 10)`` encoded landmarks; decode with
            :func:`rfcore.boxes.decode_landmarks`.
        mesh_params: ``(N, A, 144)`` mesh-branch parameters, or ``None`` when
            the model was built without the mesh head.
    """

    logits: torch.Tensor
    box_deltas: torch.Tensor
    landmark_deltas: torch.Tensor
    mesh_params: torch.Tensor | None = None


def activation_slope(channels: int) -> float:
    """Negative slope of the pyramid and context activations.

    The public code uses a leaky ReLU (slope 0.1) when the pyramid is at
    most 64 channels wide (the MobileNet model, confirmed by its ONNX
    export) and a plain ReLU otherwise (biubug6/Pytorch_Retinaface,
    models/net.py, ``FPN`` and ``SSH``).
    """
    return 0.1 if channels <= 64 else 0.0


def build_backbone(name: str, imagenet_checkpoint: str | Path | None = None) -> nn.Module:
    """Create a backbone by preset name.

    Args:
        name: ``"mobilenet0.25"``, ``"resnet50"`` or ``"resnet152"``.
        imagenet_checkpoint: Optional local ImageNet checkpoint (ResNets only).

    Returns:
        A module with ``strides`` and ``out_channels`` attributes whose forward
        returns one feature map per stride, finest first.

    Raises:
        ValueError: For an unknown name, or a checkpoint for MobileNet.
    """
    if name in DEPTHS:
        return ResNetBody(name, imagenet_checkpoint)
    if name != "mobilenet0.25":
        raise ValueError(f"unknown backbone {name!r}; expected 'mobilenet0.25' or one of {DEPTHS}")
    if imagenet_checkpoint is not None:
        raise ValueError("loading an ImageNet checkpoint is supported for ResNet backbones only")
    return MobileNetV1(width=0.25)


def pyramid_layout(backbone_strides: Sequence[int], strides: Sequence[int]) -> tuple[int, int]:
    """Match the pyramid strides to the backbone maps.

    Args:
        backbone_strides: Strides of the backbone maps, finest first.
        strides: Strides of the pyramid levels, finest first.

    Returns:
        ``(first, extra)``: the index of the first backbone map the pyramid
        uses (it then uses all coarser ones) and the number of extra
        stride-2 levels above the coarsest backbone map.

    Raises:
        ValueError: If the strides do not double from level to level, or do
            not start at a backbone stride and reach its coarsest one.
    """
    strides, backbone_strides = tuple(strides), tuple(backbone_strides)
    if any(coarse != 2 * fine for fine, coarse in zip(strides, strides[1:])):
        raise ValueError(f"pyramid strides must double from level to level, got {strides}")
    if strides[0] not in backbone_strides:
        raise ValueError(f"finest stride {strides[0]} is not one of the backbone strides {backbone_strides}")
    first = backbone_strides.index(strides[0])
    used = len(backbone_strides) - first
    if len(strides) < used:
        raise ValueError(
            f"pyramid strides {strides} stop before the coarsest backbone stride {backbone_strides[-1]}"
        )
    return first, len(strides) - used


class RetinaFace(nn.Module):
    """The single-stage face detector.

    Args:
        backbone: Module with ``strides`` and ``out_channels`` attributes
            returning feature maps finest first (see :func:`build_backbone`).
        strides: Pyramid strides, finest first; levels above the coarsest
            backbone map are made by stride-2 convolutions (the paper's P6).
        channels: Width of the pyramid, context modules and head inputs.
        anchors_per_location: Anchors per feature-map cell.
        deformable: Deformable 3x3 convolutions in the pyramid merges and the
            context modules [paper §4.2].
        shared_heads: One set of heads for all levels instead of one per level.
        mesh_head: Add the mesh-parameter head (144 values per anchor) of the
            dense regression branch [paper §3.2]; off by default, and the
            public checkpoints have none.
    """

    def __init__(
        self,
        backbone: nn.Module,
        strides: Sequence[int],
        channels: int,
        anchors_per_location: int,
        deformable: bool = False,
        shared_heads: bool = False,
        mesh_head: bool = False,
    ) -> None:
        super().__init__()
        self.first_level, extra_levels = pyramid_layout(backbone.strides, strides)
        self.strides = tuple(strides)
        self.anchors_per_location = anchors_per_location
        slope = activation_slope(channels)
        self.body = backbone
        self.fpn = FPN(backbone.out_channels[self.first_level :], channels, extra_levels, slope, deformable)
        # Numbered attributes rather than a ModuleList: the checkpoints call them ssh1, ssh2, ...
        for k in range(1, len(strides) + 1):
            setattr(self, f"ssh{k}", SSH(channels, slope, deformable))
        heads = dict(
            num_levels=len(strides), in_channels=channels, num_anchors=anchors_per_location, shared=shared_heads
        )
        self.ClassHead = LevelHeads(values_per_anchor=2, **heads)
        self.BboxHead = LevelHeads(values_per_anchor=4, **heads)
        self.LandmarkHead = LevelHeads(values_per_anchor=10, **heads)
        self.MeshHead = LevelHeads(values_per_anchor=MESH_PARAMS, **heads) if mesh_head else None

    @property
    def mesh_head(self) -> LevelHeads | None:
        """The mesh head (its tensors are ``MeshHead.*`` in weights files), or ``None``."""
        return self.MeshHead

    def detach_mesh_head(self) -> LevelHeads | None:
        """Take the mesh head out of the network and return it; the network then predicts no mesh."""
        head, self.MeshHead = self.MeshHead, None
        return head

    @classmethod
    def from_config(
        cls, cfg: RetinaFaceConfig, mesh_head: bool = False, imagenet_checkpoint: str | Path | None = None
    ) -> RetinaFace:
        """Build the network a preset describes.

        Args:
            cfg: Preset (see :func:`rfcore.config.get_config`).
            mesh_head: Add the mesh-parameter head.
            imagenet_checkpoint: Optional local ImageNet checkpoint for a
                ResNet backbone.

        Returns:
            A randomly initialised :class:`RetinaFace` (backbone from the
            checkpoint if one is given).
        """
        return cls(
            build_backbone(cfg.backbone, imagenet_checkpoint),
            strides=cfg.strides,
            channels=cfg.fpn_channels,
            anchors_per_location=cfg.anchors_per_location,
            deformable=cfg.deformable,
            shared_heads=cfg.shared_heads,
            mesh_head=mesh_head,
        )

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Backbone, feature pyramid and context modules: what the heads read.

        Args:
            images: ``(N, 3, H, W)`` float batch, preprocessed as the preset
                says (BGR, mean subtracted; see ``cfg.pixel_mean_bgr``).

        Returns:
            One ``(N, channels, ceil(H / s), ceil(W / s))`` map per pyramid
            stride ``s``, finest first.

        Raises:
            ValueError: If ``images`` is not a floating ``(N, 3, H, W)`` tensor.
        """
        if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
            shape = tuple(images.shape)
            raise ValueError(f"expected a float (N, 3, H, W) batch, got {images.dtype} of shape {shape}")
        features = self.body(images)[self.first_level :]
        pyramid = self.fpn(features)
        return [getattr(self, f"ssh{k}")(level) for k, level in enumerate(pyramid, start=1)]

    def forward(self, images: torch.Tensor, mesh: bool = True) -> RetinaFaceOutput:
        """Run the detector.

        Args:
            images: ``(N, 3, H, W)`` float batch, preprocessed as the preset
                says (BGR, mean subtracted; see ``cfg.pixel_mean_bgr``).
            mesh: Run the mesh head (if there is one) on every anchor; training
                passes ``False`` and runs it only where ``L_pixel`` needs it
                (:meth:`LevelHeads.at <rfcore.model.heads.LevelHeads.at>` on the
                :meth:`features`).

        Returns:
            :class:`RetinaFaceOutput` with ``A`` = number of anchors of an
            ``H x W`` image.

        Raises:
            ValueError: If ``images`` is not a floating ``(N, 3, H, W)`` tensor.
        """
        return self.predict(self.features(images), mesh)

    def predict(self, context: Sequence[torch.Tensor], mesh: bool = True) -> RetinaFaceOutput:
        """The heads on :meth:`features` ``context``; ``mesh`` as in :meth:`forward`."""
        return RetinaFaceOutput(
            logits=self.ClassHead(context),
            box_deltas=self.BboxHead(context),
            landmark_deltas=self.LandmarkHead(context),
            mesh_params=self.MeshHead(context) if mesh and self.MeshHead is not None else None,
        )
