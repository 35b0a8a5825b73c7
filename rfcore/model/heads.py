"""Prediction heads: a 1x1 convolution per pyramid level [paper §4.2, "Loss Head"].

At every cell of a level with ``A`` anchors per location, a head predicts
``k`` numbers per anchor: ``k = 2`` face / background logits, ``k = 4`` box
deltas, ``k = 10`` landmark deltas, or ``k = 144`` mesh parameters
[paper §3.2: 128 shape and texture, 7 camera, 9 illumination].

The outputs of all levels are flattened to one row per anchor, in the order
of :func:`rfcore.anchors.make_anchors`: level, then row-major cell
``(y, x)``, then anchor. The MobileNet and ResNet-50 checkpoints have one
head per level; the paper shares one head across levels.

Names follow the public checkpoints (biubug6/Pytorch_Retinaface,
models/retinaface.py): ``<HeadName>.<level>.conv1x1``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Head(nn.Module):
    """A 1x1 convolution predicting ``values_per_anchor`` numbers per anchor.

    Args:
        in_channels: Channels of the pyramid features.
        num_anchors: Anchors per location ``A``.
        values_per_anchor: Numbers predicted per anchor ``k``.
    """

    def __init__(self, in_channels: int, num_anchors: int, values_per_anchor: int) -> None:
        super().__init__()
        self.values_per_anchor = values_per_anchor
        self.conv1x1 = nn.Conv2d(in_channels, num_anchors * values_per_anchor, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict for every anchor of one level.

        Args:
            x: ``(N, C, H, W)`` features of one level.

        Returns:
            ``(N, H * W * A, k)`` predictions, row-major cells, then anchors.
        """
        out = self.conv1x1(x)
        # (N, A*k, H, W) -> (N, H, W, A*k) -> (N, H*W*A, k)
        return out.permute(0, 2, 3, 1).reshape(out.shape[0], -1, self.values_per_anchor)


class LevelHeads(nn.ModuleList):
    """One :class:`Head` per pyramid level, or one shared by all levels.

    Args:
        num_levels: Number of pyramid levels.
        in_channels: Channels of the pyramid features.
        num_anchors: Anchors per location.
        values_per_anchor: Numbers predicted per anchor.
        shared: Use a single head on every level [paper §4.2].
    """

    def __init__(
        self, num_levels: int, in_channels: int, num_anchors: int, values_per_anchor: int, shared: bool = False
    ) -> None:
        count = 1 if shared else num_levels
        super().__init__(Head(in_channels, num_anchors, values_per_anchor) for _ in range(count))
        self.num_levels = num_levels

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Predict for every anchor of every level.

        Args:
            features: ``(N, C, H_l, W_l)`` maps, finest level first.

        Returns:
            ``(N, sum_l H_l * W_l * A, k)`` predictions in anchor order.

        Raises:
            ValueError: If the number of maps is not ``num_levels``.
        """
        if len(features) != self.num_levels:
            raise ValueError(f"heads built for {self.num_levels} levels, got {len(features)} feature maps")
        return torch.cat([head(x) for head, x in zip(self.per_level(), features)], dim=1)

    def per_level(self) -> list[Head]:
        """The head applied to each level, finest first (the same one repeated when shared)."""
        return list(self) if len(self) == self.num_levels else [self[0]] * self.num_levels

    def at(self, features: Sequence[torch.Tensor], image: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
        """Predict for a few anchors only: ``forward(features)[image, anchor]`` without the other anchors.

        A 1x1 convolution at one cell is a matrix product with that cell's
        feature vector, so the few anchors a loss needs (the mesh branch
        renders a handful of positives) cost next to nothing, where
        :meth:`forward` computes every anchor of every image.

        Args:
            features: ``(N, C, H_l, W_l)`` maps, finest level first.
            image: ``(P,)`` image index of each wanted anchor.
            anchor: ``(P,)`` anchor index in :func:`rfcore.anchors.make_anchors` order.

        Returns:
            ``(P, k)`` predictions, row ``p`` for ``(image[p], anchor[p])``.
        """
        rows, values = [], []
        start = 0
        for head, x in zip(self.per_level(), features):
            conv = head.conv1x1
            per_cell = conv.out_channels // head.values_per_anchor  # A
            end = start + x.shape[2] * x.shape[3] * per_cell
            row = ((anchor >= start) & (anchor < end)).nonzero()[:, 0]  # may be empty: keeps every head in the graph
            local = anchor[row] - start
            cell, slot = local // per_cell, local % per_cell
            vectors = x[image[row], :, cell // x.shape[3], cell % x.shape[3]]  # (P_l, C)
            # every anchor of the cell at once, then the wanted one: (P_l, A*k) -> (P_l, A, k) -> (P_l, k)
            cells = nn.functional.linear(vectors, conv.weight.flatten(1), conv.bias)
            values.append(cells.unflatten(1, (per_cell, head.values_per_anchor))[torch.arange(len(row)), slot])
            rows.append(row)
            start = end
        order = torch.cat(rows)
        return torch.cat(values)[torch.argsort(order)]
