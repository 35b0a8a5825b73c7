"""Exercises of notebook 04: one Chebyshev graph filter, ``y = sum_k theta_k T_k(L~) x``, and two variants.

The variants: the filter's gain at a graph frequency from the closed form of the Chebyshev polynomials,
``T_k(cos t) = cos(k t)``, instead of their recursion; and the graph convolution of Kipf & Welling (2017), the
first-order filter with one weight per channel pair and self-loops renormalised.
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


def reference_gcn_layer(adjacency: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """One graph convolution ``D~^(-1/2) (E + I) D~^(-1/2) x W`` [Kipf & Welling 2017, Eq. 2], no activation.

    It is the Chebyshev filter with ``K = 2``, ``lambda_max = 2`` and ``theta_0 = -theta_1``, after the
    renormalisation ``I + D^(-1/2) E D^(-1/2) -> D~^(-1/2) (E + I) D~^(-1/2)``, ``D~_ii = 1 + D_ii`` (their §2.2).

    Args:
        adjacency: Dense ``(V, V)`` symmetric 0/1 adjacency ``E``, zero diagonal.
        x: ``(V, C_in)`` signal.
        weight: ``(C_in, C_out)`` weights.

    Returns:
        ``(V, C_out)``.
    """
    looped = adjacency + torch.eye(len(adjacency), dtype=adjacency.dtype)  # (V, V) E + I
    scale = looped.sum(dim=1).rsqrt()  # (V,) D~^(-1/2)
    return (scale[:, None] * looped * scale[None, :]) @ x @ weight


def dense_adjacency(edges: list[tuple[int, int]], num_vertices: int) -> torch.Tensor:
    """The dense ``(V, V)`` 0/1 adjacency of an undirected graph."""
    adjacency = torch.zeros(num_vertices, num_vertices)
    for i, j in edges:
        adjacency[i, j] = adjacency[j, i] = 1.0
    return adjacency


def check_gcn_layer(gcn_layer) -> Verdict:
    """Check ``gcn_layer(adjacency (V, V), x (V, C_in), weight (C_in, C_out)) -> (V, C_out)``."""
    generator = seeded(26)
    upper = (torch.rand(8, 8, generator=generator) < 0.35).triu(diagonal=1)  # (8, 8) random edges, i < j
    random_graph = (upper | upper.T).float()
    cases = [
        Case("a single vertex", (torch.zeros(1, 1), torch.tensor([[2.0, -1.0]]), torch.tensor([[1.0], [3.0]])),
             "the self-loop makes D~ = 1 even without an edge: y = x W"),
        Case("two joined vertices", (dense_adjacency([(0, 1)], 2), torch.tensor([[1.0], [3.0]]), torch.ones(1, 1)),
             "with self-loops both vertices have degree 2: each gets (x_0 + x_1) / 2, the mean of its neighbourhood"),
        Case("a path of three vertices", (dense_adjacency([(0, 1), (1, 2)], 3), torch.tensor([[1.0], [0.0], [0.0]]),
                                          torch.ones(1, 1)),
             "the weights are symmetric, 1 / sqrt(d~_i d~_j) with d~ = (2, 3, 2), not 1 / d~_i as a mean would be"),
        Case("a ring of six, two to three channels", (dense_adjacency([(i, (i + 1) % 6) for i in range(6)], 6),
                                                      torch.randn(6, 2, generator=generator),
                                                      torch.randn(2, 3, generator=generator)),
             "multiply the propagated signal by W on the right: (V, C_in) @ (C_in, C_out)"),
        Case("a random graph of eight vertices", (random_graph, torch.randn(8, 3, generator=generator),
                                                  torch.randn(3, 2, generator=generator))),
    ]
    return run_check("gcn_layer", gcn_layer, reference_gcn_layer, cases)
