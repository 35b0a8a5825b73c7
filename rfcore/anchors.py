"""Anchor grids on a feature pyramid.

Pyramid level ``l`` has stride ``s_l``: its feature map has
``ceil(H / s_l) x ceil(W / s_l)`` cells and cell ``(i, j)`` looks at the image
point ``((j + 0.5) s_l, (i + 0.5) s_l)``. Every cell carries the same few
square anchors of that level's sizes. Flattened, anchors are ordered by level,
then row-major location ``(i, j)``, then anchor size: the order in which the
network heads emit their predictions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rfcore.config import RetinaFaceConfig


@dataclass(frozen=True)
class AnchorLevel:
    """The anchors of one pyramid level, for teaching and for fast matching.

    Attributes:
        name: Level name, e.g. ``"P3"``.
        stride: Pixels between neighbouring cells.
        sizes: Side lengths of the square anchors of each cell.
        grid: Feature-map size ``(rows, cols)``.
        start: Index of this level's first anchor in the flat layout.
    """

    name: str
    stride: int
    sizes: tuple[float, ...]
    grid: tuple[int, int]
    start: int

    @property
    def count(self) -> int:
        """Number of anchors on this level: ``rows * cols * len(sizes)``."""
        return self.grid[0] * self.grid[1] * len(self.sizes)

    def anchors(self, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
        """This level's anchors as ``(count, 4)`` ``(cx, cy, w, h)`` in pixels."""
        rows, cols = self.grid
        cy = (torch.arange(rows, dtype=dtype, device=device) + 0.5) * self.stride
        cx = (torch.arange(cols, dtype=dtype, device=device) + 0.5) * self.stride
        side = torch.tensor(self.sizes, dtype=dtype, device=device)
        k = len(self.sizes)
        # (rows, 1, 1), (1, cols, 1), (1, 1, k) -> (rows, cols, k) each
        cy, cx, side = torch.broadcast_tensors(cy[:, None, None], cx[None, :, None], side[None, None, :])
        # (rows, cols, k, 4) -> (rows * cols * k, 4): level order is row, column, size
        return torch.stack([cx, cy, side, side], dim=-1).reshape(rows * cols * k, 4)


def check_image_size(image_size) -> tuple[int, int]:
    """Validate an ``(height, width)`` pair and return it as ints.

    Raises:
        ValueError: If it is not two positive integers.
    """
    try:
        height, width = (int(v) for v in image_size)
        exact = all(float(v) == int(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (height, width), got {image_size!r}") from None
    if not exact or height <= 0 or width <= 0:
        raise ValueError(f"image_size must be two positive integers (height, width), got {image_size!r}")
    return height, width


def anchor_levels(cfg: RetinaFaceConfig, image_size) -> list[AnchorLevel]:
    """Describe the anchor grid of every pyramid level.

    Args:
        cfg: Preset that fixes strides and anchor sizes.
        image_size: Input ``(height, width)`` in pixels.

    Returns:
        One :class:`AnchorLevel` per pyramid level, finest first.
    """
    height, width = check_image_size(image_size)
    levels, start = [], 0
    for name, stride, sizes in zip(cfg.level_names, cfg.strides, cfg.anchor_sizes):
        grid = (math.ceil(height / stride), math.ceil(width / stride))
        level = AnchorLevel(name=name, stride=stride, sizes=tuple(sizes), grid=grid, start=start)
        levels.append(level)
        start += level.count
    return levels


def make_anchors(
    cfg: RetinaFaceConfig, image_size, dtype: torch.dtype = torch.float32, device=None
) -> torch.Tensor:
    """All anchors of an input image, in the order the heads predict them.

    Args:
        cfg: Preset that fixes strides and anchor sizes.
        image_size: Input ``(height, width)`` in pixels; need not be a
            multiple of the strides.
        dtype: Floating dtype of the result.
        device: Device of the result.

    Returns:
        ``(A, 4)`` anchors ``(cx, cy, w, h)`` in pixels, ordered by level,
        then row-major location, then anchor size.
    """
    levels = anchor_levels(cfg, image_size)
    return torch.cat([level.anchors(dtype, device) for level in levels], dim=0)


def anchor_table(cfg: RetinaFaceConfig, image_size) -> list[dict]:
    """A per-level summary for teaching: grid, sizes, counts and shares.

    Args:
        cfg: Preset that fixes strides and anchor sizes.
        image_size: Input ``(height, width)`` in pixels.

    Returns:
        One dict per level with keys ``level``, ``stride``, ``grid``,
        ``sizes`` (rounded to 2 decimals), ``anchors`` and ``share`` (fraction
        of all anchors).
    """
    levels = anchor_levels(cfg, image_size)
    total = sum(level.count for level in levels)
    return [
        {
            "level": level.name,
            "stride": level.stride,
            "grid": level.grid,
            "sizes": tuple(round(s, 2) for s in level.sizes),
            "anchors": level.count,
            "share": level.count / total,
        }
        for level in levels
    ]
