"""A soft rasteriser in plain PyTorch: the differentiable renderer ``R`` [paper §3.2, Eq. 3].

A hard rasteriser gives each pixel the colour of the nearest triangle that contains it, which has no
useful gradient with respect to where the triangle is. Here, in the spirit of SoftRas [Liu et al. 2019],
every triangle covers every pixel partly, with a smoothstep of its signed distance that reaches 0 and 1
at ``sigma`` pixels outside and inside; depth decides by a softmax, and the opacity ramps across the
silhouette (the formulas: :func:`render`). Two rasterisers compute the same image:
:func:`rasterise_dense` evaluates every triangle at every pixel (short and obviously right, the
reference); :func:`rasterise_windowed` only the pixels of each triangle's box grown by ``sigma``, where
coverage is exactly zero beyond, so the two agree to rounding and the windowed one is much faster (the
default).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from rfcore.mesh.camera import Camera, Light, project, to_view
from rfcore.mesh.shading import lambert, vertex_normals

SIGMA = 1.0
"""Half-width in pixels of the soft band around each triangle edge."""

GAMMA = 0.02
"""Depth temperature of the softmax, in model units (the face is 2 units tall)."""

DISTANCE_EPS = 1e-12
"""Added under the square root of squared distances (keeps the gradient finite on an edge)."""

WEIGHT_EPS = 1e-12
"""Keeps barycentric and colour normalisations away from 0 / 0."""


class Rendered(NamedTuple):
    """Output of the rasterisers.

    Attributes:
        image: ``(B, 3, H, W)`` rgb, composited over the background.
        alpha: ``(B, 1, H, W)`` opacity ``A`` of the mesh.
    """

    image: torch.Tensor
    alpha: torch.Tensor


def smoothstep(t: torch.Tensor) -> torch.Tensor:
    """``3t^2 - 2t^3`` with ``t`` clipped to ``[0, 1]``: a compact, C1 sigmoid."""
    t = t.clamp(0, 1)
    return t * t * (3 - 2 * t)


def pixel_centres(size: tuple[int, int], dtype: torch.dtype, device=None) -> torch.Tensor:
    """``(H * W, 2)`` centres ``(j + 0.5, i + 0.5)`` of the pixels, row-major."""
    height, width = size
    rows = torch.arange(height, dtype=dtype, device=device) + 0.5
    cols = torch.arange(width, dtype=dtype, device=device) + 0.5
    y, x = torch.meshgrid(rows, cols, indexing="ij")
    return torch.stack([x, y], dim=-1).reshape(-1, 2)  # (H, W, 2) -> (HW, 2)


TERMS = 10
"""Rows of :func:`triangle_terms`: corner x, y; edge x, y; 1 / squared edge length; orientation; depth; r, g, b."""


def triangle_terms(corners: torch.Tensor, depths: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
    """What the rasterisers need of each triangle, computed once per triangle rather than per pixel.

    Args:
        corners: ``(..., 3, 2)`` projected corners in pixels.
        depths: ``(..., 3)`` corner depths.
        colours: ``(..., 3, 3)`` corner colours (corner, rgb).

    Returns:
        ``(..., TERMS, 3)``: per corner ``k`` (edge ``k`` runs from corner ``k``
        to corner ``k+1``) its ``x``, ``y``, the edge vector's ``x``, ``y``,
        ``1 / |edge|^2``, the triangle's orientation (sign of its area, the
        same in all three columns; 0 when degenerate), the depth and the colour.
    """
    x, y = corners.unbind(-1)  # (..., 3) each
    edge_x, edge_y = x.roll(-1, dims=-1) - x, y.roll(-1, dims=-1) - y
    inv_length2 = 1 / (edge_x * edge_x + edge_y * edge_y).clamp(min=WEIGHT_EPS)
    area2 = edge_x[..., :1] * edge_y[..., 2:] - edge_y[..., :1] * edge_x[..., 2:]  # edge 0 x edge 2, (..., 1)
    orientation = -torch.sign(area2).detach().expand_as(x)  # +1 when the edge functions are >= 0 inside
    rows = [x, y, edge_x, edge_y, inv_length2, orientation, depths, *colours.unbind(-1)]
    return torch.stack(rows, dim=-2)


def triangle_at_pixels(
    terms: torch.Tensor, pixel_x: torch.Tensor, pixel_y: torch.Tensor, sigma: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Coverage, depth and colour of triangles at pixels, for any broadcast shape ``(...)``.

    Args:
        terms: ``(..., TERMS, 3)`` from :func:`triangle_terms`.
        pixel_x: ``(...)`` pixel centre x.
        pixel_y: ``(...)`` pixel centre y.
        sigma: Half-width of the soft edge band in pixels.

    Returns:
        Coverage ``D`` ``(...)`` in ``[0, 1]``, interpolated depth ``(...)`` and
        colour ``(..., 3)``.
    """
    x, y, edge_x, edge_y, inv_length2, orientation = terms[..., :6, :].unbind(-2)  # (..., 3) each
    offset_x, offset_y = pixel_x[..., None] - x, pixel_y[..., None] - y  # from each corner to the pixel
    # edge functions: twice the area of (corner k, corner k+1, pixel); >= 0 inside after the orientation
    side = (edge_x * offset_y - edge_y * offset_x) * orientation
    along = ((offset_x * edge_x + offset_y * edge_y) * inv_length2).clamp(0, 1)
    to_edge_x, to_edge_y = offset_x - along * edge_x, offset_y - along * edge_y  # from the nearest edge point
    distance = torch.sqrt((to_edge_x * to_edge_x + to_edge_y * to_edge_y).amin(-1) + DISTANCE_EPS)
    inside = (side >= 0).all(-1) & (orientation[..., 0] != 0)
    coverage = smoothstep((torch.where(inside, distance, -distance) + sigma) / (2 * sigma))
    # edge k lies opposite corner k+2, so corner j's weight is edge (j+1)'s function
    weights = side.clamp(min=0).roll(-1, dims=-1) + WEIGHT_EPS
    weights = weights / weights.sum(-1, keepdim=True)
    attributes = (weights[..., None, :] * terms[..., 6:, :]).sum(-1)  # (..., 4): depth, r, g, b
    return coverage, attributes[..., 0], attributes[..., 1:]


def softmax_weights(coverage: torch.Tensor, depth: torch.Tensor, nearest: torch.Tensor, gamma: float) -> torch.Tensor:
    """``D_j exp(-(z_j - z_nearest) / gamma)``; ``nearest`` (detached) only keeps ``exp`` in range."""
    shifted = torch.where(coverage > 0, depth - nearest, torch.zeros_like(depth))
    return coverage * torch.exp(-shifted / gamma)


def composite(
    coverage_sum: torch.Tensor,
    weight_sum: torch.Tensor,
    weighted_colour: torch.Tensor,
    size: tuple[int, int],
    background: float | torch.Tensor,
) -> Rendered:
    """Turn per-pixel sums into the image ``A F + (1 - A) background``.

    Args:
        coverage_sum: ``(B, H*W)`` ``sum_j D_j``.
        weight_sum: ``(B, H*W)`` ``sum_j w_j``.
        weighted_colour: ``(B, H*W, 3)`` ``sum_j w_j C_j``.
        size: ``(H, W)``.
        background: Scalar or tensor broadcastable to ``(B, 3, H, W)``.

    Returns:
        :class:`Rendered`.
    """
    batch, (height, width) = coverage_sum.shape[0], size
    alpha = smoothstep(coverage_sum.clamp(max=1)).reshape(batch, 1, height, width)
    colour = weighted_colour / weight_sum.clamp(min=WEIGHT_EPS)[..., None]
    colour = colour.reshape(batch, height, width, 3).permute(0, 3, 1, 2)  # (B, HW, 3) -> (B, 3, H, W)
    return Rendered(alpha * colour + (1 - alpha) * background, alpha)


def rasterise_dense(
    pixels: torch.Tensor,
    depth: torch.Tensor,
    colours: torch.Tensor,
    faces: torch.Tensor,
    size: tuple[int, int],
    sigma: float = SIGMA,
    gamma: float = GAMMA,
    background: float | torch.Tensor = 0.0,
) -> Rendered:
    """Reference soft rasteriser: every triangle at every pixel.

    Args:
        pixels: ``(B, V, 2)`` projected vertices in pixels.
        depth: ``(B, V)`` vertex depths.
        colours: ``(B, V, 3)`` lit vertex colours.
        faces: ``(F, 3)`` triangles.
        size: ``(H, W)`` of the image.
        sigma: Half-width of the soft edge band in pixels.
        gamma: Depth temperature in model units.
        background: Scalar or tensor broadcastable to ``(B, 3, H, W)``.

    Returns:
        :class:`Rendered`. Memory grows as ``B * F * H * W``.
    """
    centre_x, centre_y = pixel_centres(size, pixels.dtype, pixels.device).unbind(1)  # (HW,) each
    terms = triangle_terms(pixels[:, faces], depth[:, faces], colours[:, faces])  # (B, F, TERMS, 3)
    # (B, F, 1, TERMS, 3) against (HW,) pixels: pair terms of shape (B, F, HW)
    coverage, z, colour = triangle_at_pixels(terms[:, :, None], centre_x, centre_y, sigma)
    nearest = torch.where(coverage > 0, z, torch.inf).amin(dim=1, keepdim=True).detach()
    weight = softmax_weights(coverage, z, nearest, gamma)  # (B, F, HW)
    weighted_colour = (weight[..., None] * colour).sum(1)
    return composite(coverage.sum(1), weight.sum(1), weighted_colour, size, background)


class PixelPairs(NamedTuple):
    """The (triangle, pixel) pairs a windowed rasteriser evaluates.

    Attributes:
        triangle: ``(N,)`` index into the flattened ``(B * F)`` triangles.
        pixel: ``(N,)`` index into the flattened ``(B * H * W)`` pixels.
        centre: ``(N, 2)`` pixel centre ``(x, y)``.
    """

    triangle: torch.Tensor
    pixel: torch.Tensor
    centre: torch.Tensor


def window_pairs(corners: torch.Tensor, size: tuple[int, int], sigma: float) -> PixelPairs:
    """The pixels of each triangle's bounding box grown by ``sigma``, inside the image.

    Args:
        corners: ``(B, F, 3, 2)`` projected corners in pixels (no gradient needed).
        size: ``(H, W)``.
        sigma: Growth in pixels; coverage is exactly 0 outside.

    Returns:
        :class:`PixelPairs`, batch-major then triangle-major.
    """
    batch, num_faces = corners.shape[:2]
    height, width = size
    limit = torch.tensor([width - 1, height - 1], device=corners.device)
    # the centre j + 0.5 of pixel j lies in [low, high] for ceil(low - 0.5) <= j <= floor(high - 0.5)
    first = torch.ceil(corners.amin(2) - sigma - 0.5).clamp(min=0).long()  # (B, F, 2) as (x, y)
    last = torch.minimum(torch.floor(corners.amax(2) + sigma - 0.5).long(), limit)
    count = (last - first + 1).clamp(min=0)  # (B, F, 2)
    span_x, span_y = count.flatten(0, 1).amax(0).tolist() if count.numel() else (0, 0)
    dx = torch.arange(span_x, device=corners.device)
    dy = torch.arange(span_y, device=corners.device)
    valid = (dy[:, None] < count[..., 1, None, None]) & (dx < count[..., 0, None, None])  # (B, F, span_y, span_x)
    b, f, oy, ox = valid.nonzero(as_tuple=True)
    x, y = first[b, f, 0] + ox, first[b, f, 1] + oy
    centre = torch.stack([x, y], dim=1).to(corners.dtype) + 0.5
    return PixelPairs(b * num_faces + f, (b * height + y) * width + x, centre)


def near_pairs(pairs: PixelPairs, terms: torch.Tensor, sigma: float) -> PixelPairs:
    """Drop the pairs whose pixel lies more than ``sigma`` outside one of its triangle's edge lines.

    The distance to the triangle is at least the distance to the line of an
    edge the pixel lies outside of, so these pairs have coverage exactly 0
    and no gradient: leaving them out changes nothing but the work (about a
    third of a bounding box's pixels at 32x32).

    Args:
        pairs: From :func:`window_pairs`.
        terms: ``(B*F, TERMS, 3)`` :func:`triangle_terms` (no gradient needed).
        sigma: Half-width of the soft edge band in pixels.
    """
    x, y, edge_x, edge_y, inv_length2, orientation = terms[pairs.triangle, :6].unbind(-2)  # (N, 3) each
    pixel_x, pixel_y = pairs.centre[:, :1], pairs.centre[:, 1:]  # (N, 1) each
    side = (edge_x * (pixel_y - y) - edge_y * (pixel_x - x)) * orientation  # >= 0 inside
    keep = (side * inv_length2.sqrt()).amin(-1) > -sigma  # signed distance to the nearest-outside edge line
    return PixelPairs(pairs.triangle[keep], pairs.pixel[keep], pairs.centre[keep])


def rasterise_windowed(
    pixels: torch.Tensor,
    depth: torch.Tensor,
    colours: torch.Tensor,
    faces: torch.Tensor,
    size: tuple[int, int],
    sigma: float = SIGMA,
    gamma: float = GAMMA,
    background: float | torch.Tensor = 0.0,
) -> Rendered:
    """Fast soft rasteriser: each triangle only over its grown bounding box.

    Same arguments and result as :func:`rasterise_dense` (to rounding); the
    work grows with the pixels near each triangle instead of ``F * H * W``.
    """
    batch, (height, width) = pixels.shape[0], size
    corners = pixels[:, faces]  # (B, F, 3, 2)
    terms = triangle_terms(corners, depth[:, faces], colours[:, faces]).flatten(0, 1)  # (B*F, TERMS, 3)
    pairs = near_pairs(window_pairs(corners.detach(), size, sigma), terms.detach(), sigma)
    # per-pair copies of the triangle terms: (B*F, TERMS, 3) -> (N, TERMS, 3)
    coverage, z, colour = triangle_at_pixels(terms.index_select(0, pairs.triangle), *pairs.centre.unbind(1), sigma)
    num_pixels = batch * height * width
    covered_depth = torch.where(coverage > 0, z, torch.inf).detach()
    nearest = covered_depth.new_full((num_pixels,), torch.inf).scatter_reduce(0, pairs.pixel, covered_depth, "amin")
    weight = softmax_weights(coverage, z, nearest[pairs.pixel], gamma)  # (N,)

    def per_pixel(values: torch.Tensor) -> torch.Tensor:  # (N, ...) -> (B, HW, ...) sums over pairs
        total = values.new_zeros((num_pixels, *values.shape[1:])).index_add(0, pairs.pixel, values)
        return total.reshape(batch, height * width, *values.shape[1:])

    return composite(per_pixel(coverage), per_pixel(weight), per_pixel(weight[:, None] * colour), size, background)


RASTERISERS = {"windowed": rasterise_windowed, "dense": rasterise_dense}
"""Rasteriser by name; both give the same image."""


def render(
    vertices: torch.Tensor,
    colours: torch.Tensor,
    faces: torch.Tensor,
    camera: Camera,
    light: Light,
    size: tuple[int, int] = (32, 32),
    sigma: float = SIGMA,
    gamma: float = GAMMA,
    background: float | torch.Tensor = 0.0,
    method: str = "windowed",
) -> Rendered:
    """Render coloured meshes: ``R(D_PST, P_cam, P_ill)`` of Eq. 3.

    Transforms to view space, lights each vertex (:func:`~rfcore.mesh.shading.lambert`),
    projects (:func:`~rfcore.mesh.camera.project`) and soft-rasterises.
    Differentiable in vertices, colours, camera and light. For triangle ``j`` and pixel ``p``:

    * coverage ``D_j(p) = s((d_j(p) + sigma) / (2 sigma))`` where ``d_j`` is the
      signed distance (pixels, positive inside) from the pixel centre to the
      projected triangle and ``s(t) = 3t^2 - 2t^3`` on ``[0, 1]`` is the smoothstep,
      a sigmoid-shaped ramp that is exactly 0 beyond ``sigma`` outside the
      triangle and exactly 1 beyond ``sigma`` inside. Because ``s(t) + s(1 - t) = 1``,
      two triangles sharing an edge cover the pixels along it with weights
      that add up to 1: no seams.
    * z-ordering by a softmax over depth: triangle ``j`` gets the weight
      ``w_j ~ D_j exp(-z_j(p) / gamma)``, so nearer triangles win and
      ``gamma`` (model units) says how sharply.
    * the face colour ``F(p) = sum_j w_j C_j(p) / sum_j w_j``, with depth ``z_j(p)``
      and lit colour ``C_j(p)`` interpolated barycentrically (clipped to the
      triangle for pixels just outside it);
    * opacity ``A(p) = s(min(1, sum_j D_j(p)))``: 1 inside the mesh, a soft ramp
      of half-width ``sigma`` across its silhouette;
    * image ``I(p) = A F + (1 - A) background``.

    Args:
        vertices: ``(B, V, 3)`` model coordinates.
        colours: ``(B, V, 3)`` albedo.
        faces: ``(F, 3)`` int64 triangles.
        camera: :class:`~rfcore.mesh.camera.Camera` with batch ``B``.
        light: :class:`~rfcore.mesh.camera.Light` with batch ``B``.
        size: ``(H, W)`` of the image.
        sigma: Half-width of the soft edge band in pixels.
        gamma: Depth temperature in model units.
        background: Scalar or tensor broadcastable to ``(B, 3, H, W)``.
        method: ``"windowed"`` (fast) or ``"dense"`` (reference).

    Returns:
        :class:`Rendered` ``(B, 3, H, W)`` image and ``(B, 1, H, W)`` opacity.

    Raises:
        ValueError: For mismatched shapes, bad faces, a non-positive size,
            ``sigma`` or ``gamma``, or an unknown method.
    """
    _check_render_inputs(vertices, colours, faces, size, sigma, gamma, method)
    view = to_view(vertices, camera)
    lit = lambert(view, vertex_normals(view, faces), colours, light)
    pixels, depth = project(view, camera, size)
    return RASTERISERS[method](pixels, depth, lit, faces, size, sigma, gamma, background)


def _check_render_inputs(vertices, colours, faces, size, sigma, gamma, method) -> None:
    if vertices.ndim != 3 or vertices.shape[2] != 3 or colours.shape != vertices.shape:
        raise ValueError(
            f"expected (B, V, 3) vertices and colours, got {tuple(vertices.shape)} and {tuple(colours.shape)}"
        )
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.dtype != torch.int64:
        raise ValueError(f"faces must be an int64 (F, 3) tensor, got {faces.dtype} {tuple(faces.shape)}")
    if len(faces) and (faces.min() < 0 or faces.max() >= vertices.shape[1]):
        raise ValueError(f"faces index vertices {int(faces.min())}..{int(faces.max())}, have {vertices.shape[1]}")
    if len(size) != 2 or min(size) < 1 or sigma <= 0 or gamma <= 0:
        raise ValueError(f"need a positive (H, W), sigma and gamma, got size={size}, sigma={sigma}, gamma={gamma}")
    if method not in RASTERISERS:
        raise ValueError(f"unknown rasteriser {method!r}; expected one of {list(RASTERISERS)}")
