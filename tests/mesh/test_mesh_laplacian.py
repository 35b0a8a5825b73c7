"""rfcore.mesh.laplacian: Laplacians of a mesh, their spectrum and hop distances, by hand and by property."""

import pytest
import torch

from rfcore.mesh.chebconv import ChebConv, chebyshev_recursion, chebyshev_response, scaled_laplacian
from rfcore.mesh.hierarchy import adjacency_matrix
from rfcore.mesh.laplacian import degrees, eigenbasis, hop_distances, laplacian, normalised_laplacian, ring_adjacency
from rfcore.mesh.template import face_template

# a path 0 - 1 - 2 and a triangle 3 - 4 - 5 beside it
EDGES = torch.tensor([[0, 1], [1, 2], [3, 4], [4, 5], [5, 3]])


def two_pieces() -> torch.Tensor:
    both = torch.cat([EDGES, EDGES.flip(1)]).T
    values = torch.ones(both.shape[1], dtype=torch.float64)
    return torch.sparse_coo_tensor(both, values, (6, 6), check_invariants=True).coalesce()


@pytest.fixture(scope="module")
def adjacency():
    template = face_template()
    return adjacency_matrix(template.faces, template.num_vertices).double()


def test_laplacian_is_degree_minus_adjacency_by_hand():
    expected = torch.tensor([
        [1, -1, 0, 0, 0, 0], [-1, 2, -1, 0, 0, 0], [0, -1, 1, 0, 0, 0],
        [0, 0, 0, 2, -1, -1], [0, 0, 0, -1, 2, -1], [0, 0, 0, -1, -1, 2],
    ], dtype=torch.float64)
    assert torch.equal(laplacian(two_pieces()).to_dense(), expected)
    assert degrees(two_pieces()).tolist() == [1, 2, 1, 2, 2, 2]


def test_laplacian_kills_constants_and_sums_squared_edge_differences(adjacency):
    lap = laplacian(adjacency)
    constant = torch.ones(289, 1, dtype=torch.float64)
    assert torch.sparse.mm(lap, constant).abs().max() < 1e-12
    x = torch.randn(289, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    rows, cols = adjacency.indices()
    # every edge appears twice in the symmetric adjacency
    assert torch.allclose(x @ torch.sparse.mm(lap, x[:, None])[:, 0], ((x[rows] - x[cols]) ** 2).sum() / 2)


def test_spectra_lie_in_their_ranges_and_count_components(adjacency):
    values, vectors = eigenbasis(laplacian(adjacency))
    assert abs(values[0]) < 1e-9 and values[1] > 1e-6  # one piece: one zero eigenvalue
    assert values.max() <= 2 * degrees(adjacency).max()
    assert torch.allclose(vectors.T @ vectors, torch.eye(289, dtype=torch.float64), atol=1e-9)
    normalised, _ = eigenbasis(normalised_laplacian(adjacency))
    assert normalised.min() > -1e-9 and normalised.max() <= 2 + 1e-9
    pieces, _ = eigenbasis(laplacian(two_pieces()))
    assert (pieces.abs() < 1e-9).sum() == 2  # two pieces: two zero eigenvalues


def test_scaled_laplacian_is_the_normalised_one_shifted_by_the_identity(adjacency):
    # L~ = 2 L / lambda_max - I with lambda_max = 2
    expected = normalised_laplacian(adjacency).to_dense() - torch.eye(289, dtype=torch.float64)
    assert torch.allclose(scaled_laplacian(adjacency).to_dense(), expected)


def test_eigenvector_signs_are_fixed():
    _, vectors = eigenbasis(laplacian(two_pieces()))
    largest = vectors.gather(0, vectors.abs().argmax(0, keepdim=True))
    assert (largest > 0).all()


def test_hop_distances_by_hand_and_errors():
    assert hop_distances(two_pieces(), 0).tolist() == [0, 1, 2, -1, -1, -1]
    assert hop_distances(two_pieces(), 4).tolist() == [-1, -1, -1, 1, 0, 1]
    with pytest.raises(ValueError, match="out of range 0..5"):
        hop_distances(two_pieces(), 6)
    lonely = torch.sparse_coo_tensor(torch.tensor([[0, 1], [1, 0]]), torch.ones(2), (3, 3), check_invariants=True)
    with pytest.raises(ValueError, match=r"isolated: \[2\]"):
        normalised_laplacian(lonely)


def test_ring_has_the_cosine_spectrum():
    ring = ring_adjacency(6)
    assert ring.to_dense().tolist() == [[1.0 if (i - j) % 6 in (1, 5) else 0.0 for j in range(6)] for i in range(6)]
    values, _ = eigenbasis(normalised_laplacian(ring))
    by_hand = (1 - torch.cos(2 * torch.pi * torch.arange(6, dtype=torch.float64) / 6)).sort().values
    assert torch.allclose(values, by_hand, atol=1e-12)
    with pytest.raises(ValueError, match="at least 3"):
        ring_adjacency(2)


def test_chebyshev_response_by_hand():
    values = torch.tensor([0.0, 0.5, 1.0, 2.0], dtype=torch.float64)  # scaled: -1, -0.5, 0, 1
    assert torch.allclose(chebyshev_response(torch.tensor([3.0]), values), torch.full((4,), 3.0, dtype=torch.float64))
    assert torch.allclose(chebyshev_response(torch.tensor([0.0, 1.0]), values), values - 1)
    t2 = 2 * (values - 1) ** 2 - 1  # T_2(x) = 2 x^2 - 1
    assert torch.allclose(chebyshev_response(torch.tensor([1.0, 0.0, 2.0]), values), 1 + 2 * t2)
    assert torch.allclose(chebyshev_response(torch.tensor([0.0, 1.0]), torch.tensor([2.0]), lambda_max=4.0),
                          torch.tensor([0.0]))


@pytest.mark.parametrize("K", [1, 2, 5])
def test_chebconv_is_the_spectral_filter_with_its_response(adjacency, K):
    adjacency = adjacency.double()
    values, vectors = eigenbasis(normalised_laplacian(adjacency))
    torch.manual_seed(K)
    layer = ChebConv(1, 1, K, scaled_laplacian(adjacency)).double()
    x = torch.randn(2, adjacency.shape[0], 1, dtype=torch.float64)
    with torch.no_grad():
        by_recursion = (layer(x) - layer.bias)[..., 0]  # (2, V)
    gains = chebyshev_response(layer.weight.detach()[:, 0, 0], values)  # (V,)
    by_spectrum = (vectors @ (gains[:, None] * (vectors.T @ x[..., 0].T))).T  # (2, V)
    assert torch.allclose(by_recursion, by_spectrum, atol=1e-10)



def test_chebyshev_recursion_gives_the_polynomials_by_hand():
    x = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    terms = chebyshev_recursion(torch.ones(3, dtype=torch.float64), lambda t: x * t, 4)  # T_k(x) elementwise
    assert torch.allclose(terms, torch.stack([torch.ones(3, dtype=torch.float64), x, 2 * x**2 - 1, 4 * x**3 - 3 * x]))
    calls = []
    assert chebyshev_recursion(x, lambda t: calls.append(t) or t, 1).shape == (1, 3) and not calls  # K = 1: no product
