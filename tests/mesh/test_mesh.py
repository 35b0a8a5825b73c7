"""Tests of rfcore.mesh: template, OBJ loading, hierarchy, ChebConv and decoder."""

import math

import pytest
import torch

from rfcore.mesh.camera import camera_from_pose, project, to_view
from rfcore.mesh.chebconv import ChebConv, scaled_laplacian
from rfcore.mesh.decoder import MeshDecoder
from rfcore.mesh.hierarchy import (
    adjacency_matrix,
    build_hierarchy,
    hierarchy_from_meshes,
    upsampling_matrix,
    vertex_matmul,
)
from rfcore.mesh.template import (
    BUMPS,
    LANDMARK_NAMES,
    LANDMARK_POINTS,
    PATCHES,
    SKIN,
    Mesh,
    face_template,
    grid,
    load_obj,
    mirror_order,
)


def hop_distances(adjacency: torch.Tensor, source: int) -> torch.Tensor:
    """Breadth-first edge counts from ``source`` (``-1`` if unreachable)."""
    neighbours = adjacency.to_dense() > 0
    distance = torch.full((len(neighbours),), -1)
    distance[source] = 0
    frontier, hops = neighbours.new_zeros(len(neighbours)), 0
    frontier[source] = True
    while frontier.any():
        hops += 1
        frontier = neighbours[frontier].any(0) & (distance < 0)
        distance[frontier] = hops
    return distance


# --- template ---------------------------------------------------------------


def test_mirror_order_pairs_left_and_right_and_keeps_the_mid_line(template):
    mirror = mirror_order(template.vertices)
    assert torch.equal(mirror[mirror], torch.arange(template.num_vertices))
    marks = template.landmarks
    for left, right in (("left_eye", "right_eye"), ("left_mouth", "right_mouth")):
        assert mirror[marks[left]] == marks[right]
    assert mirror[marks["nose_tip"]] == marks["nose_tip"]
    on_mid_line = template.vertices[:, 0].abs() < 1e-6
    assert on_mid_line.sum() == 17 and torch.equal(mirror[on_mid_line], torch.nonzero(on_mid_line).flatten())
    mirrored = template.vertices[mirror] * torch.tensor([-1.0, 1.0, 1.0])
    assert torch.allclose(mirrored, template.vertices, atol=1e-6)


def test_a_mirrored_projection_is_the_projection_of_the_mirrored_pose(template):
    """Mirroring the image of a symmetric face at (pitch, yaw, roll) gives the face at (pitch, -yaw, -roll)."""
    vertices = template.vertices[None].double()
    angles = torch.tensor([[0.2, 0.5, -0.3]], dtype=torch.float64)

    def pixels(angles, shift):
        camera = camera_from_pose(angles, torch.tensor([4.0], dtype=torch.float64), shift=shift)
        return project(to_view(vertices, camera), camera, (32, 32))[0][0]  # (V, 2)

    seen = pixels(angles, torch.tensor([[0.3, 0.1]], dtype=torch.float64))
    mirrored = seen[mirror_order(template.vertices)]
    mirrored[:, 0] = 32 - mirrored[:, 0]
    expected = pixels(angles * torch.tensor([1.0, -1.0, -1.0]), torch.tensor([[-0.3, 0.1]], dtype=torch.float64))
    assert torch.allclose(mirrored, expected, atol=1e-9)
    assert (seen - expected).abs().max() > 1.0  # the pose is far from symmetric


def test_mirror_order_refuses_an_asymmetric_mesh(template):
    vertices = template.vertices.clone()
    vertices[3, 0] += 0.01
    with pytest.raises(ValueError, match="not mirror-symmetric about x = 0: vertex"):
        mirror_order(vertices)


def test_template_is_a_disc_of_289_vertices_and_512_triangles(template):
    edges = adjacency_matrix(template.faces, template.num_vertices)._nnz() // 2
    assert (template.num_vertices, len(template.faces)) == (289, 512)
    # Euler characteristic of a disc: V - E + F = 1
    assert template.num_vertices - edges + len(template.faces) == 1
    assert 0 <= template.colours.min() and template.colours.max() <= 1
    assert template.uv.abs().max() == 1


def test_template_triangles_face_the_viewer(template):
    a, b, c = template.vertices[template.faces].unbind(1)
    normals = torch.cross(b - a, c - a, dim=1)
    assert (normals[:, 2] > 0).all()


def test_template_landmarks_are_named_and_plausible(template):
    assert tuple(template.landmarks) == LANDMARK_NAMES
    at = {name: template.vertices[i] for name, i in template.landmarks.items()}
    (lx, ly, _), (rx, ry, _) = at["left_eye"].tolist(), at["right_eye"].tolist()
    assert lx == pytest.approx(-rx) and ly == pytest.approx(ry) and lx < -0.2
    assert at["left_mouth"][0] == pytest.approx(-at["right_mouth"][0]) and at["left_mouth"][0] < -0.2
    assert ly > at["nose_tip"][1] > at["left_mouth"][1]
    assert at["nose_tip"][0] == 0
    assert template.vertices[:, 2].argmax() == template.landmarks["nose_tip"]  # the nose sticks out most
    eye_colour = template.colours[template.landmarks["left_eye"]]
    assert (eye_colour < torch.tensor(SKIN) - 0.2).all()  # darker than skin
    lips = template.colours[template.landmarks["left_mouth"]]
    assert lips[0] - lips[1] > torch.tensor(SKIN[0] - SKIN[1])  # redder than skin


def test_template_landmarks_sit_on_their_points_at_the_centre_of_their_features(template):
    for name, index in template.landmarks.items():  # a vertex exactly on each point: no half-cell snap
        assert template.vertices[index, :2].tolist() == pytest.approx(LANDMARK_POINTS[name], abs=1e-4)
    (ex, ey), (nx, ny), (mx, my) = (LANDMARK_POINTS[n] for n in ("right_eye", "nose_tip", "right_mouth"))
    eye_patch, lips = PATCHES[1], PATCHES[4]
    assert eye_patch.centre == BUMPS[3].centre == (ex, ey)  # eye colour and socket centred on the eye
    assert BUMPS[1].centre == (nx, ny)  # the nose-tip bump peaks on the nose vertex
    assert lips.centre[1] == my and lips.sigma[0] * 1.5 == pytest.approx(mx)  # the lips end at the corners


def test_mesh_checks_its_arrays(template):
    parts = dict(vertices=template.vertices, faces=template.faces, colours=template.colours, uv=template.uv)
    with pytest.raises(ValueError, match=r"colours must have shape \(V, 3\) with V = 289"):
        Mesh(**{**parts, "colours": template.colours[:-1]})
    with pytest.raises(ValueError, match="int64"):
        Mesh(**{**parts, "faces": template.faces.int()})
    with pytest.raises(ValueError, match="faces index vertices 0..289, have 289"):
        Mesh(**{**parts, "faces": template.faces.clamp(max=289) + (template.faces == 288)})
    with pytest.raises(ValueError, match="landmark"):
        Mesh(**parts, landmarks={"nose_tip": 289})


def test_grids_nest():
    coarse, _ = grid(4)
    fine, _ = grid(8)
    assert torch.cdist(coarse, fine).min(dim=1).values.max() < 1e-6


# --- OBJ files --------------------------------------------------------------

OBJ_TEXT = """# a unit square as one quad and a triangle, with vertex colours
v 0 0 0 1 0 0
v 1 0 0 0 1 0
v 1 1 0.5 0 0 1
v 0 1 0 1 1 1   # trailing comment
v 2 0.5 0 0.5 0.5 0.5
vt 0 0
vn 0 0 1
usemtl skin
f 1/1/1 2/1/1 3/1/1 4/1/1
f -4//1 5//1 -3//1
"""


def test_load_obj_reads_positions_colours_and_polygons(tmp_path):
    path = tmp_path / "square.obj"
    path.write_text(OBJ_TEXT)
    mesh = load_obj(path, landmarks={"nose_tip": 2})
    assert mesh.vertices[2].tolist() == [1, 1, 0.5]
    assert mesh.colours[1].tolist() == [0, 1, 0]
    assert mesh.faces.tolist() == [[0, 1, 2], [0, 2, 3], [1, 4, 2]]  # quad fanned, negative indices resolved
    assert mesh.landmarks == {"nose_tip": 2}
    # uv: x in [0, 2] and y in [0, 1] scaled by the longer side into [-1, 1]
    assert mesh.uv[4].tolist() == [1.0, 0.0] and mesh.uv[0].tolist() == [-1.0, -0.5]


def test_load_obj_without_colours_is_grey(tmp_path):
    path = tmp_path / "triangle.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    mesh = load_obj(path)
    assert torch.equal(mesh.colours, torch.full((3, 3), 0.7))


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("v 1 2", "expected 'v x y z'"),
        ("v 1 two 3", "must be numbers"),
        ("v 0 0 0 2 0 0", r"colours must lie in \[0, 1\]"),
        ("f 1 2", "at least three"),
        ("f 1 2 9", "face vertex 9"),
        ("f 0 1 2", "face vertex 0"),
        ("f 1 2 x", "bad face vertex 'x'"),
    ],
)
def test_load_obj_names_the_file_and_line_of_a_malformed_statement(tmp_path, bad_line, message):
    path = tmp_path / "bad.obj"
    path.write_text(f"v 0 0 0\nv 1 0 0\nv 0 1 0\n{bad_line}\nf 1 2 3\n")
    with pytest.raises(ValueError, match=f"bad.obj:4: .*{message}"):
        load_obj(path)


def test_load_obj_rejects_empty_and_mixed_files(tmp_path):
    path = tmp_path / "empty.obj"
    path.write_text("# nothing\nv 0 0 0\n")
    with pytest.raises(ValueError, match="empty.obj: needs at least one vertex and one face"):
        load_obj(path)
    path.write_text("v 0 0 0 1 1 1\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(ValueError, match="some vertices have colours"):
        load_obj(path)
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(ValueError, match="out of range"):
        load_obj(path, landmarks={"nose_tip": 3})


def test_a_user_mesh_joins_a_hierarchy_below_template_grids(tmp_path):
    path = tmp_path / "square.obj"
    path.write_text(OBJ_TEXT)
    levels = hierarchy_from_meshes([face_template(1), face_template(2), load_obj(path)])
    assert levels.num_vertices == (4, 9, 5)
    matrix = levels.upsampling[-1]
    assert torch.allclose(torch.sparse.sum(matrix, dim=1).to_dense(), torch.ones(5))
    assert torch.allclose(torch.sparse.mm(matrix, levels.meshes[1].uv), levels.template.uv, atol=1e-6)


# --- hierarchy --------------------------------------------------------------


def test_hierarchy_levels_grow_about_four_times(hierarchy):
    counts = hierarchy.num_vertices
    assert counts == (9, 25, 81, 289)
    assert all(2.5 < fine / coarse < 4 for coarse, fine in zip(counts, counts[1:]))
    assert hierarchy.template.num_vertices == 289 and len(hierarchy.template.faces) == 512


def test_upsampling_rows_are_barycentric(hierarchy):
    for level, matrix in enumerate(hierarchy.upsampling):
        coarse, fine = hierarchy.meshes[level], hierarchy.meshes[level + 1]
        dense = matrix.to_dense()
        assert dense.shape == (fine.num_vertices, coarse.num_vertices)
        assert (dense >= 0).all() and ((dense > 0).sum(1) <= 3).all()
        assert torch.allclose(dense.sum(1), torch.ones(fine.num_vertices))
        # barycentric weights reproduce linear functions: up-sampled coarse uv is the fine uv
        assert torch.allclose(dense @ coarse.uv, fine.uv, atol=1e-6)
        # nested grids: each fine vertex is a coarse vertex (1) or a coarse edge midpoint (1/2, 1/2)
        assert set(dense[dense > 0].tolist()) == {0.5, 1.0}


def test_upsampling_clips_a_point_just_outside():
    triangle_uv = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    matrix = upsampling_matrix(triangle_uv, torch.tensor([[0, 1, 2]]), torch.tensor([[0.6, 0.6], [0.25, 0.25]]))
    dense = matrix.to_dense()
    assert torch.allclose(dense, torch.tensor([[0.0, 0.5, 0.5], [0.5, 0.25, 0.25]]))


def test_adjacency_is_symmetric_without_loops_and_counts_grid_edges(hierarchy):
    for mesh, adjacency in zip(hierarchy.meshes, hierarchy.adjacency):
        dense = adjacency.to_dense()
        cells = round(math.sqrt(mesh.num_vertices)) - 1
        assert torch.equal(dense, dense.T) and dense.diagonal().abs().sum() == 0
        assert set(dense.unique().tolist()) == {0.0, 1.0}
        assert dense.sum() / 2 == 3 * cells**2 + 2 * cells  # rows, columns and diagonals of the grid
    interior = hierarchy.template.landmarks["nose_tip"]
    assert hierarchy.adjacency[-1].to_dense()[interior].sum() == 6


def test_build_hierarchy_checks_its_arguments():
    with pytest.raises(ValueError, match="divisible"):
        build_hierarchy(levels=4, cells=12)
    with pytest.raises(ValueError, match="at least one level"):
        hierarchy_from_meshes([])


def test_vertex_matmul_applies_the_matrix_to_every_batch_item():
    matrix = torch.tensor([[0.0, 2.0], [1.0, 1.0], [3.0, 0.0]]).to_sparse()
    x = torch.randn(4, 2, 5)
    assert torch.allclose(vertex_matmul(matrix, x), matrix.to_dense() @ x, atol=1e-6)


# --- ChebConv ---------------------------------------------------------------


def test_scaled_laplacian_is_minus_normalised_adjacency_with_spectrum_in_minus_one_one(hierarchy):
    adjacency = hierarchy.adjacency[1].to_dense().double()
    degree = adjacency.sum(1)
    expected = -adjacency / torch.sqrt(degree[:, None] * degree[None, :])
    laplacian = scaled_laplacian(hierarchy.adjacency[1].double()).to_dense()
    assert torch.allclose(laplacian, expected)
    eigenvalues = torch.linalg.eigvalsh(laplacian)
    assert eigenvalues.min() >= -1 - 1e-9 and eigenvalues.max() <= 1 + 1e-9


@pytest.mark.parametrize("K", [1, 2, 3, 6])
def test_chebconv_equals_the_dense_chebyshev_sum(hierarchy, K):
    torch.manual_seed(K)
    laplacian = scaled_laplacian(hierarchy.adjacency[1])
    conv = ChebConv(3, 4, K, laplacian).double()
    bias = torch.randn(4, dtype=torch.float64)
    conv.bias.data.copy_(bias)
    x = torch.randn(2, 25, 3, dtype=torch.float64)
    # T_k(L~) from the spectrum: T_k(cos t) = cos(k t), independent of the recursion
    eigenvalues, vectors = torch.linalg.eigh(laplacian.to_dense().double())
    angles = torch.arccos(eigenvalues.clamp(-1, 1))
    expected = bias.expand(2, 25, 4).clone()
    for k in range(K):
        chebyshev = vectors @ torch.diag(torch.cos(k * angles)) @ vectors.T  # (V, V)
        expected += chebyshev @ x @ conv.weight[k]
    assert torch.allclose(conv(x), expected, atol=1e-10)
    assert conv.weight.numel() == K * 3 * 4


@pytest.mark.parametrize("K", [1, 2, 3, 4])
def test_chebconv_reaches_k_minus_one_hops_and_no_further(hierarchy, K):
    torch.manual_seed(K)
    adjacency = hierarchy.adjacency[-1]
    source = hierarchy.template.landmarks["nose_tip"]
    conv = ChebConv(1, 1, K, scaled_laplacian(adjacency)).double()
    impulse = torch.zeros(1, 289, 1, dtype=torch.float64)
    impulse[0, source] = 1
    with torch.no_grad():
        response = (conv(impulse) - conv.bias)[0, :, 0]
    hops = hop_distances(adjacency, source)
    assert (response[hops == K - 1] != 0).all()
    assert (response[hops >= K] == 0).all()


def test_chebconv_checks_its_input(hierarchy):
    conv = ChebConv(3, 4, 2, scaled_laplacian(hierarchy.adjacency[0]))
    with pytest.raises(ValueError, match=r"expected \(B, 9, 3\)"):
        conv(torch.zeros(2, 10, 3))
    with pytest.raises(ValueError, match="K >= 1"):
        ChebConv(3, 4, 0, scaled_laplacian(hierarchy.adjacency[0]))


# --- decoder ----------------------------------------------------------------


def test_decoder_starts_at_the_template(hierarchy):
    torch.manual_seed(0)
    decoder = MeshDecoder(hierarchy)
    with torch.no_grad():
        mesh = decoder(torch.randn(3, 128))
    template = hierarchy.template
    assert mesh.vertices.shape == mesh.colours.shape == (3, 289, 3)
    assert torch.equal(mesh.vertices, template.vertices.expand(3, -1, -1))
    assert torch.allclose(mesh.colours, template.colours.expand(3, -1, -1), atol=1e-6)


def test_decoder_learns_shape_and_colour(hierarchy):
    torch.manual_seed(0)
    decoder = MeshDecoder(hierarchy)
    code = torch.randn(2, 128)
    mesh = decoder(code)
    (mesh.vertices.sum() + mesh.colours.sum()).backward()
    assert decoder.head.weight.grad.abs().sum() > 0  # the zero last layer still learns
    with torch.no_grad():
        decoder.head.weight.normal_()
        moved = decoder(code)
    assert not torch.allclose(moved.vertices, mesh.vertices)
    assert 0 < moved.colours.min() and moved.colours.max() < 1  # colours stay bounded


def test_decoder_state_dict_holds_only_weights(hierarchy):
    decoder = MeshDecoder(hierarchy, channels=(8, 8, 4, 4), K=3)
    state = decoder.state_dict()
    assert all(not value.is_sparse for value in state.values())
    assert set(state) == {"linear.weight", "linear.bias", "head.weight", "head.bias"} | {
        f"convs.{i}.{name}" for i in range(3) for name in ("weight", "bias")
    }
    with pytest.raises(ValueError, match="one channel count per level"):
        MeshDecoder(hierarchy, channels=(8, 8))
    with pytest.raises(ValueError, match=r"expected \(B, 128\) codes"):
        decoder(torch.zeros(2, 127))
