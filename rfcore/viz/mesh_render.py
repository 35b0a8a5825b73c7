"""Pictures of the decoded and rendered faces in notebook 04: meshes rendered for a camera and light, fits, codes.

:func:`render_face` renders a coloured mesh with :func:`rfcore.mesh.render.render` for physical pose and
light values (the mesh widget's picture), :func:`render_faces` several side by side,
:func:`render_code_dimensions` what single entries of the code ``P_ST`` do, :func:`render_fit` a crop
against its rendering with ``L_pixel``, and :func:`plot_losses` a fit's loss curve. The conventions of
:mod:`rfcore.viz` hold; the pictures of the mesh library (signals, filters, hierarchy) are :mod:`rfcore.viz.mesh`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from rfcore.mesh.camera import Light, camera_from_pose
from rfcore.mesh.decoder import MeshDecoder
from rfcore.mesh.render import render
from rfcore.mesh.template import Mesh
from rfcore.train.mesh_decoder import CodeDistribution
from rfcore.viz.draw import Rendering, side_by_side
from rfcore.viz.mesh import signal_panel


def render_faces(vertices: torch.Tensor, colours: torch.Tensor, faces: torch.Tensor, size: int = 120,
                 **view) -> Rendering:
    """Several coloured meshes rendered side by side with one camera and light (:func:`render_face`).

    Args:
        vertices: ``(N, V, 3)``.
        colours: ``(N, V, 3)``.
        faces: ``(F, 3)`` triangles shared by all.
        size: Side of each picture.
        **view: Pose, distance and light of :func:`render_face`.
    """
    pictures = [render_face(v, c, faces, size=size, **view).image for v, c in zip(vertices, colours)]
    return Rendering(side_by_side(pictures), f"{len(pictures)} faces")


@torch.no_grad()
def render_code_dimensions(decoder: MeshDecoder, codes: CodeDistribution, dimensions: Sequence[int],
                           template: Mesh, spread: float = 2.0, size: int = 110, **view) -> Rendering:
    """What single entries of ``P_ST`` do: each row moves one entry of the mean code by ``-spread, 0, +spread``
    of its standard deviation, then shows how far each vertex moved between the two ends.

    Args:
        decoder: The (pre-trained) decoder.
        codes: The distribution of real faces' codes.
        dimensions: Code entries, one row each.
        template: The decoder's finest mesh (its triangles; the movement is drawn on it).
        spread: How many standard deviations to move.
        size: Side of each picture.
        **view: Pose, distance and light of :func:`render_face`.

    Returns:
        A :class:`Rendering`; ``info`` holds ``displacement``, ``(D, V)``
        vertex distances between the two ends in model units.
    """
    steps = torch.tensor([-spread, 0.0, spread])
    rows, moved = [], []
    for dimension in dimensions:
        code = codes.mean.repeat(3, 1)  # (3, C)
        code[:, dimension] += steps * codes.std[dimension]
        decoded = decoder(code)
        distance = (decoded.vertices[2] - decoded.vertices[0]).norm(dim=-1)  # (V,)
        heat = signal_panel(template, distance.numpy(), size, f"P_ST[{dimension}]")
        faces = render_faces(decoded.vertices, decoded.colours, template.faces, size, **view).image
        rows.append(side_by_side([faces, heat]))
        moved.append(distance)
    displacement = torch.stack(moved)
    caption = "largest vertex movement per entry (model units): " + ", ".join(
        f"{d}: {float(m.max()):.2f}" for d, m in zip(dimensions, displacement))
    return Rendering(np.concatenate(rows, axis=0), caption, "", {"displacement": displacement})


def render_face(
    vertices: torch.Tensor,
    colours: torch.Tensor,
    faces: torch.Tensor,
    pitch: float = 0.0,
    yaw: float = 0.0,
    roll: float = 0.0,
    distance: float = 4.0,
    light: Sequence[float] = (0.0, 0.0, 0.0),
    ambient: float = 0.4,
    size: int = 160,
) -> Rendering:
    """A coloured mesh rendered by :func:`rfcore.mesh.render.render` for a camera and light.

    Physical values rather than raw ``P_cam`` / ``P_ill``: angles in degrees,
    the focal length stays at its default, the point light is white with
    strength ``1 - ambient``, on a grey background.

    Args:
        vertices: ``(V, 3)`` model coordinates.
        colours: ``(V, 3)`` albedo.
        faces: ``(F, 3)`` triangles.
        pitch, yaw, roll: Pose in degrees.
        distance: Camera distance ``z_c`` (the face is about 2 units tall).
        light: Point-light position ``(x_l, y_l, z_l)`` in view space (the
            camera is at the origin, the face at ``z = -distance``).
        ambient: Ambient light level in ``[0, 1]``.
        size: Side of the square picture.

    Returns:
        A :class:`Rendering`; ``info`` holds ``alpha`` (``(size, size)`` opacity).
    """
    angles = torch.tensor([[pitch, yaw, roll]], dtype=torch.float32).deg2rad()
    camera = camera_from_pose(angles, torch.tensor([distance], dtype=torch.float32))
    lights = Light(torch.tensor([light], dtype=torch.float32), torch.full((1, 3), 1.0 - ambient),
                   torch.full((1, 3), float(ambient)))
    with torch.no_grad():
        rendered = render(vertices[None], colours[None], faces, camera, lights, (size, size), background=0.5)
    picture = np.rint(rendered.image[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    caption = (f"pitch {pitch:.0f}, yaw {yaw:.0f}, roll {roll:.0f} degrees, distance {distance:.1f}; "
               f"light at ({light[0]:.1f}, {light[1]:.1f}, {light[2]:.1f}), ambient {ambient:.2f}")
    return Rendering(picture, caption, "", {"alpha": rendered.alpha[0, 0].numpy()})


def render_fit(crop: torch.Tensor, rendered: torch.Tensor, scale: int = 4) -> Rendering:
    """Crop, rendering and their L1 difference side by side, enlarged with whole pixels.

    Args:
        crop: ``(3, H, W)`` target ``I*`` in ``[0, 1]``.
        rendered: ``(3, H, W)`` rendering in ``[0, 1]`` (values above 1 are clipped for display).
        scale: Enlargement factor.

    Returns:
        A :class:`Rendering`; ``info`` holds ``loss``, the ``L_pixel`` of Eq. 3.
    """
    difference = (rendered - crop).abs().sum(dim=0, keepdim=True)  # (1, H, W) L1 over the channels
    loss = float(difference.mean())
    panels = []
    for picture in (crop, rendered.clamp(0, 1), (difference / 3).expand(3, -1, -1)):
        pixels = np.rint(picture.detach().permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        panels.append(np.repeat(np.repeat(pixels, scale, axis=0), scale, axis=1))
    caption = f"crop I*, rendering R, |R - I*| summed over rgb (white = 3): L_pixel = {loss:.4f}"
    return Rendering(side_by_side(panels), caption, "", {"loss": loss})


def plot_losses(losses: Sequence[float], title: str = "") -> Figure:
    """A loss curve against the optimisation step (log scale)."""
    fig = Figure(figsize=(5.0, 3.0), layout="constrained")
    ax = fig.subplots()
    ax.plot(np.arange(len(losses)), losses)
    ax.set_yscale("log")
    ax.set_xlabel("Adam step")
    ax.set_ylabel("$L_{pixel}$")
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    return fig
