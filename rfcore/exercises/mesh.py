"""Exercises of notebook 04: one Chebyshev graph filter, ``y = sum_k theta_k T_k(L~) x``, and its gain.

The second exercise is a variant: the filter's gain at a graph frequency from the closed form of the
Chebyshev polynomials, ``T_k(cos t) = cos(k t)``, instead of their recursion.
"""

from __future__ import annotations

import torch

from rfcore.exercises.check import Case, Verdict, run_check, seeded
from rfcore.mesh.chebconv import ChebConv, chebyshev_response, scaled_laplacian


def graph_laplacian(edges: list[tuple[int, int]], num_vertices: int) -> torch.Tensor:
    """The dense ``(V, V)`` scaled Laplacian (:func:`rfcore.mesh.chebconv.scaled_laplacian`) of an undirected graph."""
    pairs = torch.tensor(edges, dtype=torch.long).T  # (2, E)
    both = torch.cat([pairs, pairs.flip(0)], dim=1)  # (2, 2E): each edge in both directions
    adjacency = torch.sparse_coo_tensor(both, torch.ones(both.shape[1]), (num_vertices, num_vertices),
                                        check_invariants=True)
    return scaled_laplacian(adjacency).to_dense()


def ring(num_vertices: int) -> torch.Tensor:
    """Scaled Laplacian of a ring: vertex ``i`` joined to ``i + 1`` modulo ``V``."""
    return graph_laplacian([(i, (i + 1) % num_vertices) for i in range(num_vertices)], num_vertices)


def path(num_vertices: int) -> torch.Tensor:
    """Scaled Laplacian of a path: vertex ``i`` joined to ``i + 1``."""
    return graph_laplacian([(i, i + 1) for i in range(num_vertices - 1)], num_vertices)


def reference_chebyshev_filter(laplacian: torch.Tensor, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """``sum_k theta_k T_k(L~) x`` from :meth:`rfcore.mesh.chebconv.ChebConv.chebyshev_terms`.

    Args:
        laplacian: Dense ``(V, V)`` scaled Laplacian.
        x: ``(V, C)`` signal.
        theta: ``(K,)`` filter coefficients.

    Returns:
        ``(V, C)`` filtered signal.
    """
    conv = ChebConv(1, 1, len(theta), laplacian.to_sparse())
    terms = conv.chebyshev_terms(x[None])  # (K, 1, V, C)
    return torch.einsum("kbvc,k->vc", terms, theta)


def check_chebyshev_filter(chebyshev_filter) -> Verdict:
    """Check ``chebyshev_filter(laplacian (V, V), x (V, C), theta (K,)) -> (V, C)``."""
    generator = seeded(6)
    impulse = torch.zeros(6, 1)
    impulse[0] = 1.0
    cases = [
        Case("K = 1 keeps the signal times theta_0", (ring(6), impulse, torch.tensor([2.0])),
             "T_0(L~) x = x"),
        Case("K = 2 on a ring", (ring(6), impulse, torch.tensor([0.0, 1.0])), "T_1(L~) x = L~ x"),
        Case("K = 3: the recursion starts", (ring(6), impulse, torch.tensor([0.0, 0.0, 1.0])),
             "x_k = 2 L~ x_(k-1) - x_(k-2): the factor 2 and the minus sign"),
        Case("K = 5 on a path, two channels", (path(7), torch.randn(7, 2, generator=generator),
                                                torch.randn(5, generator=generator)),
             "sum theta_k x_k over every k from 0 to K - 1"),
    ]
    return run_check("chebyshev_filter", chebyshev_filter, reference_chebyshev_filter, cases)


def check_chebyshev_gain(chebyshev_gain) -> Verdict:
    """Check ``chebyshev_gain(theta (K,), eigenvalues (N,), lambda_max) -> (N,)``, ``sum_k theta_k T_k(lambda~)``.

    ``lambda~ = 2 lambda / lambda_max - 1``; the reference is :func:`rfcore.mesh.chebconv.chebyshev_response`.
    """
    generator = seeded(16)
    spectrum = torch.linspace(0.0, 2.0, 9, dtype=torch.float64)
    cases = [
        Case("K = 1: a constant gain", (torch.tensor([0.5], dtype=torch.float64), spectrum, 2.0),
             "T_0 = 1 everywhere"),
        Case("K = 2: a straight line", (torch.tensor([0.0, 1.0], dtype=torch.float64), spectrum, 2.0),
             "T_1(x) = x with x = 2 lambda / lambda_max - 1: from -1 at lambda = 0 to 1 at lambda_max"),
        Case("K = 4 at the ends of the spectrum", (torch.tensor([1.0, -1.0, 0.5, 2.0], dtype=torch.float64),
                                                  torch.tensor([0.0, 2.0], dtype=torch.float64), 2.0),
             "T_k(1) = 1 and T_k(-1) = (-1)^k; clamp x to [-1, 1] before arccos if rounding pushes it out"),
        Case("lambda_max = 4", (torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), spectrum, 4.0),
             "scale by the lambda_max given, not by 2"),
        Case("K = 6, random coefficients, float32", (torch.randn(6, generator=generator),
                                                     2 * torch.rand(12, generator=generator), 2.0),
             "return the eigenvalues' dtype"),
    ]
    return run_check("chebyshev_gain", chebyshev_gain, chebyshev_response, cases)
