"""From a positive anchor's 144 mesh parameters to a rendered face [paper §3.2].

The mesh head predicts, per anchor, the shape and texture code ``P_ST``
(128 values), the camera ``P_cam`` (7) and the illumination ``P_ill`` (9),
in that order. :func:`render_mesh_params` decodes the code into a coloured
mesh and renders it with that camera and light into a small image that is
compared with the face crop (:mod:`rfcore.mesh.loss`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from rfcore.mesh.camera import CAMERA_PARAMS, LIGHT_PARAMS, camera_from_params, light_from_params, project, to_view
from rfcore.mesh.decoder import CODE_SIZE, MeshDecoder
from rfcore.mesh.render import Rendered, render
from rfcore.model.retinaface import MESH_PARAMS


class MeshParams(NamedTuple):
    """The three parts of the mesh head's output.

    Attributes:
        code: ``(P, 128)`` shape and texture code ``P_ST``.
        camera: ``(P, 7)`` raw camera ``P_cam``.
        light: ``(P, 9)`` raw illumination ``P_ill``.
    """

    code: torch.Tensor
    camera: torch.Tensor
    light: torch.Tensor


def split_mesh_params(params: torch.Tensor) -> MeshParams:
    """Split ``(P, 144)`` head outputs into code, camera and light.

    Raises:
        ValueError: If ``params`` is not ``(P, 144)``.
    """
    if params.ndim != 2 or params.shape[1] != MESH_PARAMS:
        raise ValueError(f"expected (P, {MESH_PARAMS}) mesh parameters, got {tuple(params.shape)}")
    return MeshParams(*params.split([CODE_SIZE, CAMERA_PARAMS, LIGHT_PARAMS], dim=1))


def render_mesh_params(
    decoder: MeshDecoder, params: torch.Tensor, size: tuple[int, int] = (32, 32), **render_options
) -> Rendered:
    """Decode and render the faces that mesh parameters describe.

    Args:
        decoder: The shape and texture decoder (its template gives the faces).
        params: ``(P, 144)`` raw mesh-head outputs of positive anchors.
        size: ``(H, W)`` of the rendered images.
        **render_options: ``sigma``, ``gamma``, ``background`` or ``method``
            of :func:`~rfcore.mesh.render.render`.

    Returns:
        :class:`~rfcore.mesh.render.Rendered` ``(P, 3, H, W)`` images and ``(P, 1, H, W)`` opacities.
    """
    code, camera, light = split_mesh_params(params)
    mesh = decoder(code)
    camera, light = camera_from_params(camera), light_from_params(light)
    return render(mesh.vertices, mesh.colours, decoder.faces, camera, light, size, **render_options)


def project_mesh_params(decoder: MeshDecoder, params: torch.Tensor, size: tuple[int, int] = (32, 32)) -> torch.Tensor:
    """Where :func:`render_mesh_params` puts each vertex: its pixel in the ``(H, W)`` crop.

    Args:
        decoder: The shape and texture decoder.
        params: ``(P, 144)`` raw mesh-head outputs.
        size: ``(H, W)`` of the crop.

    Returns:
        ``(P, V, 2)`` crop pixel coordinates ``(x, y)``, ``(0, 0)`` the crop's top-left corner.
    """
    code, camera, _ = split_mesh_params(params)
    camera = camera_from_params(camera)
    pixels, _ = project(to_view(decoder(code).vertices, camera), camera, size)
    return pixels
