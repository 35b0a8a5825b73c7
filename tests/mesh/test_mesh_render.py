"""Tests of rfcore.mesh rendering: camera, shading, soft rasteriser, pixel loss, benchmark."""

import math

import pytest
import torch
from torchvision.ops import roi_align

from rfcore.bench.mesh import bench_mesh, format_mesh_report
from rfcore.mesh.branch import render_mesh_params, split_mesh_params
from rfcore.mesh.camera import FOCAL, Light, camera_from_params, euler_rotation, light_from_params, project, to_view
from rfcore.mesh.decoder import CODE_SIZE, MeshDecoder
from rfcore.mesh.hierarchy import build_hierarchy
from rfcore.mesh.loss import crop_faces, mesh_branch_loss, pixel_loss
from rfcore.mesh.render import (
    SIGMA,
    near_pairs,
    rasterise_dense,
    rasterise_windowed,
    render,
    triangle_at_pixels,
    triangle_terms,
    window_pairs,
)
from rfcore.mesh.shading import lambert, vertex_normals
from rfcore.model.retinaface import MESH_PARAMS

RASTERISERS = [rasterise_dense, rasterise_windowed]

# a small pyramid seen from the front: a raised centre and four corners, four triangles
PYRAMID_VERTICES = [[0.05, 0.03, 0.3], [-0.8, -0.7, 0.0], [0.75, -0.65, 0.02], [0.7, 0.8, -0.01], [-0.72, 0.69, 0.03]]
PYRAMID_FACES = torch.tensor([[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 4, 1]])


def flat_square(corner, far_corner, depth=1.0, colour=(0.2, 0.4, 0.6)):
    """Screen-space square as two triangles: pixels (1, 4, 2), depth (1, 4), colours (1, 4, 3), faces."""
    (x0, y0), (x1, y1) = corner, far_corner
    pixels = torch.tensor([[[x0, y0], [x1, y0], [x1, y1], [x0, y1]]], dtype=torch.float64)
    depths = torch.full((1, 4), depth, dtype=torch.float64)
    colours = torch.tensor(colour, dtype=torch.float64).expand(1, 4, 3)
    return pixels, depths, colours, torch.tensor([[0, 1, 2], [0, 2, 3]])


# --- camera and light -------------------------------------------------------


def test_zero_parameters_give_a_frontal_camera_and_a_light_at_the_camera():
    camera, light = camera_from_params(torch.zeros(2, 7)), light_from_params(torch.zeros(2, 9))
    assert torch.equal(camera.rotation, torch.eye(3).expand(2, 3, 3))
    assert camera.translation.tolist() == [[0, 0, -4]] * 2
    assert torch.allclose(camera.focal, torch.full((2,), FOCAL))
    assert light.position.abs().sum() == 0 and (light.colour == 0.5).all() and (light.ambient == 0.5).all()


def test_camera_and_light_stay_in_their_ranges():
    raw = torch.tensor([[1e3] * 7, [-1e3] * 7, [0.3, -2.0, 0.7, 1.0, -0.4, 2.0, -1.0]])
    camera = camera_from_params(raw)
    assert camera.translation[:, :2].abs().max() <= 0.5
    assert (-camera.translation[:, 2]).min() >= 2 and (-camera.translation[:, 2]).max() <= 6
    assert FOCAL * math.exp(-0.5) - 1e-5 <= camera.focal.min() and camera.focal.max() <= FOCAL * math.exp(0.5) + 1e-5
    rotation = camera.rotation
    assert torch.allclose(rotation @ rotation.transpose(1, 2), torch.eye(3).expand(3, 3, 3), atol=1e-6)
    assert torch.allclose(torch.linalg.det(rotation), torch.ones(3))
    light = light_from_params(torch.cat([raw, raw[:, :2]], dim=1) * 10)
    assert light.position.abs().max() <= 3 and 0 <= light.colour.min() and light.ambient.max() <= 1
    with pytest.raises(ValueError, match=r"\(B, 7\) raw camera"):
        camera_from_params(torch.zeros(2, 9))


def test_roll_turns_x_towards_y():
    rotation = euler_rotation(torch.tensor([[0.0, 0.0, math.pi / 2]]))
    assert torch.allclose(rotation[0] @ torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)
    yaw = euler_rotation(torch.tensor([[0.0, math.pi / 2, 0.0]]))
    assert torch.allclose(yaw[0] @ torch.tensor([0.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 0.0]), atol=1e-6)


def test_frontal_template_projects_into_the_crop_the_right_way_up(template):
    camera = camera_from_params(torch.zeros(1, 7))
    pixels, depth = project(to_view(template.vertices[None], camera), camera, (32, 32))
    at = {name: pixels[0, i] for name, i in template.landmarks.items()}
    assert at["left_eye"][0] < 16 < at["right_eye"][0]
    assert at["left_eye"][1] < at["nose_tip"][1] < at["left_mouth"][1]  # image y grows downwards
    assert pixels[0].min() > 0 and pixels[0].max() < 32
    assert torch.allclose(depth[0], 4 - template.vertices[:, 2])
    # the outline spans 0.85 * 3.6 / 4 of the half-width: 16 * (1 +- 0.765) px
    assert pixels[0, :, 0].min().item() == pytest.approx(16 * (1 - 0.85 * FOCAL / 4), abs=1e-4)


# --- shading ----------------------------------------------------------------


def test_lambert_by_hand():
    view = torch.tensor([[[0.0, 0.0, -4.0], [3.0, 0.0, -4.0], [0.0, 4.0, -4.0]]])
    normals = vertex_normals(view, torch.tensor([[0, 1, 2]]))
    assert torch.allclose(normals, torch.tensor([0.0, 0.0, 1.0]).expand(1, 3, 3))
    light = Light(torch.zeros(1, 3), torch.tensor([[1.0, 0.5, 0.25]]), torch.tensor([[0.1, 0.2, 0.3]]))
    lit = lambert(view, normals, torch.full((1, 3, 3), 0.5), light)
    # vertex 1: the light is 5 away, 4 of it along the normal: cos = 0.8
    assert torch.allclose(lit[0, 1], 0.5 * (torch.tensor([0.1, 0.2, 0.3]) + 0.8 * torch.tensor([1.0, 0.5, 0.25])))
    assert torch.allclose(lit[0, 0], 0.5 * torch.tensor([1.1, 0.7, 0.55]))
    behind = Light(torch.tensor([[0.0, 0.0, -10.0]]), light.colour, light.ambient)
    assert torch.allclose(lambert(view, normals, torch.full((1, 3, 3), 0.5), behind), 0.5 * light.ambient[:, None])


# --- soft rasteriser --------------------------------------------------------


@pytest.mark.parametrize("rasterise", RASTERISERS)
def test_a_square_covers_the_pixels_inside_it(rasterise):
    pixels, depth, colours, faces = flat_square((2.0, 2.0), (6.0, 5.0))
    out = rasterise(pixels, depth, colours, faces, (8, 8), sigma=0.25, background=0.9)
    expected = torch.zeros(8, 8, dtype=torch.float64)
    expected[2:5, 2:6] = 1  # centres 2.5 .. 4.5 down, 2.5 .. 5.5 across
    assert torch.equal(out.alpha[0, 0], expected)
    assert torch.allclose(out.image[0, :, 2:5, 2:6], torch.tensor([0.2, 0.4, 0.6], dtype=torch.float64)[:, None, None])
    assert (out.image[0][:, expected == 0] == 0.9).all()


@pytest.mark.parametrize("rasterise", RASTERISERS)
def test_soft_edges_are_half_covered_and_the_diagonal_leaves_no_seam(rasterise):
    pixels, depth, colours, faces = flat_square((1.5, 1.5), (6.5, 5.5))
    alpha = rasterise(pixels, depth, colours, faces, (8, 8), sigma=1.0).alpha[0, 0]
    assert (alpha[2:5, 2:6] == 1).all()  # at least sigma inside, across the diagonal seam too
    assert (alpha[:, [0, 7]] == 0).all() and (alpha[[0, 6, 7]] == 0).all()  # at least sigma outside
    # centres on an edge (and far from the other triangle) are half covered
    assert torch.allclose(alpha[[1, 1, 1, 2, 3], [3, 4, 5, 6, 6]], torch.full((5,), 0.5, dtype=torch.float64))


@pytest.mark.parametrize("rasterise", RASTERISERS)
def test_the_nearer_triangle_wins(rasterise):
    red = flat_square((1.0, 1.0), (5.0, 5.0), depth=2.0, colour=(1.0, 0.0, 0.0))
    blue = flat_square((3.0, 3.0), (7.0, 7.0), depth=3.0, colour=(0.0, 0.0, 1.0))
    pixels, depth, colours = (torch.cat([a, b], dim=1) for a, b in zip(red[:3], blue[:3]))
    faces = torch.cat([red[3], blue[3] + 4])
    image = rasterise(pixels, depth, colours, faces, (8, 8), sigma=0.25).image[0]
    assert torch.allclose(image[:, 3:5, 3:5], torch.tensor([1.0, 0, 0], dtype=torch.float64)[:, None, None])
    image = rasterise(pixels, 5 - depth, colours, faces, (8, 8), sigma=0.25).image[0]
    assert torch.allclose(image[:, 3:5, 3:5], torch.tensor([0, 0, 1.0], dtype=torch.float64)[:, None, None])


def test_triangles_off_the_image_draw_nothing():
    pixels, depth, colours, faces = flat_square((40.0, 2.0), (50.0, 5.0))
    for rasterise in RASTERISERS:
        out = rasterise(pixels, depth, colours, faces, (8, 8), background=0.5)
        assert (out.alpha == 0).all() and (out.image == 0.5).all()


def random_views(batch, seed, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    camera_raw = 0.5 * torch.randn(batch, 7, generator=gen, dtype=dtype)
    light_raw = torch.randn(batch, 9, generator=gen, dtype=dtype)
    return camera_raw, light_raw


def test_dense_and_windowed_rasterisers_agree_with_their_gradients(template):
    camera_raw, light_raw = random_views(2, seed=1)
    inputs = [
        template.vertices.double().expand(2, -1, -1).clone(),
        template.colours.double().expand(2, -1, -1).clone(),
        camera_raw,
        light_raw,
    ]
    results = []
    for method in ("dense", "windowed"):
        leaves = [x.clone().requires_grad_() for x in inputs]
        vertices, colours, camera, light = leaves
        out = render(vertices, colours, template.faces, camera_from_params(camera), light_from_params(light),
                     size=(24, 24), method=method)
        weights = torch.linspace(0, 1, out.image.numel(), dtype=torch.float64).reshape(out.image.shape)
        (out.image * weights).sum().backward()
        results.append((out, [leaf.grad for leaf in leaves]))
    (dense, dense_grads), (windowed, windowed_grads) = results
    assert dense.alpha.sum() > 50  # the face is in view
    assert torch.allclose(dense.image, windowed.image, atol=1e-12)
    assert torch.allclose(dense.alpha, windowed.alpha, atol=1e-12)
    for a, b in zip(dense_grads, windowed_grads):
        assert torch.allclose(a, b, atol=1e-9)


def test_near_pairs_drops_only_pixels_the_triangle_cannot_cover(template):
    camera, _ = random_views(2, seed=4, dtype=torch.float32)
    view = to_view(template.vertices.expand(2, -1, -1), camera_from_params(camera))
    pixels, depth = project(view, camera_from_params(camera), (32, 32))
    corners = pixels[:, template.faces]  # (B, F, 3, 2)
    depths = depth[:, template.faces]  # (B, F, 3), also used as a grey colour
    terms = triangle_terms(corners, depths, depths[..., None].expand(-1, -1, -1, 3)).flatten(0, 1)
    pairs = window_pairs(corners, (32, 32), SIGMA)
    near = near_pairs(pairs, terms, SIGMA)
    coverage, _, _ = triangle_at_pixels(terms[pairs.triangle], *pairs.centre.unbind(1), SIGMA)
    dropped = torch.ones(len(pairs.triangle), dtype=torch.bool)
    dropped[torch.isin(pairs.triangle * 10**6 + pairs.pixel, near.triangle * 10**6 + near.pixel)] = False
    assert dropped.float().mean() > 0.2  # work saved
    assert (coverage[dropped] == 0).all()  # and nothing drawn lost


@pytest.mark.parametrize("method", ["windowed", "dense"])
def test_render_gradcheck_on_a_tiny_mesh(method):
    camera_raw, light_raw = random_views(1, seed=3)
    vertices = torch.tensor([PYRAMID_VERTICES], dtype=torch.float64)
    colours = torch.rand(1, 5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def rendered(vertices, colours, camera_raw, light_raw):
        camera, light = camera_from_params(camera_raw), light_from_params(light_raw)
        out = render(vertices, colours, PYRAMID_FACES, camera, light, size=(8, 8), background=0.25, method=method)
        return out.image, out.alpha

    image, alpha = rendered(vertices, colours, 0.2 * camera_raw, 0.3 * light_raw)
    assert 0 < alpha.sum() < 64 and ((alpha > 0) & (alpha < 1)).sum() > 10  # soft edges in view
    inputs = [t.clone().requires_grad_() for t in (vertices, colours, 0.2 * camera_raw, 0.3 * light_raw)]
    assert torch.autograd.gradcheck(rendered, inputs, eps=1e-6, atol=1e-6)


def test_render_checks_its_inputs(template):
    camera, light = camera_from_params(torch.zeros(1, 7)), light_from_params(torch.zeros(1, 9))
    vertices, colours = template.vertices[None], template.colours[None]
    with pytest.raises(ValueError, match="vertices and colours"):
        render(vertices, colours[:, :5], template.faces, camera, light)
    with pytest.raises(ValueError, match="faces index vertices"):
        render(vertices[:, :5], colours[:, :5], template.faces, camera, light)
    with pytest.raises(ValueError, match="unknown rasteriser 'hard'"):
        render(vertices, colours, template.faces, camera, light, method="hard")
    with pytest.raises(ValueError, match="positive"):
        render(vertices, colours, template.faces, camera, light, sigma=0)


# --- pixel loss and the branch ----------------------------------------------


def test_pixel_loss_by_hand():
    rendered = torch.zeros(2, 3, 2, 2)
    crops = torch.zeros(2, 3, 2, 2)
    crops[0, 0, 0, 0] = 0.4  # one channel of one pixel
    crops[0, :, 1, 1] = -0.2  # all channels of another: L1 over rgb is 0.6
    crops[1] = 1.0
    # sums 1.0 and 12.0 over channels and pixels, divided by W * H = 4
    assert torch.allclose(pixel_loss(rendered, crops), torch.tensor([0.25, 3.0]))
    with pytest.raises(ValueError, match="equal"):
        pixel_loss(rendered, crops[:, :, :1])


def test_crop_faces_samples_the_box_evenly():
    # channel 0 holds each pixel centre's x, channel 1 its y: linear, so bilinear sampling is exact
    y, x = torch.meshgrid(torch.arange(24.0) + 0.5, torch.arange(32.0) + 0.5, indexing="ij")
    images = torch.stack([x, y])[None].expand(2, 2, 24, 32)
    crops = crop_faces(images, torch.tensor([[1, 4.0, 6.0, 20.0, 14.0]]), size=4)
    # bin centres: x = 4 + (k + 0.5) * 4, y = 6 + (k + 0.5) * 2
    assert torch.allclose(crops[0, 0], torch.tensor([6.0, 10.0, 14.0, 18.0]).expand(4, 4))
    assert torch.allclose(crops[0, 1], torch.tensor([7.0, 9.0, 11.0, 13.0])[:, None].expand(4, 4))
    per_image = crop_faces(images, [torch.zeros(0, 4), torch.tensor([[4.0, 6.0, 20.0, 14.0]])], size=4)
    assert torch.equal(per_image, crops)
    with pytest.raises(ValueError, match=r"\(K, 5\)"):
        crop_faces(images, torch.zeros(1, 4))


def test_crop_faces_equals_roi_align_on_the_whole_batch():
    # each box is cut from its own window of the image; the result must not depend on that
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, 40, 50, generator=generator).contiguous(memory_format=torch.channels_last)
    centres = torch.rand(200, 2, generator=generator) * torch.tensor([70.0, 60.0]) - 10  # some beyond the border
    sizes = torch.rand(200, 2, generator=generator) * 40 + 0.3
    rows = torch.cat([(torch.arange(200.0) % 3)[:, None], centres - sizes / 2, centres + sizes / 2], dim=1)
    expected = roi_align(images.contiguous(), rows, output_size=7, spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    torch.testing.assert_close(crop_faces(images, rows, size=7), expected, rtol=0, atol=1e-5)
    fixed = roi_align(images.contiguous(), rows, output_size=7, spatial_scale=1.0, sampling_ratio=2, aligned=True)
    torch.testing.assert_close(crop_faces(images, rows, size=7, samples=2), fixed, rtol=0, atol=1e-5)
    assert crop_faces(images, rows[:0]).shape == (0, 3, 32, 32)


def test_mesh_params_split_into_code_camera_and_light():
    assert CODE_SIZE + 7 + 9 == MESH_PARAMS == 144
    parts = split_mesh_params(torch.arange(2 * 144.0).reshape(2, 144))
    assert [p.shape for p in parts] == [(2, 128), (2, 7), (2, 9)]
    assert parts.light[0, -1] == 143
    with pytest.raises(ValueError, match=r"\(P, 144\)"):
        split_mesh_params(torch.zeros(2, 143))


def test_mesh_branch_loss_is_zero_on_its_own_rendering_and_trains_everything():
    torch.manual_seed(0)
    decoder = MeshDecoder(build_hierarchy(), channels=(16, 8, 8, 8), K=3)
    with torch.no_grad():
        decoder.head.weight.normal_(std=0.01)
    params = (0.3 * torch.randn(3, 144)).requires_grad_()
    with torch.no_grad():
        own = render_mesh_params(decoder, params).image
    assert own.shape == (3, 3, 32, 32)
    assert torch.allclose(mesh_branch_loss(decoder, params, own), torch.zeros(3), atol=1e-6)
    loss = mesh_branch_loss(decoder, params, torch.rand(3, 3, 32, 32))
    assert loss.shape == (3,) and (loss > 0).all()
    loss.sum().backward()
    assert params.grad[:, :128].abs().sum() > 0  # shape and texture code
    assert (params.grad[:, 128:].abs().sum(0) > 0).all()  # every camera and light value
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in decoder.parameters())
    with pytest.raises(ValueError, match=r"\(3, 3, H, W\) crops"):
        mesh_branch_loss(decoder, params, torch.rand(2, 3, 32, 32))


# --- benchmark --------------------------------------------------------------


@pytest.mark.slow
def test_bench_mesh_reports_its_figures():
    results = bench_mesh(batches=(1,), threads=1, repeats=1)
    (row,) = results
    assert (row["batch"], row["vertices"], row["triangles"], row["goal_ms"]) == (1, 289, 512, 50.0)
    assert row["decoder_ms"] > 0 and row["render_backward_ms"] > 0
    assert "fwd+bwd" in format_mesh_report(results, threads=1)
