"""Context module on every pyramid level (SSH, Najibi et al. 2017) [paper §4.2].

A tiny face covers a few cells of the stride-8 map; the detector sees it
better with some surroundings. The context module runs three branches in
parallel and concatenates them: one 3x3 convolution, two stacked 3x3
convolutions (a 5x5 receptive field) and three stacked 3x3 convolutions (a
7x7 receptive field). The 5x5 and 7x7 branches share their first
convolution. With ``C`` output channels the branches contribute ``C/2``,
``C/4`` and ``C/4``; a ReLU follows the concatenation.

Attribute names (``conv3X3``, ``conv5X5_1``, ``conv5X5_2``, ``conv7X7_2``,
``conv7x7_3``, including the lower-case ``x`` of the last) are those of the
public checkpoints (biubug6/Pytorch_Retinaface, models/net.py, class SSH).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rfcore.model.blocks import conv_bn


class SSH(nn.Module):
    """Three-branch context module; output channels equal input channels.

    Args:
        channels: Input and output channels; a multiple of 4.
        negative_slope: Activation slope inside the 5x5 and 7x7 branches.
            The last convolution of each branch has no activation of its
            own: the ReLU after the concatenation plays that role.
        deformable: Make all five 3x3 convolutions deformable [paper §4.2].

    Raises:
        ValueError: If ``channels`` is not a multiple of 4.
    """

    def __init__(self, channels: int, negative_slope: float = 0.0, deformable: bool = False) -> None:
        super().__init__()
        if channels % 4:
            raise ValueError(f"context module channels must be a multiple of 4, got {channels}")
        half, quarter = channels // 2, channels // 4
        self.conv3X3 = conv_bn(channels, half, negative_slope=None, deformable=deformable)
        self.conv5X5_1 = conv_bn(channels, quarter, negative_slope=negative_slope, deformable=deformable)
        self.conv5X5_2 = conv_bn(quarter, quarter, negative_slope=None, deformable=deformable)
        self.conv7X7_2 = conv_bn(quarter, quarter, negative_slope=negative_slope, deformable=deformable)
        self.conv7x7_3 = conv_bn(quarter, quarter, negative_slope=None, deformable=deformable)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Add context to one pyramid level.

        Args:
            x: ``(N, C, H, W)`` pyramid level.

        Returns:
            ``(N, C, H, W)`` features: the 3x3, 5x5 and 7x7 branches
            concatenated along channels, then ReLU.
        """
        branch3 = self.conv3X3(x)
        shared = self.conv5X5_1(x)
        branch5 = self.conv5X5_2(shared)
        branch7 = self.conv7x7_3(self.conv7X7_2(shared))
        # (N, C/2 + C/4 + C/4, H, W); the concatenation is a new tensor, so the ReLU may overwrite it
        return F.relu(torch.cat([branch3, branch5, branch7], dim=1), inplace=True)
