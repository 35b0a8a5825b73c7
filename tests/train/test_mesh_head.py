"""Tests of the self-supervised mesh head: training (rfcore.train.mesh_head), measuring (rfcore.evaluation.mesh) and
loading a mesh head file beside detector weights (rfcore.weights.load_mesh_model)."""

import shutil

import numpy as np
import pytest
import torch

from rfcore.cli import main
from rfcore.config import get_config
from rfcore.detector import Detector
from rfcore.evaluation.mesh import dense_nme, mesh_accuracy, template_in_boxes
from rfcore.mesh import MeshDecoder, build_hierarchy
from rfcore.model import RetinaFace
from rfcore.train.mesh_head import HeadTrainConfig, train_mesh_head
from rfcore.weights import (
    CROP_MARGIN_KEY,
    DECODER_LAYOUT_KEY,
    DEFAULT_WEIGHTS,
    DETECTOR_SHA_KEY,
    MESH_DECODER_FILE,
    MESH_HEAD_FILE,
    MESH_HEAD_KEY,
    MESH_HEAD_LAYOUT,
    load_detector_weights,
)
from rfcore.weights_io import file_sha256, read_metadata, save_weights

CFG = get_config("mobilenet0.25")


def test_config_refuses_bad_values():
    with pytest.raises(ValueError, match="'epochs': 0"):
        HeadTrainConfig(epochs=0)
    with pytest.raises(ValueError, match="'crop_size': 0"):
        HeadTrainConfig(crop_size=0)
    with pytest.raises(ValueError, match="'crop_margin': 0"):
        HeadTrainConfig(crop_margin=0)


def test_held_out_images_are_other_images():
    config = HeadTrainConfig(images=2, image_size=160, max_face=80)
    train, held_out = config.dataset(), config.dataset(held_out=True, length=1)
    assert len(train) == 2 and len(held_out) == 1
    assert (train[0].image != held_out[0].image).any()


def test_the_template_fills_each_box_exactly():
    boxes = torch.tensor([[10.0, 20.0, 50.0, 70.0], [0.0, 0.0, 8.0, 8.0]])
    points = template_in_boxes(boxes)  # (2, 289, 2)
    assert points.shape == (2, 289, 2)
    assert torch.allclose(torch.cat([points.amin(1), points.amax(1)], dim=1), boxes, atol=1e-5)
    assert points[0, :, 0].mean() == pytest.approx(30.0, abs=0.5)  # a frontal face is centred


def test_dense_nme_divides_the_mean_distance_by_sqrt_w_h():
    truth = torch.zeros(1, 3, 2)
    points = torch.tensor([[[3.0, 4.0], [0.0, 0.0], [0.0, 10.0]]])  # distances 5, 0, 10: mean 5
    boxes = torch.tensor([[0.0, 0.0, 20.0, 5.0]])  # sqrt(20 * 5) = 10
    assert dense_nme(points, truth, boxes).tolist() == [pytest.approx(0.5)]


def detector_with_head():
    detector = RetinaFace.from_config(CFG, mesh_head=True)
    load_detector_weights(detector, DEFAULT_WEIGHTS, CFG.name)
    return detector


@pytest.mark.slow
def test_training_changes_the_mesh_head_only():
    detector, decoder = detector_with_head(), MeshDecoder(build_hierarchy())
    before = {key: value.clone() for key, value in detector.state_dict().items()}
    decoder_before = {key: value.clone() for key, value in decoder.state_dict().items()}
    config = HeadTrainConfig(images=2, image_size=160, faces=(1, 2), max_face=80, epochs=1, batch_size=2)
    losses = train_mesh_head(detector, decoder, CFG, config)
    assert len(losses) == 1 and 0 < losses[0] < 3
    after = detector.state_dict()
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    assert changed and all(key.startswith("MeshHead.") for key in changed)
    assert all(torch.equal(value, decoder.state_dict()[key]) for key, value in decoder_before.items())


@pytest.fixture
def mesh_folder(tmp_path):
    """The shipped detector weights with a random decoder and mesh head beside them, as train-head writes them."""
    weights = tmp_path / "detector.safetensors"
    shutil.copy(DEFAULT_WEIGHTS, weights)
    torch.manual_seed(0)
    decoder = MeshDecoder(build_hierarchy())
    save_weights(decoder.state_dict(), tmp_path / MESH_DECODER_FILE, {DECODER_LAYOUT_KEY: decoder.layout})
    head = RetinaFace.from_config(CFG, mesh_head=True).mesh_head
    metadata = {"preset": CFG.name, DETECTOR_SHA_KEY: file_sha256(weights), DECODER_LAYOUT_KEY: decoder.layout}
    save_weights(head.state_dict(), tmp_path / MESH_HEAD_FILE, metadata)
    return weights, head, metadata


def test_a_mesh_head_beside_the_weights_gives_meshes(mesh_folder):
    weights, head, _ = mesh_folder
    detector = Detector(weights, mesh=True, fuse=False)
    assert all(torch.equal(value, head.state_dict()[key]) for key, value in detector.mesh_head.state_dict().items())


@pytest.mark.parametrize("key, value, message", [
    ("preset", "resnet50", "trained for the preset 'resnet50', not 'mobilenet0.25'"),
    (DETECTOR_SHA_KEY, "0" * 64, "the detector weights with sha256 '0000"),
    (DECODER_LAYOUT_KEY, "vertices 9-25-81-289, channels 8-8-8-8, K 6, code 128",
     ("a decoder of layout 'vertices 9-25-81-289, channels 8-8-8-8, K 6, code 128', not 'vertices 9-25-81-289, "
      "channels 64-32-32-16")),
    (MESH_HEAD_KEY, "200 values per anchor", "a mesh head of layout '200 values per anchor', not '144 values per anchor'"),
])
def test_a_mesh_head_made_for_something_else_is_refused_naming_both(mesh_folder, key, value, message):
    weights, head, metadata = mesh_folder
    save_weights(head.state_dict(), weights.with_name(MESH_HEAD_FILE), {**metadata, key: value})
    with pytest.raises(ValueError, match=rf"mesh_head.safetensors does not fit .*detector.safetensors and .*"
                                         rf"mesh_decoder.safetensors: .*{message}"):
        Detector(weights, mesh=True)


def test_weights_without_a_mesh_head_name_the_file_and_how_to_train_one(mesh_folder):
    weights, _, _ = mesh_folder
    weights.with_name(MESH_HEAD_FILE).unlink()
    with pytest.raises(ValueError, match=rf"{weights} has no mesh head .* no mesh_head.safetensors beside it; .*"
                                         rf"rfcore mesh train-head --weights {weights}"):
        Detector(weights, mesh=True)


def test_measuring_needs_a_detector_with_meshes():
    with pytest.raises(ValueError, match="needs a Detector built with mesh=True"):
        mesh_accuracy(Detector(), HeadTrainConfig().dataset(held_out=True, length=1))


@pytest.mark.slow
def test_the_head_s_crop_margin_grows_the_box_the_mesh_is_mapped_through(mesh_folder):
    weights, head, metadata = mesh_folder
    image = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    plain = Detector(weights, mesh=True, threshold=0.0, max_faces=3).detect(image, color="RGB")
    save_weights(head.state_dict(), weights.with_name(MESH_HEAD_FILE), {**metadata, CROP_MARGIN_KEY: "2"})
    grown = Detector(weights, mesh=True, threshold=0.0, max_faces=3).detect(image, color="RGB")
    assert len(plain) == len(grown) == 3
    for face, other in zip(plain, grown):
        assert face.box == other.box
        centre = torch.tensor(face.box).reshape(2, 2).mean(0)  # (2,)
        expected = centre + 2 * (torch.tensor(face.mesh) - centre)  # crop coordinates twice as far from the centre
        assert torch.allclose(torch.tensor(other.mesh), expected, atol=1e-3)


@pytest.mark.slow
def test_train_head_command_writes_a_head_beside_the_weights(mesh_folder, capsys):
    weights, _, _ = mesh_folder
    weights.with_name(MESH_HEAD_FILE).unlink()
    status = main(["mesh", "train-head", "--weights", str(weights), "--images", "2", "--image-size", "160",
                   "--epochs", "1", "--batch-size", "2", "--measure-images", "1", "--quiet"])
    assert status == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "held-out synthetic faces" in out
    metadata = read_metadata(weights.with_name(MESH_HEAD_FILE))
    assert metadata["preset"] == "mobilenet0.25" and metadata[DETECTOR_SHA_KEY] == file_sha256(weights)
    assert metadata[MESH_HEAD_KEY] == MESH_HEAD_LAYOUT
    assert metadata[CROP_MARGIN_KEY] == "1.5" and "--images 2" in metadata["source"]
    assert "--crop-margin 1.5 --crop-size 32" in metadata["source"]


def test_train_head_command_names_a_missing_decoder(mesh_folder, capsys):
    weights, _, _ = mesh_folder
    weights.with_name(MESH_DECODER_FILE).unlink()
    assert main(["mesh", "train-head", "--weights", str(weights), "--quiet"]) == 2
    assert f"rfcore mesh pretrain --out {weights.parent}" in capsys.readouterr().err


def test_the_shipped_mesh_head_beats_the_template_on_held_out_faces():
    result = mesh_accuracy(Detector(mesh=True), HeadTrainConfig().dataset(held_out=True, length=12))
    assert result.found >= 10
    assert result.nme < 0.85 * result.template_nme
    assert result.pose_error[1] < 12  # yaw, degrees (the median over 200 images is below 10)
