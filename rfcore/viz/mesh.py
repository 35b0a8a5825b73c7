"""Pictures of the mesh library in notebook 04: the template, signals on it, filters, the hierarchy.

Meshes are drawn seen from the front (``x`` right, ``y`` up), scaled to fill a square panel. A per-vertex
signal is shown as dots coloured from blue (negative) through white (0) to red (positive); vertices where
it is exactly 0 get a small grey dot, so the support of a signal is visible. The conventions of
:mod:`rfcore.viz` hold. Decoded and rendered faces are :mod:`rfcore.viz.mesh_render`'s, meshes drawn on
photographs :mod:`rfcore.viz.mesh_overlay`'s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure

from rfcore.mesh.chebconv import ChebConv, chebyshev_response, scaled_laplacian
from rfcore.mesh.hierarchy import MeshHierarchy, adjacency_matrix
from rfcore.mesh.laplacian import hop_distances
from rfcore.mesh.template import LANDMARK_NAMES, Mesh
from rfcore.viz.draw import LANDMARK_COLORS, Rendering, check_image, side_by_side
from rfcore.viz.mesh_overlay import BACKGROUND, draw_wireframe, mesh_edges

ZERO_COLOR = (150, 150, 150)
SIGNAL_CMAP = "RdBu_r"
MARGIN = 0.1
"""Empty border of a mesh panel, as a fraction of its side."""


# ---------------------------------------------------------------- drawing


def front_pixels(vertices: torch.Tensor, size: int) -> np.ndarray:
    """Front view of ``(V, 3)`` vertices in a ``size x size`` panel: ``(V, 2)`` pixel ``(x, y)``, y down.

    The ``(x, y)`` extent is centred and scaled to fill the panel less its margin.
    """
    xy = vertices[:, :2].double().numpy()
    low, high = xy.min(axis=0), xy.max(axis=0)
    scale = size * (1 - 2 * MARGIN) / max(float((high - low).max()), 1e-9)
    centred = (xy - (low + high) / 2) * scale
    return np.stack([size / 2 + centred[:, 0], size / 2 - centred[:, 1]], axis=1)


def signal_colors(values: np.ndarray, limit: float | None = None) -> np.ndarray:
    """``(V,)`` values -> ``(V, 3)`` uint8 RGB on a blue-white-red scale symmetric about 0.

    Args:
        values: The signal.
        limit: Value shown at full red (``-limit`` at full blue); ``None`` for ``max |values|``.
    """
    values = np.asarray(values, dtype=np.float64)
    limit = float(np.abs(values).max()) if limit is None else limit
    levels = 0.5 + 0.5 * values / max(limit, 1e-12)
    return np.rint(colormaps[SIGNAL_CMAP](np.clip(levels, 0, 1))[:, :3] * 255).astype(np.uint8)


def draw_signal(image: np.ndarray, pixels: np.ndarray, values, limit: float | None = None,
                radius: int = 4) -> np.ndarray:
    """Dots coloured by a per-vertex signal; exact zeros as small grey dots (on a copy).

    Args:
        image: ``(H, W, 3)`` uint8.
        pixels: ``(V, 2)`` dot centres.
        values: ``(V,)`` signal.
        limit: Colour-scale limit (see :func:`signal_colors`).
        radius: Dot radius in pixels.
    """
    canvas = check_image(image).copy()
    values = np.asarray(values, dtype=np.float64)
    colors = signal_colors(values, limit)
    for (x, y), value, color in zip(np.rint(pixels).astype(int).tolist(), values, colors.tolist()):
        if value == 0:
            cv2.circle(canvas, (x, y), 1, ZERO_COLOR, -1, cv2.LINE_8)
        else:
            cv2.circle(canvas, (x, y), radius, color, -1, cv2.LINE_8)
    return canvas


def signal_panel(mesh: Mesh, values, size: int, title: str = "", limit: float | None = None) -> np.ndarray:
    """A mesh's wireframe with a signal on its vertices and an optional title: ``(size, size, 3)`` uint8."""
    pixels = front_pixels(mesh.vertices, size)
    canvas = np.full((size, size, 3), BACKGROUND, np.uint8)
    spacing = size * (1 - 2 * MARGIN) / math.sqrt(mesh.num_vertices)  # about the distance between neighbours
    radius = min(6, max(2, round(0.3 * spacing)))
    canvas = draw_signal(draw_wireframe(canvas, pixels, mesh.faces), pixels, values, limit, radius)
    if title:
        cv2.putText(canvas, title, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_8)
    return canvas


# ---------------------------------------------------------------- renders


def render_wireframe(mesh: Mesh, size: int = 320) -> Rendering:
    """The mesh's edges seen from the front, its landmark vertices as coloured dots.

    Args:
        mesh: The mesh (e.g. :func:`~rfcore.mesh.template.face_template`).
        size: Side of the square picture.

    Returns:
        A :class:`Rendering`; ``info`` holds ``vertices``, ``edges`` and
        ``triangles`` (counts) and ``pixels`` (``(V, 2)`` positions in the picture).
    """
    pixels = front_pixels(mesh.vertices, size)
    canvas = draw_wireframe(np.full((size, size, 3), BACKGROUND, np.uint8), pixels, mesh.faces)
    for k, name in enumerate(LANDMARK_NAMES):
        if name in mesh.landmarks:
            x, y = np.rint(pixels[mesh.landmarks[name]]).astype(int).tolist()
            cv2.circle(canvas, (x, y), 4, LANDMARK_COLORS[k], -1, cv2.LINE_8)
    edges = len(mesh_edges(mesh.faces, mesh.num_vertices))
    counts = {"vertices": mesh.num_vertices, "edges": edges, "triangles": len(mesh.faces)}
    caption = f"{counts['vertices']} vertices, {edges} edges, {counts['triangles']} triangles"
    return Rendering(canvas, caption, "", {**counts, "pixels": pixels})


def render_signals(mesh: Mesh, signals, titles: Sequence[str] = (), size: int = 200,
                   shared_scale: bool = False) -> Rendering:
    """Several per-vertex signals on one mesh, one panel each, in a row.

    Args:
        mesh: The mesh.
        signals: ``(N, V)`` values.
        titles: Optional ``N`` panel titles.
        size: Side of each panel.
        shared_scale: One colour scale for all panels instead of one each.

    Returns:
        A :class:`Rendering`; the caption gives each panel's range.

    Raises:
        ValueError: If ``signals`` is not ``(N, V)``.
    """
    signals = np.asarray(signals, dtype=np.float64)
    if signals.ndim != 2 or signals.shape[1] != mesh.num_vertices:
        raise ValueError(f"expected (N, {mesh.num_vertices}) signals, got {signals.shape}")
    titles = list(titles) or [""] * len(signals)
    limit = float(np.abs(signals).max()) if shared_scale else None
    panels = [signal_panel(mesh, values, size, title, limit) for values, title in zip(signals, titles)]
    ranges = [f"{title or i}: [{values.min():.3g}, {values.max():.3g}]"
              for i, (values, title) in enumerate(zip(signals, titles))]
    return Rendering(side_by_side(panels), "; ".join(ranges))


def render_chebyshev_impulse(mesh: Mesh, vertex: int, K: int, size: int = 200) -> Rendering:
    """``T_k(L~) delta`` for ``k = 0 .. K-1``: how far each Chebyshev term spreads an impulse.

    The terms come from :meth:`rfcore.mesh.chebconv.ChebConv.chebyshev_terms`
    on the mesh's scaled Laplacian, applied to a signal that is 1 at
    ``vertex`` and 0 elsewhere. Term ``k`` is a polynomial of degree ``k``
    in a matrix with the sparsity of the adjacency, so it is non-zero at
    most ``k`` edges away.

    Args:
        mesh: The mesh.
        vertex: Where the impulse is.
        K: Number of terms.
        size: Side of each panel.

    Returns:
        A :class:`Rendering` with one panel per term; ``info`` holds
        ``terms`` (``(K, V)`` float64), ``hops`` (``(V,)`` edge distance
        from ``vertex``), ``support`` (non-zero vertices per term) and
        ``reach`` (largest hop distance of a non-zero vertex per term).

    Raises:
        ValueError: If ``vertex`` is not a vertex or ``K < 1``.
    """
    adjacency = adjacency_matrix(mesh.faces, mesh.num_vertices).double()
    hops = hop_distances(adjacency, vertex)
    with torch.random.fork_rng():  # the layer's random weights are not used: leave the global generator alone
        conv = ChebConv(1, 1, K, scaled_laplacian(adjacency))
    impulse = torch.zeros(1, mesh.num_vertices, 1, dtype=torch.float64)
    impulse[0, vertex] = 1
    terms = conv.chebyshev_terms(impulse)[:, 0, :, 0]  # (K, 1, V, 1) -> (K, V)
    nonzero = terms != 0
    support = nonzero.sum(dim=1).tolist()
    reach = [int(hops[row].max()) for row in nonzero]
    picture = render_signals(mesh, terms.numpy(), [f"T{k}" for k in range(K)], size).image
    caption = "non-zero vertices per term: " + ", ".join(
        f"T{k}: {n} (up to {r} hops)" for k, (n, r) in enumerate(zip(support, reach))
    )
    return Rendering(picture, caption, "", {"terms": terms, "hops": hops, "support": support, "reach": reach})


def render_upsampling(hierarchy: MeshHierarchy, level: int, values, size: int = 240) -> Rendering:
    """A signal on mesh level ``level`` and its barycentric up-sampling ``U x`` on the next level.

    Args:
        hierarchy: The mesh levels.
        level: Coarse level index, ``0 .. len(levels) - 2``.
        values: ``(V_level,)`` signal on the coarse level.
        size: Side of each panel.

    Returns:
        A :class:`Rendering` (coarse panel, fine panel, one colour scale);
        ``info`` holds ``fine`` (``(V_{level+1},)`` up-sampled values).

    Raises:
        ValueError: If ``level`` has no finer level or ``values`` has the wrong length.
    """
    if not 0 <= level < len(hierarchy.upsampling):
        raise ValueError(f"level must be in 0..{len(hierarchy.upsampling) - 1}, got {level}")
    coarse_mesh, fine_mesh = hierarchy.meshes[level], hierarchy.meshes[level + 1]
    values = torch.as_tensor(values, dtype=torch.float32)
    if values.shape != (coarse_mesh.num_vertices,):
        raise ValueError(f"expected ({coarse_mesh.num_vertices},) values on level {level}, got {tuple(values.shape)}")
    fine = torch.sparse.mm(hierarchy.upsampling[level], values[:, None])[:, 0]
    limit = float(values.abs().max())
    panels = [
        signal_panel(coarse_mesh, values.numpy(), size, f"level {level}: {coarse_mesh.num_vertices} vertices", limit),
        signal_panel(fine_mesh, fine.numpy(), size, f"level {level + 1}: {fine_mesh.num_vertices} vertices", limit),
    ]
    caption = (f"U is {fine_mesh.num_vertices} x {coarse_mesh.num_vertices} with "
               f"{hierarchy.upsampling[level]._nnz()} non-zeros; every row sums to 1")
    return Rendering(side_by_side(panels), caption, "", {"fine": fine})


def render_hierarchy(hierarchy: MeshHierarchy, size: int = 200) -> Rendering:
    """Every level of the mesh hierarchy as a wireframe, coarsest first.

    Returns:
        A :class:`Rendering` with one panel per level; ``info`` holds
        ``vertices`` (per level) and ``triangles`` (per level).
    """
    panels = []
    for level, mesh in enumerate(hierarchy.meshes):
        panel = draw_wireframe(np.full((size, size, 3), BACKGROUND, np.uint8), front_pixels(mesh.vertices, size),
                               mesh.faces, (120, 120, 120))
        cv2.putText(panel, f"level {level}: {mesh.num_vertices} vertices", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (0, 0, 0), 1, cv2.LINE_8)
        panels.append(panel)
    counts = {"vertices": list(hierarchy.num_vertices), "triangles": [len(mesh.faces) for mesh in hierarchy.meshes]}
    caption = "vertices per level: " + ", ".join(map(str, counts["vertices"])) + \
        "; triangles: " + ", ".join(map(str, counts["triangles"]))
    return Rendering(side_by_side(panels), caption, "", counts)


def render_position_map(mesh: Mesh, scale: int = 12) -> Rendering:
    """The mesh stored as an image: its ``(x, y, z)`` at each grid vertex as the red, green and blue of one pixel.

    This is the UV position map an ordinary CNN could predict instead of a
    graph convolution on the mesh; it exists for meshes made from a regular
    ``n x n`` grid of ``uv`` (like :func:`~rfcore.mesh.template.face_template`),
    vertex ``row * n + col`` at pixel ``(row, col)``, ``v`` up.

    Args:
        mesh: A grid mesh with ``n^2`` vertices.
        scale: Enlargement of each pixel.

    Returns:
        A :class:`Rendering`: the wireframe beside the enlarged map (each
        channel stretched to 0-255); ``info`` holds ``map``, the ``(n, n, 3)``
        float32 positions.

    Raises:
        ValueError: If the mesh is not an ``n x n`` grid in ``uv``.
    """
    side = round(math.sqrt(mesh.num_vertices))
    expected_uv = torch.stack(torch.meshgrid(torch.linspace(-1, 1, side), torch.linspace(-1, 1, side),
                                             indexing="ij")[::-1], dim=-1).reshape(-1, 2)  # (n*n, 2) (u, v)
    if side * side != mesh.num_vertices or not torch.allclose(mesh.uv, expected_uv, atol=1e-6):
        raise ValueError(f"a position map needs a mesh on a regular uv grid, got {mesh.num_vertices} vertices")
    positions = mesh.vertices.reshape(side, side, 3).flip(0)  # (n*n, 3) -> (n, n, 3), row 0 at the top (v up)
    low, high = positions.amin(dim=(0, 1)), positions.amax(dim=(0, 1))
    pixels = np.rint(((positions - low) / (high - low)).numpy() * 255).astype(np.uint8)
    enlarged = np.repeat(np.repeat(pixels, scale, axis=0), scale, axis=1)
    wireframe = render_wireframe(mesh, size=enlarged.shape[0]).image
    caption = f"{side} x {side} x 3 position map: x -> red, y -> green, z -> blue ({mesh.num_vertices} pixels)"
    return Rendering(side_by_side([wireframe, enlarged]), caption, "", {"map": positions})


# ---------------------------------------------------------------- plots


def plot_spectra(spectra: dict[str, torch.Tensor]) -> Figure:
    """Sorted eigenvalues of one or more Laplacians.

    Args:
        spectra: ``{name: (V,) eigenvalues}``.

    Returns:
        A Figure with one line per Laplacian against the eigenvalue's index.
    """
    fig = Figure(figsize=(5.5, 3.2), layout="constrained")
    ax = fig.subplots()
    for name, values in spectra.items():
        values = np.sort(np.asarray(values, dtype=np.float64))
        ax.plot(np.arange(len(values)), values, label=f"{name}: [{values[0]:.2f}, {values[-1]:.2f}]")
    ax.set_xlabel("index k (ascending)")
    ax.set_ylabel("eigenvalue $\\lambda_k$")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def plot_filter_response(theta: torch.Tensor, eigenvalues: torch.Tensor, lambda_max: float = 2.0) -> Figure:
    """A Chebyshev filter's gain ``g(lambda)`` (:func:`rfcore.mesh.chebconv.chebyshev_response`) over
    ``[0, lambda_max]``, with a graph's eigenvalues marked on it.

    Args:
        theta: ``(K,)`` coefficients.
        eigenvalues: ``(N,)`` the frequencies the graph has.
        lambda_max: Upper end of the spectrum.
    """
    theta = torch.as_tensor(theta, dtype=torch.float64)
    line = torch.linspace(0, lambda_max, 201, dtype=torch.float64)
    fig = Figure(figsize=(5.0, 3.0), layout="constrained")
    ax = fig.subplots()
    ax.plot(line.numpy(), chebyshev_response(theta, line, lambda_max).numpy(), label="$g(\\lambda)$")
    marks = torch.as_tensor(eigenvalues, dtype=torch.float64)
    ax.plot(marks.numpy(), chebyshev_response(theta, marks, lambda_max).numpy(), "o", label="the graph's eigenvalues")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("graph frequency $\\lambda$")
    ax.set_ylabel("gain")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig
