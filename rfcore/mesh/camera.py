"""Camera ``P_cam`` and illumination ``P_ill`` from raw head outputs [paper §3.2].

The camera's 7 values ``[x_c, y_c, z_c, x'_c, y'_c, z'_c, f_c]`` (location, pose, focal length) and the
light's 9 ``[x_l, y_l, z_l, r_l, g_l, b_l, r_a, g_a, b_a]`` (point light, its colour, ambient colour) are
predicted unbounded and each passed through a bounded map (:class:`Camera` for the coordinates); raw 0
gives a frontal face filling the crop, lit from the camera:

=================  ==========================  =====================  ==========
value              map                         range                  at raw 0
=================  ==========================  =====================  ==========
x_c, y_c (shift)   ``0.5 tanh(r)``             (-0.5, 0.5)            0
z_c (distance)     ``4 + 2 tanh(r)``           (2, 6)                 4
pitch, yaw, roll   ``(pi / 3) tanh(r)``        (-60, 60) degrees      0
f_c (focal)        ``3.6 exp(0.5 tanh(r))``    (2.18, 5.94)           3.6
light location     ``3 tanh(r)``               cube of half-side 3    camera
light, ambient     ``sigmoid(r)``              (0, 1) per channel     0.5
=================  ==========================  =====================  ==========
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

CAMERA_PARAMS, LIGHT_PARAMS = 7, 9
"""Raw values of ``P_cam`` and ``P_ill``."""

MAX_SHIFT, DISTANCE, DISTANCE_RANGE = 0.5, 4.0, 2.0
MAX_ANGLE = math.pi / 3
FOCAL, FOCAL_LOG_RANGE = 3.6, 0.5
LIGHT_RANGE = 3.0
NEAR = 0.1
"""Depth below which points are clamped (only reachable by a badly deformed mesh)."""


class Camera(NamedTuple):
    """A perspective camera per face.

    The camera sits at the origin of view space looking down
    ``-z`` (``x`` right, ``y`` up). A model point ``p`` goes to
    ``q = R p + (x_c, y_c, -z_c)``; its depth is ``-q_z`` and it projects to
    ``(f q_x / depth, f q_y / depth)`` in crop units (``[-1, 1]`` across the
    crop), then to pixels with ``(0, 0)`` the top-left corner of the crop and
    pixel ``(i, j)`` centred at ``(j + 0.5, i + 0.5)``. The model face is about
    1.7 x 2 units, so at distance 4 with focal 3.6 it spans about 77 % x 90 %
    of the crop.

    Attributes:
        rotation: ``(B, 3, 3)`` model-to-view rotation ``R``.
        translation: ``(B, 3)`` ``(x_c, y_c, -z_c)``.
        focal: ``(B,)`` focal length in crop half-widths.
    """

    rotation: torch.Tensor
    translation: torch.Tensor
    focal: torch.Tensor


class Light(NamedTuple):
    """A point light plus ambient light per face, in view space.

    Attributes:
        position: ``(B, 3)`` light location.
        colour: ``(B, 3)`` rgb of the point light.
        ambient: ``(B, 3)`` rgb of the ambient light.
    """

    position: torch.Tensor
    colour: torch.Tensor
    ambient: torch.Tensor


def euler_rotation(angles: torch.Tensor) -> torch.Tensor:
    """Rotation ``R = R_z(roll) R_y(yaw) R_x(pitch)``, ``(B, 3) -> (B, 3, 3)``."""
    cos, sin = torch.cos(angles), torch.sin(angles)
    one, zero = torch.ones_like(cos[:, 0]), torch.zeros_like(cos[:, 0])

    def matrix(*rows):  # nine (B,) entries, row-major -> (B, 3, 3)
        return torch.stack(rows, dim=-1).reshape(-1, 3, 3)

    (cx, cy, cz), (sx, sy, sz) = cos.unbind(1), sin.unbind(1)
    pitch = matrix(one, zero, zero, zero, cx, -sx, zero, sx, cx)
    yaw = matrix(cy, zero, sy, zero, one, zero, -sy, zero, cy)
    roll = matrix(cz, -sz, zero, sz, cz, zero, zero, zero, one)
    return roll @ yaw @ pitch


def camera_from_params(raw: torch.Tensor) -> Camera:
    """Bounded camera from the 7 raw values ``P_cam`` (see the module table).

    Args:
        raw: ``(B, 7)`` ``[x_c, y_c, z_c, pitch, yaw, roll, f_c]``, unbounded.

    Returns:
        The :class:`Camera`.

    Raises:
        ValueError: If ``raw`` is not ``(B, 7)``.
    """
    _check_width(raw, CAMERA_PARAMS, "camera")
    bounded = torch.tanh(raw)
    shift = MAX_SHIFT * bounded[:, :2]
    distance = DISTANCE + DISTANCE_RANGE * bounded[:, 2:3]
    translation = torch.cat([shift, -distance], dim=1)
    rotation = euler_rotation(angles_from_params(raw))
    focal = FOCAL * torch.exp(FOCAL_LOG_RANGE * bounded[:, 6])
    return Camera(rotation, translation, focal)


def angles_from_params(raw: torch.Tensor) -> torch.Tensor:
    """Pitch, yaw and roll in radians of the 7 raw camera values: ``(B, 7) -> (B, 3)``.

    The angles of :func:`camera_from_params`, comparable with those given to :func:`camera_from_pose`.
    """
    _check_width(raw, CAMERA_PARAMS, "camera")
    return MAX_ANGLE * torch.tanh(raw[:, 3:6])


def camera_from_pose(
    angles: torch.Tensor, distance: torch.Tensor, focal: torch.Tensor | float = FOCAL, shift: torch.Tensor | None = None
) -> Camera:
    """A camera from physical values instead of raw head outputs (for synthetic faces and plots).

    Args:
        angles: ``(B, 3)`` pitch, yaw, roll in radians (any size; the head's
            bounded map stops at 60 degrees).
        distance: ``(B,)`` distance ``z_c`` from the camera to the model origin.
        focal: Focal length ``f_c`` in crop half-widths, a number or ``(B,)``.
        shift: ``(B, 2)`` ``(x_c, y_c)``; ``None`` for a centred face.

    Returns:
        The :class:`Camera`.

    Raises:
        ValueError: If ``angles`` is not ``(B, 3)`` or ``distance`` not ``(B,)``.
    """
    if angles.ndim != 2 or angles.shape[1] != 3 or distance.shape != angles.shape[:1]:
        raise ValueError(f"expected (B, 3) angles and (B,) distances, got {tuple(angles.shape)} and "
                         f"{tuple(distance.shape)}")
    shift = torch.zeros_like(angles[:, :2]) if shift is None else shift
    translation = torch.cat([shift, -distance[:, None]], dim=1)
    focal = torch.as_tensor(focal, dtype=angles.dtype).expand(len(angles))
    return Camera(euler_rotation(angles), translation, focal)


def light_from_params(raw: torch.Tensor) -> Light:
    """Bounded illumination from the 9 raw values ``P_ill`` (see the module table).

    Args:
        raw: ``(B, 9)`` ``[x_l, y_l, z_l, r_l, g_l, b_l, r_a, g_a, b_a]``, unbounded.

    Returns:
        The :class:`Light`.

    Raises:
        ValueError: If ``raw`` is not ``(B, 9)``.
    """
    _check_width(raw, LIGHT_PARAMS, "illumination")
    return Light(LIGHT_RANGE * torch.tanh(raw[:, :3]), torch.sigmoid(raw[:, 3:6]), torch.sigmoid(raw[:, 6:9]))


def to_view(vertices: torch.Tensor, camera: Camera) -> torch.Tensor:
    """Model to view space, ``(B, V, 3) -> (B, V, 3)``: ``q = R p + t``."""
    return vertices @ camera.rotation.transpose(1, 2) + camera.translation[:, None]


def project(view: torch.Tensor, camera: Camera, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Perspective projection of view-space points to pixels.

    Args:
        view: ``(B, V, 3)`` view-space points.
        camera: The camera (its focal length is used).
        size: ``(H, W)`` of the crop.

    Returns:
        ``(B, V, 2)`` pixel coordinates ``(x, y)`` (``y`` down) and ``(B, V)``
        depths (clamped at :data:`NEAR`).
    """
    height, width = size
    depth = (-view[..., 2]).clamp(min=NEAR)
    plane = camera.focal[:, None, None] * view[..., :2] / depth[..., None]  # (B, V, 2) in [-1, 1] crop units
    pixels = torch.stack([(1 + plane[..., 0]) * width / 2, (1 - plane[..., 1]) * height / 2], dim=-1)
    return pixels, depth


def _check_width(raw: torch.Tensor, width: int, what: str) -> None:
    if raw.ndim != 2 or raw.shape[1] != width:
        raise ValueError(f"expected (B, {width}) raw {what} parameters, got {tuple(raw.shape)}")
