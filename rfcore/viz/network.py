"""Pictures of the network itself (notebook 05): the FPN merge, SSH branches, deformable grids, receptive fields.

The computations read the real modules: forward hooks record what the FPN's
lateral and merge convolutions see, gradients show which inputs a cell
depends on, and the deformable sampling points are those
``torchvision.ops.deform_conv2d`` uses for the offsets given. Plots are
:class:`~matplotlib.figure.Figure` objects built without ``pyplot``. The training augmentation of the same
notebook is :mod:`rfcore.viz.augment`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from rfcore.config import RetinaFaceConfig
from rfcore.model import RetinaFace
from rfcore.model.context import SSH
from rfcore.viz.draw import check_image, paint_dots, put_text

# ---------------------------------------------------------------- the FPN merge


class FPNMaps(NamedTuple):
    """What the FPN computes on each level, finest first (``(C, H_l, W_l)`` tensors of one image).

    Attributes:
        laterals: ``lateral(C_l)``, the 1x1 projection of each backbone map.
        upsampled: ``upsample(P_{l+1})`` to the level's size; ``None`` on the
            coarsest backbone level, which has nothing above it.
        merge_inputs: ``lateral(C_l) + upsample(P_{l+1})`` as the 3x3 merge
            convolution received it; ``None`` on the coarsest level.
        pyramid: ``P_l``, the FPN's outputs.
    """

    laterals: list[torch.Tensor]
    upsampled: list[torch.Tensor | None]
    merge_inputs: list[torch.Tensor | None]
    pyramid: list[torch.Tensor]


@torch.no_grad()
def fpn_maps(model: RetinaFace, images: torch.Tensor) -> FPNMaps:
    """Run the model's backbone and FPN on one image, recording the maps of the top-down merge.

    Args:
        model: A RetinaFace in eval mode.
        images: ``(1, 3, H, W)`` network input (:func:`rfcore.image.preprocess`).

    Returns:
        :class:`FPNMaps` of the backbone levels (levels the FPN adds above the
        backbone, such as P6, are left out).
    """
    fpn = model.fpn
    count = fpn.num_inputs
    laterals, merge_inputs = [None] * count, [None] * count
    handles = [getattr(fpn, f"output{k}").register_forward_hook(_store(laterals, k - 1)) for k in range(1, count + 1)]
    handles += [getattr(fpn, f"merge{k}").register_forward_pre_hook(_store_input(merge_inputs, k - 1))
                for k in range(1, count)]
    try:
        pyramid = fpn(model.body(images)[model.first_level :])[:count]
    finally:
        for handle in handles:
            handle.remove()
    upsampled = [F.interpolate(coarse, size=fine.shape[-2:], mode="nearest")[0]
                 for fine, coarse in zip(laterals[:-1], pyramid[1:])] + [None]
    return FPNMaps([x[0] for x in laterals], upsampled, [x if x is None else x[0] for x in merge_inputs],
                   [p[0] for p in pyramid])


def _store(store: list, index: int):
    """A forward hook writing the module's output to ``store[index]``."""
    def hook(_module, _inputs, output):
        store[index] = output
    return hook


def _store_input(store: list, index: int):
    """A forward pre-hook writing the module's first input to ``store[index]``."""
    def hook(_module, inputs):
        store[index] = inputs[0]
    return hook


def channel_energy(features: torch.Tensor) -> torch.Tensor:
    """Root mean square over channels: ``(C, H, W)`` -> ``(H, W)``, how strongly each cell responds."""
    return features.float().pow(2).mean(dim=0).sqrt()


def plot_fpn_merge(image, maps: FPNMaps, names: Sequence[str]) -> Figure:
    """Channel energy of the lateral, the up-sampled coarser level and the merged level, over the photo.

    Each panel is scaled to its own maximum (yellow) and drawn with its cells
    as squares over the greyed photo, so the panels compare where a map
    responds, not how strongly.

    Args:
        image: ``(H, W, 3)`` uint8 RGB photo the maps were computed on.
        maps: :func:`fpn_maps` of that photo.
        names: Level names, finest first (``cfg.level_names``).

    Returns:
        A Figure with one row per level that has a merge, three panels each.
    """
    image = check_image(image)
    grey = image.mean(axis=2)
    rows = [k for k, up in enumerate(maps.upsampled) if up is not None]
    fig = Figure(figsize=(10.5, len(rows) * (3.4 * image.shape[0] / image.shape[1] + 0.35)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(rows), 3))
    for ax_row, k in zip(axes, rows):
        coarser = names[k + 1]
        panels = ((f"lateral(C{names[k][1:]})", maps.laterals[k]), (f"upsample({coarser})", maps.upsampled[k]),
                  (f"{names[k]} after the 3x3 merge", maps.pyramid[k]))
        for ax, (title, features) in zip(ax_row, panels):
            energy = channel_energy(features).numpy()
            cell = image.shape[1] / energy.shape[1]  # pixels per cell: the level's stride
            ax.imshow(grey, cmap="gray", vmin=0, vmax=255)
            ax.imshow(energy / energy.max(), cmap="viridis", alpha=0.65, interpolation="nearest",
                      extent=(0, energy.shape[1] * cell, energy.shape[0] * cell, 0))
            ax.set(xlim=(0, image.shape[1]), ylim=(image.shape[0], 0), xticks=[], yticks=[])
            ax.set_title(title, fontsize=9)
    return fig


# ---------------------------------------------------------------- the SSH context module


def ssh_branch_gradients(ssh: SSH, features: torch.Tensor, cell: tuple[int, int]) -> torch.Tensor:
    """Which input cells each of the three branches reads, for one output cell.

    The output channels of :class:`~rfcore.model.context.SSH` are the 3x3
    branch (first half), the 5x5 branch (third quarter) and the 7x7 branch
    (last quarter). For each branch, the gradient of the sum of its channels
    at ``cell`` with respect to the input is non-zero exactly on the cells it
    reads (unless a ReLU happens to cut all its channels there).

    Args:
        ssh: A context module in eval mode.
        features: ``(1, C, H, W)`` input pyramid level.
        cell: ``(row, column)`` of the output cell.

    Returns:
        ``(3, H, W)`` absolute gradients summed over input channels, one map per branch.
    """
    channels = features.shape[1]
    bounds = (0, channels // 2, 3 * channels // 4, channels)
    maps = []
    for start, stop in zip(bounds, bounds[1:]):
        x = features.detach().clone().requires_grad_(True)
        output = ssh(x)  # (1, C, H, W)
        output[0, start:stop, cell[0], cell[1]].sum().backward()
        maps.append(x.grad[0].abs().sum(dim=0))  # (C, H, W) -> (H, W)
    return torch.stack(maps)


def support_side(gradient: torch.Tensor) -> int:
    """Side of the smallest square holding every non-zero value of an ``(H, W)`` map (0 if none)."""
    rows, cols = torch.nonzero(gradient, as_tuple=True)
    if len(rows) == 0:
        return 0
    return int(max(rows.max() - rows.min(), cols.max() - cols.min())) + 1


def plot_ssh_branches(gradients: torch.Tensor, cell: tuple[int, int], radius: int = 5) -> Figure:
    """The cells each SSH branch reads around one output cell (black: not read).

    Args:
        gradients: ``(3, H, W)`` from :func:`ssh_branch_gradients`.
        cell: The output cell they were computed for.
        radius: Cells shown on each side of ``cell``.
    """
    fig = Figure(figsize=(7.5, 2.8), layout="constrained")
    window = (slice(cell[0] - radius, cell[0] + radius + 1), slice(cell[1] - radius, cell[1] + radius + 1))
    for ax, gradient, name in zip(fig.subplots(1, 3), gradients, ("3x3", "5x5 (two 3x3)", "7x7 (three 3x3)")):
        patch = gradient[window].numpy()
        ax.imshow(np.where(patch > 0, patch / patch.max(), np.nan), cmap="viridis", vmin=0, vmax=1)
        ax.set_facecolor("black")
        ax.plot(radius, radius, "r+", markersize=10)
        ax.set(xticks=[], yticks=[], title=f"{name}: {support_side(gradient)}x{support_side(gradient)} cells")
    return fig


# ---------------------------------------------------------------- deformable convolution


def kernel_taps(kernel: int = 3) -> torch.Tensor:
    """``(k*k, 2)`` tap positions ``(dy, dx)`` of a ``k x k`` kernel around its centre, row-major."""
    steps = torch.arange(kernel, dtype=torch.float32) - (kernel - 1) / 2
    dy, dx = torch.meshgrid(steps, steps, indexing="ij")
    return torch.stack([dy.flatten(), dx.flatten()], dim=1)


def grid_offsets(matrix, kernel: int = 3) -> torch.Tensor:
    """Offsets that move each tap ``p`` of a regular grid to ``matrix @ p``.

    Args:
        matrix: ``(2, 2)`` linear map acting on ``(dy, dx)`` (``2 * I``
            spreads the grid like dilation 2; a rotation turns it).
        kernel: Side of the kernel.

    Returns:
        ``(2*k*k,)`` offsets in ``torchvision.ops.deform_conv2d`` order:
        ``dy, dx`` of tap 0, then of tap 1, ... (taps row-major). Broadcast
        to ``(N, 2*k*k, H, W)`` to use the same offsets at every cell.
    """
    taps = kernel_taps(kernel)  # (k*k, 2)
    moved = taps @ torch.as_tensor(matrix, dtype=torch.float32).T  # (k*k, 2)
    return (moved - taps).flatten()  # (k*k, 2) -> (2*k*k,)


def rotation(degrees: float) -> torch.Tensor:
    """``(2, 2)`` rotation acting on ``(dy, dx)``, counter-clockwise on the screen (y down) for positive angles."""
    angle = torch.deg2rad(torch.tensor(float(degrees)))
    cos, sin = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([cos, -sin]), torch.stack([sin, cos])])


def sampling_points(centre, offsets: torch.Tensor, stride: int = 1) -> np.ndarray:
    """Image positions ``(x, y)`` of the ``k*k`` taps of one output cell.

    Args:
        centre: ``(x, y)`` of the cell in pixels.
        offsets: ``(2*k*k,)`` offsets of :func:`grid_offsets`, in cells.
        stride: Pixels per cell of the map the convolution reads.

    Returns:
        ``(k*k, 2)`` float array of ``(x, y)`` pixels.
    """
    kernel = round((len(offsets) // 2) ** 0.5)
    taps = kernel_taps(kernel) + offsets.reshape(-1, 2)  # (k*k, 2) as (dy, dx)
    return np.asarray(centre, np.float64) + stride * taps.flip(1).double().numpy()  # (dy, dx) -> (x, y)


def render_sampling_grids(image, centre, grids: dict[str, torch.Tensor], stride: int, colors) -> np.ndarray:
    """Tap positions of a few offset fields around one cell, as coloured dots with a legend.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        centre: ``(x, y)`` of the cell in pixels.
        grids: ``name -> (2*k*k,)`` offsets (:func:`grid_offsets`).
        stride: Pixels per cell.
        colors: One RGB triple per grid.

    Returns:
        A new ``(H, W, 3)`` uint8 image.
    """
    canvas = check_image(image).copy()
    for offsets, color in zip(grids.values(), colors):
        canvas = paint_dots(canvas, sampling_points(centre, offsets, stride), color, radius=3)
    for i, (name, color) in enumerate(zip(grids, colors)):
        put_text(canvas, name, (6, 18 + 18 * i), color, scale=0.55)
    return canvas


# ---------------------------------------------------------------- receptive fields against anchors


def plot_receptive_fields(fields: dict[str, list[dict]], cfgs: dict[str, RetinaFaceConfig]) -> Figure:
    """Receptive field per level after each stage, with the level's anchor sizes, one panel per preset.

    Args:
        fields: ``preset -> rows`` of :func:`rfcore.model.receptive.level_receptive_fields`.
        cfgs: ``preset -> config`` for the anchor sizes.
    """
    fig = Figure(figsize=(5.0 * len(fields), 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(fields), sharey=True))
    for ax, (name, rows) in zip(axes, fields.items()):
        x = np.arange(len(rows))
        for stage, marker in (("backbone", "s"), ("FPN", "^"), ("context", "o")):
            ax.plot(x, [np.nan if row[stage] is None else row[stage] for row in rows], marker + "-", label=stage)
        for i, sizes in enumerate(cfgs[name].anchor_sizes):
            ax.plot([i] * len(sizes), sizes, "k_", markersize=16, mew=2, label="anchor sides" if i == 0 else None)
        ax.set_yscale("log", base=2)
        ax.set_xticks(x, [f"{row['level']}\nstride {row['stride']}" for row in rows])
        ax.set(title=f"{name}", xlabel="pyramid level")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("pixels (log scale)")
    axes[0].legend(fontsize=8)
    return fig


def effective_receptive_field(
    model: RetinaFace, images: torch.Tensor, level: int, cell: tuple[int, int]
) -> torch.Tensor:
    """How much each input pixel moves one cell of what the heads read (Luo et al. 2016).

    Args:
        model: A RetinaFace in eval mode.
        images: ``(1, 3, H, W)`` network input.
        level: Pyramid level index, finest first.
        cell: ``(row, column)`` on that level.

    Returns:
        ``(H, W)`` absolute gradient of the sum over channels of the cell's
        context features, summed over colour channels.
    """
    x = images.detach().clone().requires_grad_(True)
    features = model.features(x)[level]  # (1, C, H_l, W_l)
    features[0, :, cell[0], cell[1]].sum().backward()
    return x.grad[0].abs().sum(dim=0)  # (3, H, W) -> (H, W)


def mass_inside(gradient: torch.Tensor, centre, side: float) -> float:
    """Share of the total of an ``(H, W)`` map of non-negative values inside a square of ``side`` pixels.

    Pixel ``(row, col)`` counts when its centre ``(col + 0.5, row + 0.5)`` lies in the square centred on
    ``centre = (x, y)``.
    """
    rows = torch.arange(gradient.shape[0], dtype=torch.float64) + 0.5
    cols = torch.arange(gradient.shape[1], dtype=torch.float64) + 0.5
    inside = ((rows - centre[1]).abs() <= side / 2)[:, None] & ((cols - centre[0]).abs() <= side / 2)[None, :]
    total = gradient.double().sum()
    return float(gradient.double()[inside].sum() / total) if total > 0 else 0.0


def plot_effective_fields(image, gradients: Sequence[torch.Tensor], centres, fields: Sequence[int],
                          anchors: Sequence[Sequence[float]], names: Sequence[str]) -> Figure:
    """Effective receptive fields over the photo, with the theoretical field and the anchors as squares.

    Args:
        image: ``(H, W, 3)`` uint8 RGB photo.
        gradients: ``(H, W)`` maps of :func:`effective_receptive_field`, one per level.
        centres: ``(x, y)`` pixel centre of each level's cell.
        fields: Theoretical field side of each level (pixels).
        anchors: Anchor sides of each level.
        names: Level names.
    """
    image = check_image(image)
    fig = Figure(figsize=(4.0 * len(gradients), 3.6 * image.shape[0] / image.shape[1] + 0.5), layout="constrained")
    for ax, gradient, (x, y), side, sizes, name in zip(
        np.atleast_1d(fig.subplots(1, len(gradients))), gradients, centres, fields, anchors, names
    ):
        g = gradient.numpy()
        ax.imshow(image.mean(axis=2), cmap="gray", vmin=0, vmax=255)
        ax.imshow(np.sqrt(g / g.max()), cmap="magma", alpha=0.7)
        ax.add_patch(_square(x, y, side, "white", f"field {side} px"))
        for size in sizes:
            ax.add_patch(_square(x, y, size, "cyan", None))
        ax.set(xlim=(0, image.shape[1]), ylim=(image.shape[0], 0), xticks=[], yticks=[])
        ax.set_title(f"{name}: field {side} px, anchors {', '.join(f'{s:g}' for s in sizes)}", fontsize=9)
    return fig


def _square(x: float, y: float, side: float, color: str, label: str | None) -> Rectangle:
    """A square outline of ``side`` centred on ``(x, y)``."""
    return Rectangle((x - side / 2, y - side / 2), side, side, fill=False, edgecolor=color, lw=1.2, label=label)
