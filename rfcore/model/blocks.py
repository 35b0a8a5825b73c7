"""The one building block every part of the network uses: conv + BN + activation.

All convolutions of the backbones, the feature pyramid and the context
modules are followed by batch normalisation, so they carry no bias. The
block is an ``nn.Sequential`` so that its parameters are named ``<name>.0``
(the convolution) and ``<name>.1`` (the batch norm), as in the public
PyTorch RetinaFace checkpoints (biubug6/Pytorch_Retinaface, models/net.py).

The paper replaces the 3x3 convolutions of the pyramid's lateral path and of
the context modules by deformable convolutions [paper §4.2, "DCN"]:
:class:`DeformableConv2d` is that drop-in replacement.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import DeformConv2d


class DeformableConv2d(nn.Module):
    """A deformable convolution whose sampling offsets are predicted from its input.

    A plain convolution samples a fixed ``k x k`` grid around every output
    cell; here a small convolution first predicts a 2-d shift for each of the
    ``k * k`` taps (Dai et al. 2017). The offset predictor starts at zero, so
    a freshly built layer computes exactly the plain convolution and learns
    to deform from there.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Side of the square kernel.
        stride: Stride of both the offset predictor and the convolution.
        padding: Zero padding of both.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, padding: int = 1
    ) -> None:
        super().__init__()
        taps = kernel_size * kernel_size
        self.offset = nn.Conv2d(in_channels, 2 * taps, kernel_size, stride, padding)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        self.conv = DeformConv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve with learned offsets.

        Args:
            x: ``(N, C_in, H, W)`` features.

        Returns:
            ``(N, C_out, H', W')`` features.
        """
        # (N, 2*k*k, H', W'): a (dy, dx) shift per kernel tap and output cell
        offset = self.offset(x)
        return self.conv(x, offset)


def conv_bn(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    stride: int = 1,
    groups: int = 1,
    negative_slope: float | None = 0.0,
    deformable: bool = False,
) -> nn.Sequential:
    """Convolution (no bias), batch norm and an optional (leaky) ReLU.

    Padding is ``kernel_size // 2``, so a stride-``s`` block maps a side of
    ``n`` cells to ``ceil(n / s)``: the feature-map sizes that
    :func:`rfcore.anchors.make_anchors` assumes.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Side of the square kernel (1 or 3).
        stride: Convolution stride.
        groups: Convolution groups (``in_channels`` for a depthwise conv).
        negative_slope: Slope of the activation for negative inputs: ``0``
            gives ReLU, ``0.1`` the leaky ReLU of the MobileNet model, and
            ``None`` no activation at all. The activation overwrites the
            batch norm's output (``inplace=True``), saving a tensor per layer.
        deformable: Use a :class:`DeformableConv2d` (only with
            ``groups == 1``).

    Returns:
        ``nn.Sequential(conv, bn[, activation])``.

    Raises:
        ValueError: If ``deformable`` is combined with grouped convolution.
    """
    padding = kernel_size // 2
    if deformable and groups != 1:
        raise ValueError(f"deformable convolution supports groups=1 only, got groups={groups}")
    if deformable:
        conv = DeformableConv2d(in_channels, out_channels, kernel_size, stride, padding)
    else:
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False)
    layers = [conv, nn.BatchNorm2d(out_channels)]
    # In place: the batch norm's output has no other reader, and its backward pass needs its input, not its output.
    if negative_slope == 0.0:
        layers.append(nn.ReLU(inplace=True))
    elif negative_slope is not None:
        layers.append(nn.LeakyReLU(negative_slope, inplace=True))
    return nn.Sequential(*layers)
