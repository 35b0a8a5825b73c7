"""Tests of rfcore.export: the ONNX graph runs in onnxruntime and matches PyTorch."""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from rfcore.config import get_config
from rfcore.detector import Detector
from rfcore.export import export_onnx
from rfcore.image import preprocess, read_image
from rfcore.model import RetinaFace, RetinaFaceOutput
from rfcore.model.fuse import fuse_for_inference
from rfcore.weights import load_model

pytestmark = pytest.mark.slow  # ONNX export

ort = pytest.importorskip("onnxruntime")

IMAGE = Path(__file__).resolve().parents[1] / "assets" / "images" / "grace_hopper.jpg"


@pytest.fixture(scope="module")
def plain():
    return load_model(None, get_config("mobilenet0.25"))


@pytest.fixture(scope="module")
def session(plain, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "retinaface.onnx"
    names = export_onnx(fuse_for_inference(plain), path)
    assert names == ["logits", "box_deltas", "landmark_deltas"]
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_graph_has_dynamic_batch_height_and_width(session):
    (images,) = session.get_inputs()
    assert images.name == "images" and images.shape == ["batch", 3, "height", "width"]
    assert [o.name for o in session.get_outputs()] == ["logits", "box_deltas", "landmark_deltas"]


@pytest.mark.parametrize("shape", [(1, 3, 480, 640), (1, 3, 333, 250), (2, 3, 200, 296)])
def test_onnxruntime_matches_pytorch(plain, session, shape):
    images = 60 * torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)))
    outputs = session.run(None, {"images": images.numpy()})
    with torch.inference_mode():
        expected = plain(images)
    for got, want in zip(outputs, expected[:3]):
        assert got.shape == tuple(want.shape)
        assert np.abs(got - want.numpy()).max() < 1e-4


def test_onnx_outputs_decode_to_the_detectors_faces(session):
    detector = Detector()
    image = read_image(IMAGE)
    batch = preprocess([image], detector.cfg.pixel_mean_bgr)
    outputs = RetinaFaceOutput(*map(torch.from_numpy, session.run(None, {"images": batch.contiguous().numpy()})))
    with torch.inference_mode():
        (faces,) = detector.postprocess(detector.model(batch), image.shape[:2])
    (from_onnx,) = detector.postprocess(outputs, image.shape[:2])
    assert len(faces.scores) == 1
    assert torch.allclose(from_onnx.boxes, faces.boxes, atol=1e-3)
    assert torch.allclose(from_onnx.landmarks, faces.landmarks, atol=1e-3)


def test_mesh_head_is_exported_and_model_left_in_eval(tmp_path):
    torch.manual_seed(0)
    model = RetinaFace.from_config(get_config("mobilenet0.25"), mesh_head=True)
    path = tmp_path / "mesh.onnx"
    assert export_onnx(model, path, example_size=(64, 64)) == ["logits", "box_deltas", "landmark_deltas", "mesh_params"]
    assert not model.training
    onnx.checker.check_model(onnx.load(str(path)))
    images = torch.randn(1, 3, 72, 40)
    (mesh,) = ort.InferenceSession(str(path)).run(["mesh_params"], {"images": images.numpy()})
    with torch.inference_mode():
        assert np.abs(mesh - model(images).mesh_params.numpy()).max() < 1e-4
