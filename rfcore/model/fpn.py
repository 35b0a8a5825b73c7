"""Feature pyramid: top-down and lateral connections (Lin et al. 2017) [paper §4.2].

Each backbone map ``C_k`` is projected to a common width by a 1x1 *lateral*
convolution. Going from the coarsest level down, the coarser result is
upsampled (nearest neighbour, to exactly the finer map's size, which need
not be twice as large for odd inputs), added to the finer lateral, and
smoothed by a 3x3 *merge* convolution:

    P_top = lateral(C_top)
    P_k   = merge(lateral(C_k) + upsample(P_{k+1}))

Levels above the backbone (the paper's P6) come from 3x3 stride-2
convolutions, the first applied to the coarsest backbone map C5.

The submodules are numbered attributes ``output1, output2, ...`` (laterals,
finest first) and ``merge1, merge2, ...`` rather than lists, so that the
parameter names equal those of the public checkpoints
(biubug6/Pytorch_Retinaface, models/net.py, class FPN).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rfcore.model.blocks import conv_bn


class FPN(nn.Module):
    """Feature pyramid over the backbone maps, plus optional extra coarse levels.

    Args:
        in_channels: Channels of the backbone maps, finest first.
        out_channels: Channels of every pyramid level.
        extra_levels: Stride-2 levels to add above the coarsest backbone map.
        negative_slope: Activation slope after every convolution (see
            :func:`rfcore.model.blocks.conv_bn`).
        deformable: Make the 3x3 merge convolutions deformable [paper §4.2].
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int,
        extra_levels: int = 0,
        negative_slope: float = 0.0,
        deformable: bool = False,
    ) -> None:
        super().__init__()
        self.num_inputs = len(in_channels)
        for k, channels in enumerate(in_channels, start=1):
            setattr(self, f"output{k}", conv_bn(channels, out_channels, 1, negative_slope=negative_slope))
        for k in range(1, self.num_inputs):
            merge = conv_bn(out_channels, out_channels, 3, negative_slope=negative_slope, deformable=deformable)
            setattr(self, f"merge{k}", merge)
        self.extra = nn.ModuleList()
        channels = in_channels[-1]  # P6 reads C5, P7 would read P6
        for _ in range(extra_levels):
            self.extra.append(conv_bn(channels, out_channels, 3, stride=2, negative_slope=negative_slope))
            channels = out_channels

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Build the pyramid.

        Args:
            features: Backbone maps ``(N, in_channels[k], H_k, W_k)``, finest first.

        Returns:
            One ``(N, out_channels, H_k, W_k)`` map per input, finest first,
            followed by the extra levels.

        Raises:
            ValueError: If the number of maps does not match ``in_channels``.
        """
        if len(features) != self.num_inputs:
            raise ValueError(f"FPN built for {self.num_inputs} backbone maps, got {len(features)}")
        laterals = [getattr(self, f"output{k}")(c) for k, c in enumerate(features, start=1)]
        pyramid = [laterals[-1]]
        for k in range(self.num_inputs - 1, 0, -1):
            finer = laterals[k - 1]
            upsampled = F.interpolate(pyramid[0], size=finer.shape[-2:], mode="nearest")
            pyramid.insert(0, getattr(self, f"merge{k}")(finer + upsampled))
        x = features[-1]
        for conv in self.extra:
            x = conv(x)
            pyramid.append(x)
        return pyramid
