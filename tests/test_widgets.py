from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import torch

from rfcore.config import get_config
from rfcore.detector import Face
from rfcore.model import RetinaFaceOutput
from rfcore.viz import anchors, detection, draw, landmarks
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


def test_explorer_displays_as_a_widget():
    bundle = anchor_explorer(IMAGE, FACE, CFG)._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_threshold_explorer_rerenders_when_the_threshold_moves():
    faces = [Face((36.0, 36.0, 52.0, 52.0), 0.9, tuple(map(tuple, POINTS.tolist()))),
             Face((80.0, 10.0, 100.0, 30.0), 0.3, tuple(map(tuple, POINTS.tolist())))]
    explorer = threshold_explorer(IMAGE, faces, FACE[None], lowest=0.05)
    slider = explorer.controls["threshold"]
    assert (slider.value, slider.min, slider.max) == (0.5, 0.05, 0.99)
    assert explorer.image.value == draw.to_png(detection.render_threshold(IMAGE, faces, 0.5, FACE[None]).image)
    assert "1 face, 1 on an annotated face" in explorer.caption.value
    slider.value = 0.2
    assert "2 faces, 1 on an annotated face (IoU &gt;= 0.5), 1 elsewhere" in explorer.caption.value


def _every_explorer(template):
    """Each explorer of rfcore.viz.widgets on hand-sized input, with a control to move and values to move it to."""
    faces = [Face((36.0, 36.0, 52.0, 52.0), 0.9, tuple(map(tuple, POINTS.tolist()))),
             Face((80.0, 10.0, 100.0, 30.0), 0.3, tuple(map(tuple, POINTS.tolist())))]
    anchors = (12 * 16 + 6 * 8) * 2  # P3 12x16 and P4 6x8 cells, two sizes each
    logits = torch.stack([torch.zeros(anchors), torch.linspace(-2, 2, anchors)], dim=-1)[None]  # distinct losses
    output = RetinaFaceOutput(logits, torch.zeros(1, anchors, 4), torch.zeros(1, anchors, 10))
    return [
        (anchor_explorer(IMAGE, FACE, CFG), "x", [10, 60, 100]),
        (landmark_explorer(IMAGE, FACE, POINTS, CFG), "scale", [0.5, 1.0, 1.5]),
        (threshold_explorer(IMAGE, faces, lowest=0.05), "threshold", [0.1, 0.5, 0.95]),
        (loss_explorer(IMAGE, output, FACE[None], POINTS[None], CFG), "ohem_ratio", [0, 3, 20]),
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
