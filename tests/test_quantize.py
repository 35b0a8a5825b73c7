"""Tests of rfcore.quantize: the int8 model finds the faces the float model finds (issue 18's accuracy checks)."""

import io

import numpy as np
import onnx
import pytest

from rfcore.assets import IMAGES
from rfcore.config import get_config
from rfcore.detector import Detector
from rfcore.export import PRECISION_KEY, PRESET_KEY, export_onnx
from rfcore.model.fuse import fuse_for_inference
from rfcore.postprocess import Face
from rfcore.quantize import (
    FLOAT_LAYERS,
    calibration_images,
    compare_faces,
    float_node_names,
    middle_crop,
    quantisation_parameters,
    quantize_onnx,
)
from rfcore.weights import load_model

pytestmark = pytest.mark.slow  # ONNX export and int8 quantisation

pytest.importorskip("onnxruntime")

PHOTOS = sorted(IMAGES.glob("*.jpg"))


@pytest.fixture(scope="module")
def int8_path(tmp_path_factory):
    cfg = get_config("mobilenet0.25")
    buffer = io.BytesIO()
    export_onnx(fuse_for_inference(load_model(None, cfg)), buffer, preset=cfg.name)
    return quantize_onnx(buffer.getvalue(), tmp_path_factory.mktemp("int8") / "int8.onnx", cfg)


def test_weights_are_int8_per_channel_and_the_first_stage_and_heads_stay_float(int8_path):
    model = onnx.load(str(int8_path))
    props = {p.key: p.value for p in model.metadata_props}
    assert props[PRECISION_KEY] == "int8" and props[PRESET_KEY] == "mobilenet0.25"
    initializers = {t.name: t for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    quantised, kept = [], []
    for conv in convs:
        weight = conv.input[1]
        producer = next((n for n in model.graph.node if weight in n.output), None)
        (quantised if producer is not None and producer.op_type == "DequantizeLinear" else kept).append(conv)
        if producer is not None and producer.op_type == "DequantizeLinear":
            (values, scales) = (initializers[producer.input[0]], initializers[producer.input[1]])
            assert values.data_type == onnx.TensorProto.INT8
            assert scales.dims[0] == initializers.get(weight, values).dims[0]  # one scale per output channel
    assert {n.name for n in kept} == {n for n in float_node_names([c.name for c in convs])}
    assert len(kept) == 11 + 3 and len(quantised) == len(convs) - 14  # stem + 5 separable blocks, a head per level


def test_float_node_names_follow_the_exporters_scopes():
    names = ["/model/body/stage1/stage1.0/stage1.0.0/Conv", "/model/body/stage1/stage1.1/stage1.1.0/Conv",
             "/model/body/stage1/stage1.1/stage1.1.3/Conv", "/model/body/stage1/stage1.10/stage1.10.0/Conv",
             "/model/body/stage2/stage2.0/stage2.0.0/Conv"]
    assert float_node_names(names, ("body.stage1.0", "body.stage1.1.0")) == names[:2]
    assert float_node_names(names, FLOAT_LAYERS) == names[:4]


def test_calibration_images_are_photos_mirrors_crops_and_synthetic_faces():
    images = calibration_images(synthetic=1)
    assert len(images) == 3 * len(PHOTOS) + 1
    assert all(image.shape == (480, 640, 3) and image.dtype == np.uint8 for image in images)
    assert np.array_equal(images[len(PHOTOS)], images[0][:, ::-1])
    image = np.arange(100 * 50 * 3, dtype=np.uint8).reshape(100, 50, 3)
    assert middle_crop(image).shape == image.shape


@pytest.mark.parametrize("photo", PHOTOS, ids=lambda p: p.name)
def test_int8_finds_every_face_of_the_float_model_on_the_bundled_photos(int8_path, photo):
    float_faces = Detector().detect(photo)
    int8_faces = Detector(int8_path, engine="onnx").detect(photo)
    assert float_faces and len(int8_faces) == len(float_faces)
    matches = compare_faces(float_faces, int8_faces)  # (F, 2): IoU, landmark difference / face size
    assert (matches[:, 0] > 0.9).all() and (matches[:, 1] < 0.02).all()


def test_compare_faces_by_hand():
    face = Face((0.0, 0.0, 10.0, 40.0), 0.9, ((1.0, 1.0),) * 5)  # size sqrt(10 * 40) = 20
    moved = Face((0.0, 0.0, 10.0, 20.0), 0.8, ((1.0, 1.0),) * 4 + ((4.0, 5.0),))  # IoU 0.5, one point 5 px off
    assert np.allclose(compare_faces([face], [moved, Face((50.0, 50.0, 60.0, 60.0), 0.5, face.landmarks)]),
                       [[0.5, 0.25]])
    assert compare_faces([face], []).tolist() == [[0.0, np.inf]]


def test_quantisation_parameters_name_weights_per_channel_and_activations(int8_path):
    params = quantisation_parameters(int8_path)
    kinds = {kind: [p for p in params if p["kind"] == kind] for kind in ("weight", "bias", "activation")}
    assert len(kinds["weight"]) == len(kinds["bias"]) == 50 - 14 and kinds["activation"]
    for p in kinds["weight"] + kinds["bias"]:
        assert len(p["scale"]) > 1 and not p["zero_point"].any()  # per output channel, zero point 0
    assert all(len(p["scale"]) == 1 and p["zero_point"].dtype == np.uint8 for p in kinds["activation"])


def test_int8_ap_on_the_synthetic_validation_set_drops_by_at_most_half_a_point(int8_path):
    from rfcore.data.synthetic import validation_set
    from rfcore.evaluation import evaluate_samples

    samples = list(validation_set())
    float_ap = evaluate_samples(Detector(threshold=0.02), samples).curves["all"].ap
    int8_ap = evaluate_samples(Detector(int8_path, threshold=0.02, engine="onnx"), samples).curves["all"].ap
    assert float_ap > 0.5
    assert int8_ap >= float_ap - 0.005
