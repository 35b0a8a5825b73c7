"""rfcore.viz.mesh pictures of the mesh branch and the mesh_render_explorer widget."""

import dataclasses

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from rfcore.mesh import MeshDecoder
from rfcore.mesh.loss import pixel_loss
from rfcore.mesh.template import LANDMARK_NAMES
from rfcore.train.mesh_decoder import CodeDistribution
from rfcore.viz import mesh as mesh_viz
from rfcore.viz import mesh_overlay, mesh_render
from rfcore.viz.draw import LANDMARK_COLORS, to_png
from rfcore.viz.widgets import mesh_render_explorer


def pixel(image, x, y):
    return tuple(int(c) for c in image[int(round(y)), int(round(x))])


def test_front_pixels_fill_the_panel_right_way_up(template):
    pixels = mesh_viz.front_pixels(template.vertices, 100)
    assert pixels.min() == pytest.approx(100 * mesh_viz.MARGIN) and pixels.max() == pytest.approx(90)
    top = int(template.vertices[:, 1].argmax())
    assert pixels[top, 1] == pytest.approx(10)  # model y up is image y down


def test_wireframe_counts_and_colours_the_landmarks(template):
    rendering = mesh_viz.render_wireframe(template, size=200)
    assert (rendering.info["vertices"], rendering.info["edges"], rendering.info["triangles"]) == (289, 800, 512)
    assert rendering.caption == "289 vertices, 800 edges, 512 triangles"
    pixels = rendering.info["pixels"]
    for k, name in enumerate(LANDMARK_NAMES):
        assert pixel(rendering.image, *pixels[template.landmarks[name]]) == LANDMARK_COLORS[k]
    assert pixel(rendering.image, 2, 2) == (255, 255, 255)
    assert (rendering.image == mesh_overlay.EDGE_COLOR).all(axis=-1).sum() > 1000


def test_signal_colours_are_white_at_zero_red_up_blue_down():
    white, red, blue = mesh_viz.signal_colors([0.0, 2.0, -2.0]).astype(int)
    assert white.min() > 240
    assert red[0] > red[2] and blue[2] > blue[0]
    half = mesh_viz.signal_colors([1.0], limit=2.0)[0].astype(int)
    assert half[0] > half[2] and half.min() > red.min()  # paler than full scale


def test_draw_signal_marks_zeros_grey_and_values_in_colour():
    canvas = np.full((20, 40, 3), 255, np.uint8)
    out = mesh_viz.draw_signal(canvas, np.array([[5.0, 10.0], [25.0, 10.0]]), [0.0, 1.0], radius=3)
    assert pixel(out, 5, 10) == mesh_viz.ZERO_COLOR and pixel(out, 5, 12) == (255, 255, 255)  # small dot
    assert pixel(out, 25, 12) == tuple(mesh_viz.signal_colors([1.0])[0].tolist())
    assert (canvas == 255).all()  # input untouched


def test_chebyshev_terms_reach_k_hops(template):
    state = torch.random.get_rng_state()
    source = template.landmarks["nose_tip"]
    rendering = mesh_viz.render_chebyshev_impulse(template, source, K=4, size=80)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global generator is left alone
    info = rendering.info
    assert info["reach"] == [0, 1, 2, 3]
    hops = info["hops"]
    for k in range(4):
        assert (info["terms"][k][hops > k] == 0).all()
    assert info["support"][0] == 1 and info["support"][1] == int((hops == 1).sum())  # T1 = L~ is 0 on the diagonal
    assert info["support"][2] == int((hops <= 2).sum())
    assert rendering.image.shape == (80, 4 * 80 + 3 * 4, 3)
    assert "T3: " in rendering.caption
    with pytest.raises(ValueError, match="out of range"):
        mesh_viz.render_chebyshev_impulse(template, 289, K=2)


def test_upsampling_interpolates_and_keeps_constants(hierarchy):
    values = torch.linspace(-1, 1, 25)
    rendering = mesh_viz.render_upsampling(hierarchy, 1, values, size=60)
    expected = hierarchy.upsampling[1].to_dense() @ values
    assert torch.allclose(rendering.info["fine"], expected)
    constant = mesh_viz.render_upsampling(hierarchy, 0, torch.full((9,), 0.7), size=60).info["fine"]
    assert torch.allclose(constant, torch.full((25,), 0.7))
    assert "every row sums to 1" in rendering.caption
    with pytest.raises(ValueError, match="level must be in 0..2"):
        mesh_viz.render_upsampling(hierarchy, 3, torch.zeros(289))
    with pytest.raises(ValueError, match=r"expected \(25,\) values"):
        mesh_viz.render_upsampling(hierarchy, 1, torch.zeros(9))


def test_render_signals_checks_the_shape(template):
    with pytest.raises(ValueError, match=r"expected \(N, 289\) signals"):
        mesh_viz.render_signals(template, np.zeros((2, 10)))


def test_render_face_poses_and_lights_the_mesh(template):
    args = (template.vertices, template.colours, template.faces)
    front = mesh_render.render_face(*args, size=48)
    assert front.image.shape == (48, 48, 3) and front.image.dtype == np.uint8
    assert pixel(front.image, 0, 0) == (128, 128, 128)  # grey background
    alpha = front.info["alpha"]
    assert alpha[24, 24] > 0.99 and alpha[0, 0] == 0
    turned = mesh_render.render_face(*args, yaw=40, size=48)
    assert not np.array_equal(turned.image, front.image)
    assert "yaw 40" in turned.caption
    behind = mesh_render.render_face(*args, light=(0.0, 0.0, -10.0), ambient=0.0, size=48)
    lit = mesh_render.render_face(*args, light=(0.0, 0.0, 0.0), ambient=0.0, size=48)
    face = alpha > 0.99
    assert behind.image[face].max() == 0 and lit.image[face].mean() > 60


def test_render_fit_reports_the_pixel_loss():
    crop = torch.rand(3, 8, 10, generator=torch.Generator().manual_seed(0))
    rendered = torch.rand(3, 8, 10, generator=torch.Generator().manual_seed(1))
    rendering = mesh_render.render_fit(crop, rendered, scale=3)
    assert rendering.info["loss"] == pytest.approx(float(pixel_loss(rendered[None], crop[None])))
    assert rendering.image.shape == (24, 3 * 30 + 2 * 4, 3)


def test_draw_dense_vertices_sets_single_pixels():
    image = np.zeros((10, 12, 3), np.uint8)
    out = mesh_overlay.draw_dense_vertices(image, [[[2.5, 3.2], [11.9, 9.9], [-1.0, 4.0], [12.0, 2.0]]])
    assert out.sum(axis=-1).nonzero()[0].tolist() == [3, 9]
    assert pixel(out, 2, 3) == (255, 255, 255) and pixel(out, 11, 9) == (255, 255, 255)


def test_hierarchy_shows_every_level(hierarchy):
    rendering = mesh_viz.render_hierarchy(hierarchy, size=60)
    assert rendering.info == {"vertices": [9, 25, 81, 289], "triangles": [8, 32, 128, 512]}
    assert rendering.image.shape == (60, 4 * 60 + 3 * 4, 3)


def test_position_map_holds_the_vertices_on_their_grid(template):
    rendering = mesh_viz.render_position_map(template, scale=2)
    positions = rendering.info["map"]  # (17, 17, 3), row 0 at the top
    assert torch.equal(positions[-1, 0], template.vertices[0])  # vertex (row 0, col 0) at u = v = -1: bottom left
    assert torch.equal(positions[0, -1], template.vertices[-1])
    assert rendering.image.shape == (34, 2 * 34 + 4, 3)
    shuffled = dataclasses.replace(template, uv=template.uv.flip(0))
    with pytest.raises(ValueError, match="regular uv grid"):
        mesh_viz.render_position_map(shuffled)


def test_code_dimensions_move_the_face_only_where_the_code_matters(hierarchy):
    decoder = MeshDecoder(hierarchy)  # an untrained decoder ignores its code
    codes = CodeDistribution(torch.zeros(128), torch.eye(128))
    still = mesh_render.render_code_dimensions(decoder, codes, [0, 5], hierarchy.template, size=32)
    assert still.info["displacement"].shape == (2, 289) and still.info["displacement"].max() == 0
    assert still.image.shape == (2 * 32, 4 * 32 + 3 * 4, 3)
    torch.nn.init.normal_(decoder.head.weight, std=0.01, generator=torch.Generator().manual_seed(0))
    moved = mesh_render.render_code_dimensions(decoder, codes, [0], hierarchy.template, size=32)
    assert moved.info["displacement"].min() > 0


def test_render_faces_puts_one_picture_per_mesh(template):
    vertices, colours = template.vertices.expand(3, -1, -1), template.colours.expand(3, -1, -1)
    assert mesh_render.render_faces(vertices, colours, template.faces, size=20).image.shape == (20, 3 * 20 + 2 * 4, 3)


def test_meshes_are_drawn_where_their_vertices_are(template):
    image = np.zeros((50, 60, 3), np.uint8)
    mesh = template.vertices[None, :, :2] * 10 + torch.tensor([30.0, 25.0])  # (1, V, 2) pixels
    drawn = mesh_overlay.draw_face_meshes(image, mesh, template.faces, color=(0, 255, 0))
    lit = drawn[..., 1].nonzero()
    assert image.max() == 0 and drawn[..., [0, 2]].max() == 0
    assert lit[0].min() >= 24 - 10 and lit[0].max() <= 26 + 13 and lit[1].min() >= 29 - 10
    boxes = torch.tensor([[20.0, 15.0, 40.0, 35.0]])
    comparison = mesh_overlay.render_mesh_comparison(image, boxes, {"a": mesh, "b": mesh + 100}, template.faces, size=40)
    assert comparison.image.shape == (40, 2 * 40 + 4, 3)
    assert comparison.image[:, :40].max() == 255 and comparison.image[20:, 44:].max() == 0  # "b" is outside its panel


def test_plots_are_figures():
    response = mesh_viz.plot_filter_response(torch.tensor([1.0, 0.5]), torch.tensor([0.0, 1.0, 2.0]))
    assert isinstance(response, Figure) and len(response.axes[0].lines) == 3  # curve, eigenvalues, zero line
    assert response.axes[0].lines[1].get_ydata().tolist() == [0.5, 1.0, 1.5]
    spectrum = mesh_viz.plot_spectra({"L": torch.tensor([0.0, 1.0, 3.0]), "normalised": torch.tensor([0.0, 2.0])})
    assert isinstance(spectrum, Figure) and len(spectrum.axes[0].lines) == 2
    losses = mesh_render.plot_losses([1.0, 0.5, 0.25], title="fit")
    assert isinstance(losses, Figure) and losses.axes[0].get_yscale() == "log"


def test_mesh_render_explorer_rerenders_on_every_slider(template):
    explorer = mesh_render_explorer(template, size=40)
    assert list(explorer.controls) == ["pitch", "yaw", "roll", "distance", "light_x", "light_y", "light_z", "ambient"]
    start = mesh_render.render_face(template.vertices, template.colours, template.faces, size=40)
    assert explorer.image.value == to_png(start.image)
    explorer.controls["yaw"].value = 30.0
    explorer.controls["light_x"].value = 2.0
    moved = mesh_render.render_face(template.vertices, template.colours, template.faces, yaw=30.0, light=(2.0, 0.0, 0.0),
                                 size=40)
    assert explorer.image.value == to_png(moved.image)
    assert "yaw 30" in explorer.caption.value and "light at (2.0, 0.0, 0.0)" in explorer.caption.value
    assert len(explorer.view.children) == 4
