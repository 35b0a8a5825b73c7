"""Tests of rfcore.onnx_backend: the onnx engine of the Detector, its cache and its errors."""

import io
import sys

import numpy as np
import onnx
import pytest

import rfcore.quantize
from rfcore.assets import IMAGES
from rfcore.cli import main
from rfcore.config import get_config
from rfcore.detector import Detector
from rfcore.export import export_onnx, with_metadata
from rfcore.model.fuse import fuse_for_inference
from rfcore.onnx_backend import CACHE_ENV, OnnxNetwork
from rfcore.weights import load_model

pytest.importorskip("onnxruntime")

GROUP = IMAGES / "group.jpg"


@pytest.fixture(scope="module")
def float_export() -> bytes:
    buffer = io.BytesIO()
    export_onnx(fuse_for_inference(load_model(None, get_config("mobilenet0.25"))), buffer, preset="mobilenet0.25")
    return buffer.getvalue()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(folder))
    return folder


def assert_same_faces(faces, reference, tolerance):
    assert len(faces) == len(reference) > 0
    for face, want in zip(faces, reference):
        assert np.abs(np.subtract(face.box, want.box)).max() < tolerance
        assert np.abs(np.subtract(face.landmarks, want.landmarks)).max() < tolerance


@pytest.mark.slow
def test_onnx_engine_exports_the_shipped_weights_once_and_finds_the_same_faces(cache):
    detector = Detector(engine="onnx")
    (cached,) = cache.glob("*.onnx")
    assert cached.name.startswith("retinaface_mobilenet0.25-mobilenet0.25-")
    assert detector.model.precision == "float32"
    assert_same_faces(detector.detect(GROUP), Detector().detect(GROUP), 1e-2)
    written = cached.stat().st_mtime_ns
    Detector(engine="onnx")
    assert cached.stat().st_mtime_ns == written and len(list(cache.glob("*"))) == 1


@pytest.mark.slow
def test_a_damaged_cache_entry_is_rebuilt(cache):
    Detector(engine="onnx")
    (cached,) = cache.glob("*.onnx")
    whole = cached.read_bytes()
    cached.write_bytes(whole[: len(whole) // 3])  # a cut copy or a full disk
    assert Detector(engine="onnx").detect(GROUP)
    assert cached.read_bytes() == whole and len(list(cache.glob("*"))) == 1


@pytest.mark.slow
def test_onnx_engine_runs_a_file_on_a_batch_of_two_sizes(tmp_path, float_export):
    path = tmp_path / "model.onnx"
    path.write_bytes(float_export)
    image = np.full((120, 160, 3), 90, np.uint8)
    detector = Detector(path, engine="onnx")
    faces, none = detector.detect([GROUP, image], color="RGB")
    assert_same_faces(faces, Detector().detect(GROUP), 1e-2)
    assert none == []


@pytest.mark.slow
def test_a_foreign_onnx_model_is_refused_with_what_to_do(tmp_path):
    x = onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 3, 4, 4])
    y = onnx.helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, [1, 3, 4, 4])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["input"], ["output"])], "g", [x], [y])
    path = tmp_path / "other.onnx"
    path.write_bytes(onnx.helper.make_model(graph).SerializeToString())
    with pytest.raises(ValueError, match=r"other.onnx is not an ONNX model exported by rfcore .*rfcore export"):
        Detector(path, engine="onnx")


def test_a_file_that_is_not_onnx_is_named(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="broken.onnx is not a readable ONNX model"):
        Detector(path, engine="onnx")
    with pytest.raises(FileNotFoundError, match="missing.onnx not found"):
        Detector(tmp_path / "missing.onnx", engine="onnx")


@pytest.mark.slow
def test_a_model_of_another_preset_is_refused(tmp_path, float_export):
    path = tmp_path / "resnet.onnx"
    path.write_bytes(with_metadata(float_export, {"rfcore.preset": "resnet50"}))
    with pytest.raises(ValueError, match=r"resnet.onnx was exported for preset resnet50, not mobilenet0.25: leave "
                                         r"out the preset \(--preset\) to use the file's"):
        OnnxNetwork(path, "mobilenet0.25")
    assert OnnxNetwork(path).preset == "resnet50"


@pytest.mark.slow
def test_an_export_without_a_preset_needs_one(tmp_path, float_export):
    path = tmp_path / "old.onnx"
    model = onnx.load_from_string(float_export)
    del model.metadata_props[:]
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ValueError, match=r"old.onnx has no preset in its metadata \(an older export\): name it with "
                                         r"--preset"):
        OnnxNetwork(path)
    assert OnnxNetwork(path, "mobilenet0.25").preset == "mobilenet0.25"


def test_missing_onnxruntime_says_how_to_install_it(monkeypatch, cache):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(ImportError, match=r"onnxruntime, which is not installed: pip install onnxruntime"):
        Detector(engine="onnx")
    assert not cache.exists()  # nothing exported before the check


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"engine": "tvm"}, "engine must be one of torch, onnx, got 'tvm'"),
        ({"engine": "onnx", "mesh": True}, "need engine='torch'"),
        ({"weights": "model.onnx"}, "model.onnx is an ONNX model: run it with engine='onnx'"),
    ],
)
def test_engine_options_that_cannot_work_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        Detector(**options)


@pytest.mark.slow
def test_cli_exports_int8_and_detects_with_it(tmp_path, capsys, monkeypatch):
    from rfcore.assets import load_image
    from rfcore.image import letterbox

    # two calibration images keep the test short; the full set is tested in test_quantize.py
    photos = [letterbox(load_image(IMAGES / name), (480, 640)) for name in ("group.jpg", "astronaut.jpg")]
    monkeypatch.setattr(rfcore.quantize, "calibration_images", lambda: photos)
    out = tmp_path / "int8.onnx"
    assert main(["export", "--onnx", str(out), "--int8"]) == 0
    assert "int8 model" in capsys.readouterr().out
    assert main(["detect", str(GROUP), "--engine", "onnx", "--weights", str(out), "--json"]) == 0
    assert capsys.readouterr().out.count('"box"') == len(Detector().detect(GROUP))
    assert main(["detect", str(GROUP), "--weights", str(out)]) == 2
    assert "is an ONNX model: run it with engine='onnx' (command line: --engine onnx)" in capsys.readouterr().err
    assert main(["detect", str(GROUP), "--engine", "onnx", "--weights", str(out), "--preset", "resnet50"]) == 2
    assert "exported for preset mobilenet0.25, not resnet50" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_int8_export_without_onnxruntime_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)
    out = tmp_path / "int8.onnx"
    assert main(["export", "--onnx", str(out), "--int8"]) == 2
    assert "int8 export needs onnxruntime (its quantisation tools), which is not installed" in capsys.readouterr().err
    assert not out.exists()
