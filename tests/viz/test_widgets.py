import base64
import importlib.util
import re
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import nbformat
import numpy as np
import pytest
import torch
from nbconvert import HTMLExporter

from rfcore.config import get_config
from rfcore.detector import Face
from rfcore.model import RetinaFaceOutput
from rfcore.viz import anchors, detection, draw, landmarks, loss, mesh_render
from rfcore.viz.widgets import (
    anchor_explorer,
    landmark_explorer,
    loss_explorer,
    mesh_render_explorer,
    threshold_explorer,
)

CFG = replace(get_config("paper"), strides=(8, 16), anchor_sizes=((16.0, 24.0), (32.0, 48.0)))
IMAGE = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
FACE = torch.tensor([36.0, 36.0, 52.0, 52.0])
POINTS = torch.tensor([[40.0, 40.0], [48.0, 40.0], [44.0, 44.0], [40.0, 48.0], [48.0, 48.0]])
FACES = [Face((36.0, 36.0, 52.0, 52.0), 0.9, tuple(map(tuple, POINTS.tolist()))),
         Face((80.0, 10.0, 100.0, 30.0), 0.3, tuple(map(tuple, POINTS.tolist())))]
ANCHORS = (12 * 16 + 6 * 8) * 2  # P3 12x16 and P4 6x8 cells, two sizes each
OUTPUT = RetinaFaceOutput(torch.stack([torch.zeros(ANCHORS), torch.linspace(-2, 2, ANCHORS)], dim=-1)[None],
                          torch.zeros(1, ANCHORS, 4), torch.zeros(1, ANCHORS, 10))  # distinct losses per anchor


def test_anchor_explorer_starts_at_the_face_centre():
    explorer = anchor_explorer(IMAGE, FACE, CFG, level="P4")
    assert {name: c.value for name, c in explorer.controls.items()} == {"level": "P4", "size_index": 0, "x": 44, "y": 44}
    assert explorer.controls["x"].max == 127 and explorer.controls["y"].max == 95
    assert explorer.controls["size_index"].max == 1
    expected = anchors.render_anchor_level(IMAGE, FACE, CFG, "P4", 0, (44, 44))
    assert explorer.image.value == draw.to_png(expected.image)


def test_anchor_explorer_rerenders_when_a_control_moves():
    explorer = anchor_explorer(IMAGE, FACE, CFG)
    before = explorer.image.value
    explorer.controls["x"].value = 100
    assert explorer.image.value != before
    assert explorer.image.value == draw.to_png(anchors.render_anchor_level(IMAGE, FACE, CFG, "P3", 0, (100, 44)).image)
    assert "col 12" in explorer.caption.value
    explorer.controls["level"].value = "P4"
    explorer.controls["size_index"].value = 1
    assert "P4 (stride 16), 48.0 px" in explorer.caption.value


def test_landmark_explorer_rerenders_and_shows_messages():
    explorer = landmark_explorer(IMAGE, FACE, POINTS, CFG)
    start = explorer.image.value
    explorer.controls["scale"].value = 2.0
    expected = landmarks.render_moved_face(IMAGE, FACE, POINTS, CFG, (44, 44), 2.0)
    assert explorer.image.value != start and explorer.image.value == draw.to_png(expected.image)
    assert "landmarks l = " in explorer.caption.value
    explorer.controls["x"].value = 0  # the face now sticks out on the left
    assert "does not lie inside the image" in explorer.caption.value


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _jpeg(rendering) -> str:
    """What a bundle carries for ``rendering``'s picture: its JPEG, base64-encoded."""
    return base64.b64encode(draw.to_jpeg(rendering.image)).decode("ascii")


def test_every_explorer_displays_as_its_widget_and_a_still_picture_of_its_start(template):
    """The widget for JupyterLab; for readers without a kernel the render_* function's picture at the
    explorer's initial values (computed here from the documented defaults) and its caption."""
    explorers = [explorer for explorer, _, _ in _every_explorer(template)]
    starts = [
        anchors.render_anchor_level(IMAGE, FACE, CFG, "P3", 0, (44, 44)),
        landmarks.render_moved_face(IMAGE, FACE, POINTS, CFG, (44, 44), 1.0),
        detection.render_threshold(IMAGE, FACES, 0.5),
        loss.render_loss(IMAGE, OUTPUT, FACE[None], POINTS[None], CFG, CFG.lambda_box, CFG.lambda_pts,
                         CFG.lambda_pixel, CFG.ohem_ratio),
        mesh_render.render_face(template.vertices, template.colours, template.faces, 0, 0, 0, 4.0, (0, 0, 0), 0.4, 32),
    ]
    for explorer, start in zip(explorers, starts, strict=True):
        bundle = explorer._repr_mimebundle_()
        assert set(bundle) == {WIDGET_VIEW, "image/jpeg", "text/plain"}
        assert bundle[WIDGET_VIEW]["model_id"] == explorer.view.model_id
        assert start.ok and start.caption
        assert bundle["image/jpeg"] == _jpeg(start), start.caption
        assert bundle["text/plain"] == start.caption


def test_the_still_picture_is_what_the_explorer_shows_when_displayed():
    explorer = anchor_explorer(IMAGE, FACE, CFG)
    explorer.controls["x"].value = 0  # the face is still inside: any anchor position is valid input
    explorer.controls["level"].value = "P4"
    moved = anchors.render_anchor_level(IMAGE, FACE, CFG, "P4", 0, (0, 44))
    assert explorer._repr_mimebundle_()["image/jpeg"] == _jpeg(moved)
    explorer = landmark_explorer(IMAGE, FACE, POINTS, CFG)
    explorer.controls["x"].value = 0  # the face now sticks out on the left: the message is the text
    assert "does not lie inside the image" in explorer._repr_mimebundle_()["text/plain"]


@pytest.mark.slow
def test_a_saved_notebook_keeps_the_still_picture_and_nbconvert_shows_it(tmp_path):
    """Run an explorer in a kernel with tools/execute_notebooks.py, as the notebooks are saved, then
    convert the file as nbviewer does: the widget state is gone, the picture is in the page."""
    path = tmp_path / "explorer.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import numpy as np\n"
        "from rfcore.viz.widgets import threshold_explorer\n"
        "threshold_explorer(np.full((24, 32, 3), 90, np.uint8), [])"
    )]), path)
    _execute_notebooks().execute(path)

    notebook = nbformat.read(path, as_version=4)
    assert "widgets" not in notebook.metadata
    (output,) = notebook.cells[0].outputs
    assert set(output.data) == {WIDGET_VIEW, "image/jpeg", "text/plain"}
    assert output.data["image/jpeg"] == _jpeg(detection.render_threshold(np.full((24, 32, 3), 90, np.uint8), [], 0.5))
    page, _ = HTMLExporter().from_notebook_node(notebook)
    shown = re.findall(r'<img [^>]*src="data:image/jpeg;base64,([^"]+)"', page)
    assert shown == [output.data["image/jpeg"]]
    assert output.data[WIDGET_VIEW]["model_id"] not in page  # no widget view without its state


def test_threshold_explorer_rerenders_when_the_threshold_moves():
    explorer = threshold_explorer(IMAGE, FACES, FACE[None], lowest=0.05)
    slider = explorer.controls["threshold"]
    assert (slider.value, slider.min, slider.max) == (0.5, 0.05, 0.99)
    assert explorer.image.value == draw.to_png(detection.render_threshold(IMAGE, FACES, 0.5, FACE[None]).image)
    assert "1 face, 1 on an annotated face" in explorer.caption.value
    slider.value = 0.2
    assert "2 faces, 1 on an annotated face (IoU &gt;= 0.5), 1 elsewhere" in explorer.caption.value


def _every_explorer(template):
    """Each explorer of rfcore.viz.widgets on hand-sized input, with a control to move and values to move it to."""
    return [
        (anchor_explorer(IMAGE, FACE, CFG), "x", [10, 60, 100]),
        (landmark_explorer(IMAGE, FACE, POINTS, CFG), "scale", [0.5, 1.0, 1.5]),
        (threshold_explorer(IMAGE, FACES, lowest=0.05), "threshold", [0.1, 0.5, 0.95]),
        (loss_explorer(IMAGE, OUTPUT, FACE[None], POINTS[None], CFG), "ohem_ratio", [0, 3, 20]),
        (mesh_render_explorer(template, size=32), "yaw", [-30.0, 0.0, 30.0]),
    ]


def test_moving_every_explorer_20_times_leaves_no_matplotlib_figure_open(template):
    explorers = _every_explorer(template)
    before = plt.get_fignums()
    for explorer, control, values in explorers:
        pictures = set()
        for step in range(20):
            explorer.controls[control].value = values[step % len(values)]
            pictures.add(bytes(explorer.image.value))
        assert len(pictures) == len(values), control  # every move re-rendered
    assert plt.get_fignums() == before


def _execute_notebooks():
    """tools/execute_notebooks.py, the script that saves the notebooks (tools/ is not a package)."""
    script = Path(__file__).resolve().parents[2] / "tools" / "execute_notebooks.py"
    spec = importlib.util.spec_from_file_location("execute_notebooks", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
