"""Mesh levels, coarse to fine, with up-sampling and adjacency matrices.

The decoder starts on a coarse mesh and moves to finer ones, as in CoMA
[Ranjan et al. 2018]: each level has about four times the vertices of the
one before. The built-in levels are face templates on nested grids
(2, 4, 8, 16 cells per side: 9, 25, 81, 289 vertices), so every fine vertex
is either a coarse vertex or the midpoint of a coarse edge.

* Up-sampling ``U`` ``(V_fine, V_coarse)``: row ``i`` holds the barycentric
  coordinates of fine vertex ``i`` in the coarse triangle that contains it
  (found in the ``uv`` parameter square), so every row is non-negative and
  sums to 1, and ``U @ x`` interpolates a per-vertex signal ``x``.
* Adjacency ``E`` ``(V, V)``: 1 where two vertices share a triangle edge,
  the ``E`` of the paper's ``G = (V, E)`` [paper §3.2].

All matrices are sparse ``torch`` COO tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rfcore.mesh.template import Mesh, face_template

BARYCENTRIC_EPS = 1e-9
"""Barycentric weights below this are dropped (a fine vertex on a coarse edge or vertex)."""


@dataclass(frozen=True, eq=False)
class MeshHierarchy:
    """Mesh levels from coarse to fine and the matrices between them.

    Attributes:
        meshes: The levels, coarsest first; the last is the template the
            decoder deforms.
        upsampling: ``len(meshes) - 1`` sparse ``(V_{l+1}, V_l)`` matrices.
        adjacency: One sparse symmetric ``(V_l, V_l)`` 0/1 matrix per level.
    """

    meshes: tuple[Mesh, ...]
    upsampling: tuple[torch.Tensor, ...]
    adjacency: tuple[torch.Tensor, ...]

    @property
    def template(self) -> Mesh:
        """The finest level."""
        return self.meshes[-1]

    @property
    def num_vertices(self) -> tuple[int, ...]:
        """Vertices per level, coarsest first."""
        return tuple(mesh.num_vertices for mesh in self.meshes)


def adjacency_matrix(faces: torch.Tensor, num_vertices: int) -> torch.Tensor:
    """Vertex adjacency of a triangle mesh.

    Args:
        faces: ``(F, 3)`` int64 vertex indices.
        num_vertices: ``V``.

    Returns:
        Sparse coalesced float32 ``(V, V)``, symmetric, 1 for each edge, 0 on the diagonal.
    """
    # the three edges of every triangle, both directions: (F, 3) -> (6F, 2)
    edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = torch.cat([edges, edges.flip(1)])
    shape = (num_vertices, num_vertices)
    # coalescing sums duplicates: an edge shared by two triangles is counted twice, so reset the values to 1
    counted = torch.sparse_coo_tensor(edges.T, torch.ones(len(edges)), shape, check_invariants=True)
    indices = counted.coalesce().indices()
    return torch.sparse_coo_tensor(indices, torch.ones(indices.shape[1]), shape, check_invariants=True).coalesce()


def barycentric(points: torch.Tensor, triangles: torch.Tensor) -> torch.Tensor:
    """Barycentric coordinates of 2-D points in 2-D triangles.

    Args:
        points: ``(P, 2)``.
        triangles: ``(T, 3, 2)`` non-degenerate.

    Returns:
        ``(P, T, 3)``: weights of the three corners (sum 1; all ``>= 0`` inside).
    """
    a, b, c = triangles.unbind(1)  # (T, 2) each
    p = points[:, None]  # (P, 1, 2)
    # each weight is the area of the triangle with that corner moved to the point, over the whole area
    areas = [signed_area2(p, b, c), signed_area2(a, p, c), signed_area2(a, b, p)]
    return torch.stack(areas, dim=-1) / signed_area2(a, b, c)[:, None]


def signed_area2(o: torch.Tensor, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Twice the signed area of the 2-D triangles ``(o, s, t)`` (positive counter-clockwise), broadcasting."""
    return (s[..., 0] - o[..., 0]) * (t[..., 1] - o[..., 1]) - (s[..., 1] - o[..., 1]) * (t[..., 0] - o[..., 0])


def upsampling_matrix(coarse_uv: torch.Tensor, coarse_faces: torch.Tensor, fine_uv: torch.Tensor) -> torch.Tensor:
    """Barycentric up-sampling from a coarse mesh to a fine one (CoMA-style).

    Each fine vertex takes the weights of the coarse triangle containing it
    in ``uv``; a vertex just outside every triangle takes the triangle it is
    least outside of, with negative weights clipped and the rest rescaled.

    Args:
        coarse_uv: ``(Vc, 2)`` parameter coordinates of the coarse mesh.
        coarse_faces: ``(Fc, 3)`` coarse triangles.
        fine_uv: ``(Vf, 2)`` parameter coordinates of the fine mesh.

    Returns:
        Sparse coalesced float32 ``(Vf, Vc)`` with non-negative rows summing to 1.
    """
    weights = barycentric(fine_uv.double(), coarse_uv.double()[coarse_faces])  # (Vf, Fc, 3)
    best = weights.min(dim=2).values.argmax(dim=1)  # (Vf,) the most-inside triangle
    rows = torch.arange(len(fine_uv))
    chosen = weights[rows, best]  # (Vf, 3)
    chosen = torch.where(chosen < BARYCENTRIC_EPS, 0.0, chosen)  # clip negative and negligible weights
    chosen = chosen / chosen.sum(dim=1, keepdim=True)
    keep = chosen > 0
    indices = torch.stack([rows[:, None].expand(-1, 3)[keep], coarse_faces[best][keep]])
    shape = (len(fine_uv), len(coarse_uv))
    return torch.sparse_coo_tensor(indices, chosen[keep].float(), shape, check_invariants=True).coalesce()


def vertex_matmul(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Apply a sparse vertex operator to a batch of per-vertex features.

    Args:
        matrix: Sparse ``(V_out, V_in)``.
        x: ``(B, V_in, C)``.

    Returns:
        ``(B, V_out, C)``, ``matrix @ x[b]`` for every ``b``.
    """
    batch, num_in, channels = x.shape
    # (B, V_in, C) -> (V_in, B*C): one sparse product for the whole batch
    flat = x.permute(1, 0, 2).reshape(num_in, batch * channels)
    out = torch.sparse.mm(matrix, flat)
    # (V_out, B*C) -> (B, V_out, C)
    return out.reshape(matrix.shape[0], batch, channels).permute(1, 0, 2)


def hierarchy_from_meshes(meshes: Sequence[Mesh]) -> MeshHierarchy:
    """Link given mesh levels, coarsest first, by their ``uv`` coordinates.

    For a user mesh (:func:`rfcore.mesh.template.load_obj`) pass coarse
    face templates followed by it, e.g. ``[face_template(2), face_template(4),
    face_template(8), load_obj(path)]``.

    Args:
        meshes: At least one level, coarsest first.

    Returns:
        The :class:`MeshHierarchy`.

    Raises:
        ValueError: If ``meshes`` is empty or a ``uv`` lies outside ``[-1, 1]^2``.
    """
    if not meshes:
        raise ValueError("a mesh hierarchy needs at least one level")
    for level, mesh in enumerate(meshes):
        if mesh.uv.abs().max() > 1 + 1e-6:
            raise ValueError(f"level {level}: uv must lie in [-1, 1]^2, got |uv| up to {float(mesh.uv.abs().max())}")
    upsampling = tuple(
        upsampling_matrix(coarse.uv, coarse.faces, fine.uv) for coarse, fine in zip(meshes, meshes[1:])
    )
    adjacency = tuple(adjacency_matrix(mesh.faces, mesh.num_vertices) for mesh in meshes)
    return MeshHierarchy(tuple(meshes), upsampling, adjacency)


def build_hierarchy(levels: int = 4, cells: int = 16) -> MeshHierarchy:
    """The built-in hierarchy: face templates on nested grids.

    Args:
        levels: Number of levels.
        cells: Grid cells per side of the finest level; halved per coarser
            level, so it must be divisible by ``2**(levels - 1)``.

    Returns:
        The hierarchy; with the defaults its levels have 9, 25, 81 and 289
        vertices (the finest has 512 triangles).

    Raises:
        ValueError: If ``levels < 1`` or ``cells`` cannot be halved ``levels - 1`` times.
    """
    if levels < 1 or cells % 2 ** (levels - 1):
        raise ValueError(f"need levels >= 1 and cells divisible by 2**(levels-1), got levels={levels}, cells={cells}")
    return hierarchy_from_meshes([face_template(cells >> k) for k in reversed(range(levels))])
