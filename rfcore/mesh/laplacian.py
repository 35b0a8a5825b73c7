"""Graph Laplacians of a mesh, their spectrum, and hop distances [paper §3.2].

For a mesh ``G = (V, E)`` with 0/1 adjacency ``E`` and degrees
``D_ii = sum_j E_ij``:

* the Laplacian ``L = D - E`` measures how much a per-vertex signal ``x``
  differs from its neighbours: ``(L x)_i = sum_j E_ij (x_i - x_j)``, and
  ``x^T L x = sum over edges (x_i - x_j)^2``. Constant signals have
  ``L x = 0``; its eigenvalues lie in ``[0, 2 max_degree]``;
* the normalised Laplacian ``I - D^(-1/2) E D^(-1/2)`` does the same with
  every vertex weighted by its degree; its eigenvalues lie in ``[0, 2]``,
  which is what lets :mod:`rfcore.mesh.chebconv` take ``lambda_max = 2``.

The eigenvectors of a Laplacian are the graph's Fourier basis: small
eigenvalues belong to smooth, slowly varying signals, large ones to signals
that flip sign from vertex to vertex. :mod:`rfcore.data.synthetic` deforms
the face template along the smoothest of them.
"""

from __future__ import annotations

import torch

SIGN_TOLERANCE = 1e-9
"""Eigenvector entries whose magnitudes differ by less than this count as equal when fixing the sign
(rounding differences between CPUs are about 1e-15; genuine gaps on meshes here are far larger)."""


def degrees(adjacency: torch.Tensor) -> torch.Tensor:
    """``D_ii``: ``(V,)`` neighbour counts of a sparse ``(V, V)`` 0/1 adjacency."""
    return torch.sparse.sum(adjacency.coalesce(), dim=1).to_dense()


def laplacian(adjacency: torch.Tensor) -> torch.Tensor:
    """The combinatorial Laplacian ``L = D - E``.

    Args:
        adjacency: Sparse symmetric ``(V, V)`` 0/1 matrix ``E``.

    Returns:
        Sparse coalesced ``(V, V)`` of the same dtype.
    """
    adjacency = adjacency.coalesce()
    diagonal = torch.arange(adjacency.shape[0]).expand(2, -1)
    degree = torch.sparse_coo_tensor(diagonal, degrees(adjacency), adjacency.shape, check_invariants=True)
    return (degree - adjacency).coalesce()


def normalised_laplacian(adjacency: torch.Tensor) -> torch.Tensor:
    """The normalised Laplacian ``I - D^(-1/2) E D^(-1/2)``.

    Args:
        adjacency: Sparse symmetric ``(V, V)`` 0/1 matrix ``E``; every vertex
            needs at least one neighbour.

    Returns:
        Sparse coalesced ``(V, V)`` of the same dtype.

    Raises:
        ValueError: If a vertex has no neighbour (its row would divide by 0).
    """
    adjacency = adjacency.coalesce()
    degree = degrees(adjacency)
    if (degree == 0).any():
        isolated = torch.nonzero(degree == 0).flatten().tolist()
        raise ValueError(f"the normalised Laplacian needs every vertex to have a neighbour; isolated: {isolated}")
    row, col = adjacency.indices()
    values = adjacency.values() / torch.sqrt(degree[row] * degree[col])
    scaled = torch.sparse_coo_tensor(adjacency.indices(), values, adjacency.shape, check_invariants=True)
    identity = torch.sparse_coo_tensor(
        torch.arange(adjacency.shape[0]).expand(2, -1), torch.ones_like(degree), adjacency.shape, check_invariants=True
    )
    return (identity - scaled).coalesce()


def eigenbasis(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues and eigenvectors of a symmetric (sparse or dense) matrix, ascending.

    Computed densely in float64 (meshes here have hundreds of vertices), on
    one thread (restored after). An eigenvector is only defined up to its
    sign, and LAPACK's choice changes with the CPU's kernels, so the sign is
    fixed: the first entry of largest magnitude is positive. "First" matters:
    on a mirror-symmetric mesh two mirrored vertices have the same magnitude
    up to rounding, so magnitudes within :data:`SIGN_TOLERANCE` of the
    largest count as tied and the lowest vertex index wins. (Within a
    repeated eigenvalue the choice of basis is still LAPACK's.)

    Args:
        matrix: ``(V, V)`` symmetric, e.g. :func:`laplacian`.

    Returns:
        ``(V,)`` eigenvalues and ``(V, V)`` eigenvectors (column ``k`` belongs
        to eigenvalue ``k``), float64.
    """
    dense = matrix.to_dense() if matrix.is_sparse else matrix
    threads = torch.get_num_threads()
    # a few hundred vertices take milliseconds on one thread; starting LAPACK's threads can take seconds
    torch.set_num_threads(1)
    try:
        values, vectors = torch.linalg.eigh(dense.double())
    finally:
        torch.set_num_threads(threads)
    magnitude = vectors.abs()  # (V, V)
    tied = magnitude >= magnitude.max(0, keepdim=True).values - SIGN_TOLERANCE  # (V, V) near the column's largest
    first = tied.int().argmax(0, keepdim=True)  # (1, V) lowest row index of each column's largest entry
    return values, vectors * torch.sign(vectors.gather(0, first))


def hop_distances(adjacency: torch.Tensor, source: int) -> torch.Tensor:
    """Fewest edges from ``source`` to every vertex (breadth-first search).

    Args:
        adjacency: Sparse ``(V, V)`` 0/1 matrix.
        source: Start vertex.

    Returns:
        ``(V,)`` int64 hop counts, ``-1`` for vertices that cannot be reached.

    Raises:
        ValueError: If ``source`` is not a vertex.
    """
    num_vertices = adjacency.shape[0]
    if not 0 <= source < num_vertices:
        raise ValueError(f"source vertex {source} is out of range 0..{num_vertices - 1}")
    neighbours = adjacency.to_dense() > 0
    distance = torch.full((num_vertices,), -1)
    distance[source] = 0
    frontier = torch.zeros(num_vertices, dtype=torch.bool)
    frontier[source] = True
    hops = 0
    while frontier.any():
        hops += 1
        frontier = neighbours[frontier].any(0) & (distance < 0)
        distance[frontier] = hops
    return distance


def ring_adjacency(num_vertices: int) -> torch.Tensor:
    """The cycle graph: vertex ``i`` joined to ``i - 1`` and ``i + 1`` (mod ``V``), a small graph whose
    Fourier basis is the familiar one (sines and cosines around the ring).

    Args:
        num_vertices: ``V >= 3``.

    Returns:
        Sparse coalesced ``(V, V)`` float32 0/1 adjacency.

    Raises:
        ValueError: If ``num_vertices < 3``.
    """
    if num_vertices < 3:
        raise ValueError(f"a ring needs at least 3 vertices, got {num_vertices}")
    vertex = torch.arange(num_vertices)
    rows = torch.cat([vertex, vertex])
    cols = torch.cat([(vertex + 1) % num_vertices, (vertex - 1) % num_vertices])
    values = torch.ones(2 * num_vertices)
    shape = (num_vertices, num_vertices)
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), values, shape, check_invariants=True).coalesce()
