"""Lambertian shading with a point light and ambient light [paper §3.2, P_ill].

Each vertex is lit once (Gouraud shading) and the rasteriser interpolates
the lit colours across triangles:

    colour = albedo * (ambient + light_colour * max(0, n . l))

with ``n`` the unit vertex normal and ``l`` the unit direction from the
vertex to the point light, both in view space. The result is not clipped
to 1, so the loss can see over-exposure.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rfcore.mesh.camera import Light

NORMAL_EPS = 1e-12
"""Guards the normalisation of zero-length normals and light directions."""


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals.

    Args:
        vertices: ``(B, V, 3)``.
        faces: ``(F, 3)`` counter-clockwise triangles (normals point to the
            side the corners are seen counter-clockwise from).

    Returns:
        ``(B, V, 3)`` unit normals (zero for a vertex in no triangle).
    """
    corners = vertices[:, faces]  # (B, F, 3, 3): batch, face, corner, xyz
    # the cross product's length is twice the area: larger triangles weigh more
    face_normals = torch.cross(corners[:, :, 1] - corners[:, :, 0], corners[:, :, 2] - corners[:, :, 0], dim=-1)
    summed = torch.zeros_like(vertices)
    for corner in range(3):
        summed = summed.index_add(1, faces[:, corner], face_normals)
    return F.normalize(summed, dim=-1, eps=NORMAL_EPS)


def lambert(view: torch.Tensor, normals: torch.Tensor, albedo: torch.Tensor, light: Light) -> torch.Tensor:
    """Lit vertex colours.

    Args:
        view: ``(B, V, 3)`` view-space vertices.
        normals: ``(B, V, 3)`` unit view-space normals.
        albedo: ``(B, V, 3)`` rgb.
        light: Point and ambient light (:class:`~rfcore.mesh.camera.Light`).

    Returns:
        ``(B, V, 3)`` rgb, ``>= 0``.
    """
    to_light = F.normalize(light.position[:, None] - view, dim=-1, eps=NORMAL_EPS)
    diffuse = (normals * to_light).sum(-1, keepdim=True).clamp(min=0)  # (B, V, 1)
    return albedo * (light.ambient[:, None] + light.colour[:, None] * diffuse)
