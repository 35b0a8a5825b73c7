"""Analysis by synthesis: fit ``P_ST``, ``P_cam`` and ``P_ill`` to one face crop [paper §3.2, Eq. 3].

The mesh branch learns without 3-D labels because the renderer is
differentiable: whatever the head predicts is rendered and compared with
the face crop by ``L_pixel``, and the gradient says how to change the
prediction. :func:`fit_mesh` does the same for a single crop, without a
network: it starts from the mean face (all 144 raw values 0: the decoder's
code 0, a frontal face filling the crop, lit from the camera) and follows
the gradient of ``L_pixel`` with Adam. The decoder itself stays fixed.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from rfcore.mesh.branch import render_mesh_params
from rfcore.mesh.decoder import MeshDecoder
from rfcore.mesh.loss import pixel_loss
from rfcore.model.retinaface import MESH_PARAMS


class FitResult(NamedTuple):
    """Outcome of :func:`fit_mesh`.

    Attributes:
        params: ``(144,)`` raw ``[P_ST, P_cam, P_ill]`` after the last step.
        losses: ``L_pixel`` before every step and, last, of ``params``
            (``steps + 1`` values).
        rendered: ``(3, H, W)`` rendering of ``params``.
    """

    params: torch.Tensor
    losses: list[float]
    rendered: torch.Tensor


def border_colour(crop: torch.Tensor) -> torch.Tensor:
    """Mean colour of the outermost pixels of crops, a guess of their background: ``(..., 3, H, W) -> (..., 3, 1, 1)``."""
    edges = [crop[..., 0, :], crop[..., -1, :], crop[..., 1:-1, 0], crop[..., 1:-1, -1]]
    ring = torch.cat(edges, dim=-1)  # (..., 3, 2W + 2H - 4)
    return ring.mean(dim=-1)[..., None, None]


def fit_mesh(
    decoder: MeshDecoder,
    crop: torch.Tensor,
    steps: int = 200,
    lr: float = 0.05,
    background: float | torch.Tensor | None = None,
) -> FitResult:
    """Minimise ``L_pixel`` of one crop over the 144 mesh parameters with Adam.

    Args:
        decoder: The shape and texture decoder; its weights are not changed
            (an untrained decoder ignores the code, so only the camera and
            light can move).
        crop: ``(3, H, W)`` face crop ``I*``, rgb in ``[0, 1]``.
        steps: Adam steps.
        lr: Adam learning rate.
        background: Colour rendered behind the face, a number or ``(3, 1, 1)``;
            ``None`` for the mean colour of the crop's border.

    Returns:
        The :class:`FitResult`.

    Raises:
        ValueError: If ``crop`` is not ``(3, H, W)`` or ``steps`` is negative.
    """
    if crop.ndim != 3 or crop.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) crop, got {tuple(crop.shape)}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    crop = crop.detach()
    background = border_colour(crop) if background is None else background
    params = torch.zeros(1, MESH_PARAMS, requires_grad=True)
    optimiser = torch.optim.Adam([params], lr=lr)
    losses = []
    for _ in range(steps):
        rendered = render_mesh_params(decoder, params, tuple(crop.shape[1:]), background=background).image
        loss = pixel_loss(rendered, crop[None])[0]
        # only the parameters get a gradient: the decoder's .grad stays untouched
        (params.grad,) = torch.autograd.grad(loss, [params])
        optimiser.step()
        losses.append(loss.item())
    with torch.no_grad():
        rendered = render_mesh_params(decoder, params, tuple(crop.shape[1:]), background=background).image
        losses.append(pixel_loss(rendered, crop[None])[0].item())
    return FitResult(params.detach()[0], losses, rendered[0])
