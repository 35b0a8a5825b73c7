"""Pictures of the network (notebook 05): FPN maps, SSH branches, deformable grids, fields, augmentation."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torchvision.ops import deform_conv2d

from rfcore.config import get_config
from rfcore.data.augment import CropWindow, TrainTransform
from rfcore.data.sample import FaceSample
from rfcore.model import RetinaFace
from rfcore.model.context import SSH
from rfcore.model.receptive import level_receptive_fields
from rfcore.viz.augment import plot_augmentations, render_crop_window, render_flip
from rfcore.viz.draw import LANDMARK_COLORS, NEGATIVE_COLOR, POSITIVE_COLOR
from rfcore.viz.network import (
    channel_energy,
    effective_receptive_field,
    fpn_maps,
    grid_offsets,
    kernel_taps,
    mass_inside,
    plot_effective_fields,
    plot_fpn_merge,
    plot_receptive_fields,
    plot_ssh_branches,
    render_sampling_grids,
    rotation,
    sampling_points,
    ssh_branch_gradients,
    support_side,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """Small models run fastest on one thread."""


@pytest.fixture(scope="module")
def mobile():
    torch.manual_seed(0)
    return RetinaFace.from_config(get_config("mobilenet0.25")).eval()


def test_fpn_maps_follow_the_merge_formula(mobile):
    images = torch.randn(1, 3, 96, 64)
    maps = fpn_maps(mobile, images)
    assert [tuple(p.shape) for p in maps.pyramid] == [(64, 12, 8), (64, 6, 4), (64, 3, 2)]
    expected = mobile.fpn(mobile.body(images))
    for k in range(3):
        torch.testing.assert_close(maps.pyramid[k], expected[k][0])
    for k in range(2):
        torch.testing.assert_close(maps.laterals[k] + maps.upsampled[k], maps.merge_inputs[k])
        up = maps.upsampled[k]
        assert torch.equal(up[:, ::2, ::2], up[:, 1::2, 1::2])  # nearest: each coarse cell fills 2x2
    assert maps.upsampled[2] is None and maps.merge_inputs[2] is None
    torch.testing.assert_close(maps.laterals[2], maps.pyramid[2])  # the top level is its lateral
    assert not mobile.fpn.output1._forward_hooks and not mobile.fpn.merge1._forward_pre_hooks


def test_plot_fpn_merge(mobile):
    maps = fpn_maps(mobile, torch.randn(1, 3, 64, 96))
    fig = plot_fpn_merge(np.zeros((64, 96, 3), np.uint8), maps, ("P3", "P4", "P5"))
    assert isinstance(fig, Figure) and len(fig.axes) == 6
    assert fig.axes[3].get_title() == "lateral(C4)" and fig.axes[4].get_title() == "upsample(P5)"


def test_channel_energy_by_hand():
    features = torch.tensor([3.0, 4.0]).reshape(2, 1, 1).expand(2, 2, 3)
    torch.testing.assert_close(channel_energy(features), torch.full((2, 3), (12.5) ** 0.5))


def test_ssh_branches_read_3_5_7_cells():
    torch.manual_seed(1)
    ssh = SSH(16, negative_slope=0.1).eval()
    gradients = ssh_branch_gradients(ssh, torch.randn(1, 16, 15, 15), (7, 7))
    assert [support_side(g) for g in gradients] == [3, 5, 7]
    assert all(g[7, 7] > 0 for g in gradients)
    assert len(plot_ssh_branches(gradients, (7, 7)).axes) == 3


def test_support_side_by_hand():
    grid = torch.zeros(6, 6)
    assert support_side(grid) == 0
    grid[1, 1] = 1
    assert support_side(grid) == 1
    grid[3, 4] = -2
    assert support_side(grid) == 4


def test_kernel_taps_and_sampling_points():
    taps = kernel_taps(3)
    assert taps.shape == (9, 2) and taps[0].tolist() == [-1, -1] and taps[4].tolist() == [0, 0]
    assert taps[1].tolist() == [-1, 0]  # row-major: dx moves first
    points = sampling_points((10, 20), grid_offsets(torch.eye(2)), stride=8)
    np.testing.assert_array_equal(points[0], [2, 12])
    np.testing.assert_array_equal(points[-1], [18, 28])
    np.testing.assert_allclose(sampling_points((0, 0), grid_offsets(2 * torch.eye(2)), 1)[0], [-2, -2])


def _deform(x, weight, offsets):
    """``deform_conv2d`` with one offset field at every cell, padding 1."""
    return deform_conv2d(x, offsets.reshape(1, -1, 1, 1).expand(1, -1, *x.shape[-2:]), weight, padding=1)


def test_scaled_grid_is_dilation_and_rotated_grid_is_a_rotated_kernel():
    torch.manual_seed(2)
    x, weight = torch.randn(1, 2, 9, 9), torch.randn(3, 2, 3, 3)
    torch.testing.assert_close(_deform(x, weight, grid_offsets(2 * torch.eye(2))),
                               F.conv2d(x, weight, padding=2, dilation=2))
    # the grid turned by 90 degrees reads with each weight where the kernel turned by 90 degrees has it
    turned = _deform(x, weight, grid_offsets(rotation(90)))
    torch.testing.assert_close(turned, F.conv2d(x, torch.rot90(weight, 1, dims=(2, 3)), padding=1), atol=1e-5,
                               rtol=1e-5)
    assert torch.allclose(grid_offsets(torch.eye(2)), torch.zeros(18))


def test_render_sampling_grids_paints_the_taps():
    image = np.zeros((80, 80, 3), np.uint8)
    drawn = render_sampling_grids(image, (50, 50), {"regular": grid_offsets(torch.eye(2))}, 8, [(0, 255, 0)])
    assert tuple(drawn[42, 42]) == (0, 255, 0) and tuple(drawn[58, 58]) == (0, 255, 0)
    assert tuple(drawn[50, 46]) == (0, 0, 0)  # between taps
    assert not image.any()


def test_plot_receptive_fields():
    cfg = get_config("mobilenet0.25")
    rows = level_receptive_fields(RetinaFace.from_config(cfg))
    fig = plot_receptive_fields({"mobilenet0.25": rows}, {"mobilenet0.25": cfg})
    assert isinstance(fig, Figure) and fig.axes[0].get_title() == "mobilenet0.25"


def test_effective_field_lies_inside_the_theoretical_one(mobile):
    # P3 after the context module sees 411 px (rfcore.model.receptive); a 512-px input holds all of it
    gradient = effective_receptive_field(mobile, torch.randn(1, 3, 512, 512), 0, (32, 32))
    assert gradient.shape == (512, 512)
    assert support_side(gradient) == 411
    fig = plot_effective_fields(np.zeros((512, 512, 3), np.uint8), [gradient], [(260, 260)], [411], [(16, 32)],
                                ["P3"])
    assert fig.axes[0].get_title().startswith("P3: field 411 px")


def _sample():
    image = np.full((100, 200, 3), 90, np.uint8)
    boxes = np.array([[10, 10, 50, 60], [120, 20, 180, 90]], np.float32)
    landmarks = np.array([[[20, 30], [40, 30], [30, 40], [22, 50], [38, 50]]], np.float32)
    landmarks = np.concatenate([landmarks, np.full((1, 5, 2), -1, np.float32)])
    return FaceSample(image, boxes, landmarks)


def test_render_crop_window_colours_kept_and_dropped_faces():
    drawn = render_crop_window(_sample(), CropWindow(0, 0, 80))  # holds the first face's centre only
    assert tuple(drawn[35, 30]) == POSITIVE_COLOR  # centre dot of face 0
    assert tuple(drawn[55, 150]) == NEGATIVE_COLOR  # centre dot of face 1
    assert tuple(drawn[0, 40]) == (255, 255, 255)  # the window's top edge


def _mean_x(panel, color):
    xs = np.nonzero((panel == color).all(axis=2))[1]
    return xs.mean()


def test_render_flip_shows_the_swap():
    sample = _sample()
    drawn = render_flip(sample, (10, 10, 50, 60))
    assert drawn.shape == (50, 3 * 40 + 2 * 4, 3)
    left_eye, right_eye = LANDMARK_COLORS[0], LANDMARK_COLORS[1]
    panels = [drawn[:, i * 44 : i * 44 + 40] for i in range(3)]
    order = [_mean_x(p, left_eye) < _mean_x(p, right_eye) for p in panels]
    assert order == [True, False, True]  # only the unswapped mirror puts "left eye" on the right


def test_plot_augmentations_is_seeded():
    sample = _sample()
    fig = plot_augmentations(sample, TrainTransform(size=64), [0, 1, 2], columns=2)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 3 and titles[0].startswith("seed 0")
    again = plot_augmentations(sample, TrainTransform(size=64), [0, 1, 2], columns=2)
    assert titles == [ax.get_title() for ax in again.axes if ax.get_title()]


def test_mass_inside_by_hand():
    grid = torch.zeros(10, 10)
    grid[5, 5], grid[5, 8], grid[0, 0] = 2.0, 1.0, 1.0  # pixel centres (5.5, 5.5), (8.5, 5.5), (0.5, 0.5)
    assert mass_inside(grid, (5.5, 5.5), 1) == 0.5
    assert mass_inside(grid, (5.5, 5.5), 6) == 0.75  # reaches x = 8.5
    assert mass_inside(grid, (5.5, 5.5), 20) == 1.0
    assert mass_inside(torch.zeros(3, 3), (1, 1), 3) == 0.0
