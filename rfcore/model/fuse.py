"""The inference form of a trained RetinaFace: same outputs, less work (:func:`fuse_for_inference`).

Three rewrites, each exact up to float rounding, make eager PyTorch inference on a CPU faster:

1. batch norm folded into the convolution before it (:func:`fold_batch_norm`): in evaluation mode
   ``BN(conv(x))`` is one convolution with ``W' = W s``, ``b' = beta + (b - mu) s``,
   ``s = gamma / sqrt(var + eps)`` per output channel;
2. the class, box and landmark heads of a level, which read the same features, merged into one 1x1
   convolution whose output is split afterwards (:func:`merge_convs`);
3. the channels_last memory layout, on which oneDNN's convolutions run natively.

``rfcore bench detect`` measures the plain and the fused form. The result is for inference only (no
batch norm left to train).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from rfcore.model.blocks import DeformableConv2d
from rfcore.model.heads import LevelHeads
from rfcore.model.retinaface import RetinaFace, RetinaFaceOutput


@torch.no_grad()
def fold_batch_norm(conv: nn.Module, bn: nn.BatchNorm2d) -> nn.Module:
    """A copy of ``conv`` that computes ``bn(conv(x))`` of the evaluation-mode batch norm.

    Args:
        conv: ``nn.Conv2d`` or :class:`~rfcore.model.blocks.DeformableConv2d`
            with or without bias.
        bn: The batch norm that follows it.

    Returns:
        A new convolution of the same type, with a bias.
    """
    fused = copy.deepcopy(conv)
    target = fused.conv if isinstance(fused, DeformableConv2d) else fused
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
    bias = torch.zeros_like(bn.running_mean) if target.bias is None else target.bias
    # (C_out, C_in / groups, k, k) scaled per output channel
    target.weight = nn.Parameter(target.weight * scale[:, None, None, None])
    target.bias = nn.Parameter(bn.bias + (bias - bn.running_mean) * scale)
    return fused


def conv_bn_pairs(model: nn.Module) -> Iterator[tuple[nn.Module, str, str]]:
    """Every convolution directly followed by a batch norm, as ``(parent, conv_name, bn_name)``.

    Two layouts occur in rfcore's networks: neighbours in an ``nn.Sequential``
    (:func:`rfcore.model.blocks.conv_bn`, torchvision's ``downsample``) and
    torchvision ResNet's sibling attributes ``conv<k>`` / ``bn<k>``.
    """
    convs = (nn.Conv2d, DeformableConv2d)
    for parent in model.modules():
        children = list(parent.named_children())
        if isinstance(parent, nn.Sequential):
            for (conv_name, conv), (bn_name, bn) in zip(children, children[1:]):
                if isinstance(conv, convs) and isinstance(bn, nn.BatchNorm2d):
                    yield parent, conv_name, bn_name
        else:
            named = dict(children)
            for name, conv in children:
                bn_name = "bn" + name.removeprefix("conv")
                bn = named.get(bn_name)
                if name.startswith("conv") and isinstance(conv, convs) and isinstance(bn, nn.BatchNorm2d):
                    yield parent, name, bn_name


def fold_batch_norms(model: nn.Module) -> nn.Module:
    """Fold every batch norm of ``model`` into its convolution, in place.

    Each batch norm is replaced by ``nn.Identity`` so that module names (and
    the ``Sequential`` indices the checkpoints use) stay where they were.

    Returns:
        ``model``, for chaining.
    """
    for parent, conv_name, bn_name in list(conv_bn_pairs(model)):
        setattr(parent, conv_name, fold_batch_norm(getattr(parent, conv_name), getattr(parent, bn_name)))
        setattr(parent, bn_name, nn.Identity())
    return model


def merge_convs(convs: Sequence[nn.Conv2d]) -> nn.Conv2d:
    """One 1x1 convolution computing ``torch.cat([c(x) for c in convs], dim=1)``."""
    merged = nn.Conv2d(convs[0].in_channels, sum(c.out_channels for c in convs), kernel_size=1)
    with torch.no_grad():
        merged.weight.copy_(torch.cat([c.weight for c in convs]))
        merged.bias.copy_(torch.cat([c.bias for c in convs]))
    return merged


class MergedHeads(nn.Module):
    """Several :class:`~rfcore.model.heads.LevelHeads` run as one 1x1 convolution per level.

    Args:
        heads: The heads to merge (class, box, landmark[, mesh]), all built
            for the same levels and anchors per location.
    """

    def __init__(self, heads: Sequence[LevelHeads]) -> None:
        super().__init__()
        per_level = [h.per_level() for h in heads]  # [head][level]
        self.values_per_anchor = tuple(h[0].values_per_anchor for h in per_level)
        self.channels = [h[0].conv1x1.out_channels for h in per_level]
        self.levels = nn.ModuleList(
            merge_convs([h[level].conv1x1 for h in per_level]) for level in range(heads[0].num_levels)
        )

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Predict for every anchor of every level.

        Args:
            features: ``(N, C, H_l, W_l)`` maps, finest level first.

        Returns:
            One ``(N, A, k)`` tensor per merged head, in anchor order.
        """
        batch = features[0].shape[0]
        # per level: (N, sum A*k, H, W) -> (N, H, W, sum A*k) -> one (N, H, W, A*k) per head
        parts = [conv(x).permute(0, 2, 3, 1).split(self.channels, dim=-1) for conv, x in zip(self.levels, features)]
        return [
            # (N, H, W, A*k) -> (N, H*W*A, k), then all levels
            torch.cat([level[i].reshape(batch, -1, k) for level in parts], dim=1)
            for i, k in enumerate(self.values_per_anchor)
        ]


class FusedRetinaFace(nn.Module):
    """A :class:`~rfcore.model.RetinaFace` rewritten for inference (see the module docstring).

    Build it with :func:`fuse_for_inference`. Its forward takes and returns
    exactly what ``RetinaFace.forward`` does.

    Args:
        trunk: A RetinaFace whose batch norms are folded; its own heads are
            dropped.
        heads: The merged heads.
    """

    def __init__(self, trunk: RetinaFace, heads: MergedHeads) -> None:
        super().__init__()
        trunk.ClassHead = trunk.BboxHead = trunk.LandmarkHead = trunk.MeshHead = None
        self.trunk = trunk
        self.heads = heads

    def forward(self, images: torch.Tensor) -> RetinaFaceOutput:
        """Run the detector: ``(N, 3, H, W)`` -> :class:`~rfcore.model.RetinaFaceOutput`."""
        return self.predict(self.features(images))

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """What the heads read, as :meth:`RetinaFace.features <rfcore.model.RetinaFace.features>`."""
        return self.trunk.features(images)

    def predict(self, context: Sequence[torch.Tensor]) -> RetinaFaceOutput:
        """The merged heads on :meth:`features` ``context``."""
        return RetinaFaceOutput(*self.heads(context))


def fuse_for_inference(model: RetinaFace) -> FusedRetinaFace:
    """The inference form of ``model``: batch norm folded, heads merged, channels_last.

    Args:
        model: A RetinaFace (left unchanged).

    Returns:
        A :class:`FusedRetinaFace` in evaluation mode whose outputs equal the
        model's in evaluation mode up to float rounding (about 1e-5).
    """
    trunk = fold_batch_norms(copy.deepcopy(model).eval())
    heads = [h for h in (trunk.ClassHead, trunk.BboxHead, trunk.LandmarkHead, trunk.MeshHead) if h is not None]
    fused = FusedRetinaFace(trunk, MergedHeads(heads))
    return fused.to(memory_format=torch.channels_last).eval()
