"""Chebyshev graph convolution on a mesh [paper §3.2; Defferrard et al. 2016].

A spectral filter on a graph is a function of its Laplacian. Writing it as
a Chebyshev polynomial of order ``K - 1`` keeps it cheap and local:

    y = sum_{k=0}^{K-1} T_k(L~) x theta_k

with ``T_0(L~) x = x``, ``T_1(L~) x = L~ x`` and the recursion
``x_k = 2 L~ x_{k-1} - x_{k-2}``, each step one sparse product. ``L~`` is
the scaled normalised Laplacian: ``L = I - D^(-1/2) E D^(-1/2)`` has its
eigenvalues in ``[0, 2]``, so with ``lambda_max = 2`` the scaled
``L~ = 2 L / lambda_max - I = -D^(-1/2) E D^(-1/2)`` has them in ``[-1, 1]``,
where Chebyshev polynomials are well behaved. ``T_k`` is a polynomial of
degree ``k`` in a matrix with the sparsity of ``E``, so the filter mixes
each vertex with neighbours at most ``K - 1`` edges away.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
from torch import nn

from rfcore.mesh.hierarchy import vertex_matmul


def scaled_laplacian(adjacency: torch.Tensor) -> torch.Tensor:
    """The scaled normalised Laplacian ``L~ = -D^(-1/2) E D^(-1/2)``.

    Args:
        adjacency: Sparse symmetric ``(V, V)`` 0/1 matrix ``E``.

    Returns:
        Sparse coalesced ``(V, V)`` of the same dtype; its eigenvalues lie in
        ``[-1, 1]``. An isolated vertex gets an empty row.
    """
    adjacency = adjacency.coalesce()
    degree = torch.sparse.sum(adjacency, dim=1).to_dense().clamp(min=1)
    row, col = adjacency.indices()
    values = -adjacency.values() / torch.sqrt(degree[row] * degree[col])
    return torch.sparse_coo_tensor(adjacency.indices(), values, adjacency.shape, check_invariants=True).coalesce()


def chebyshev_recursion(x: torch.Tensor, apply: Callable[[torch.Tensor], torch.Tensor], K: int) -> torch.Tensor:
    """``T_k(A) x`` for ``k = 0 .. K-1`` by ``x_0 = x``, ``x_1 = A x``, ``x_k = 2 A x_{k-1} - x_{k-2}``.

    Args:
        x: What the polynomials act on (a signal, the identity matrix, ones).
        apply: ``t -> A t``: a sparse product, a matrix product, an elementwise product.
        K: Number of terms, ``>= 1``.

    Returns:
        The ``K`` terms stacked: ``(K, *x.shape)``.
    """
    terms = [x]
    if K > 1:
        terms.append(apply(x))
    for _ in range(2, K):
        terms.append(2 * apply(terms[-1]) - terms[-2])
    return torch.stack(terms)


def chebyshev_response(theta: torch.Tensor, eigenvalues: torch.Tensor, lambda_max: float = 2.0) -> torch.Tensor:
    """The filter's gain at each graph frequency: ``g(lambda) = sum_k theta_k T_k(2 lambda / lambda_max - 1)``.

    A Chebyshev filter equals the spectral filter ``U g(Lambda) U^T`` with
    this ``g``, so it shows which frequencies the filter keeps.

    Args:
        theta: ``(K,)`` coefficients, one per Chebyshev term.
        eigenvalues: ``(N,)`` Laplacian eigenvalues ``lambda`` (any values in ``[0, lambda_max]``).
        lambda_max: The bound used to scale the Laplacian (2 for the normalised one).

    Returns:
        ``(N,)`` gains, in the dtype of ``eigenvalues``.
    """
    scaled = 2 * eigenvalues / lambda_max - 1  # (N,) in [-1, 1]
    polynomials = chebyshev_recursion(torch.ones_like(scaled), lambda t: scaled * t, len(theta))  # (K, N)
    return theta.to(scaled.dtype) @ polynomials  # (K,) @ (K, N) -> (N,)


class ChebConv(nn.Module):
    """Graph convolution ``y = sum_k T_k(L~) x theta_k + b`` on one fixed mesh.

    The layer has ``K * C_in * C_out`` weights plus ``C_out`` biases. The
    Laplacian is a non-persistent buffer: it moves with ``.to()`` but is not
    part of the ``state_dict`` (rebuild it from the hierarchy).

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        K: Number of Chebyshev terms (filter order ``K - 1``); ``K >= 1``.
        laplacian: Sparse ``(V, V)`` scaled Laplacian (:func:`scaled_laplacian`).
    """

    def __init__(self, in_channels: int, out_channels: int, K: int, laplacian: torch.Tensor) -> None:
        super().__init__()
        if K < 1:
            raise ValueError(f"ChebConv needs K >= 1 Chebyshev terms, got {K}")
        self.K = K
        self.weight = nn.Parameter(torch.randn(K, in_channels, out_channels) / math.sqrt(K * in_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("laplacian", laplacian.coalesce(), persistent=False)

    def chebyshev_terms(self, x: torch.Tensor) -> torch.Tensor:
        """``T_k(L~) x`` for ``k = 0 .. K-1``, ``(B, V, C) -> (K, B, V, C)``."""
        return chebyshev_recursion(x, functools.partial(vertex_matmul, self.laplacian), self.K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Filter per-vertex features.

        Args:
            x: ``(B, V, C_in)``.

        Returns:
            ``(B, V, C_out)``.

        Raises:
            ValueError: If ``x`` does not have ``V`` vertices and ``C_in`` channels.
        """
        num_vertices, in_channels = self.laplacian.shape[0], self.weight.shape[1]
        if x.ndim != 3 or x.shape[1:] != (num_vertices, in_channels):
            raise ValueError(f"expected (B, {num_vertices}, {in_channels}) features, got {tuple(x.shape)}")
        terms = self.chebyshev_terms(x)
        # (K, B, V, C_in) x (K, C_in, C_out) -> (B, V, C_out)
        return torch.einsum("kbvi,kio->bvo", terms, self.weight) + self.bias
