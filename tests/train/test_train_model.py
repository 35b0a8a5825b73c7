"""rfcore.train.model (L_pixel for a batch) and mesh-branch training through rfcore.train."""

import json

import numpy as np
import pytest
import torch
from builders import assert_same_tensors, tiny_config, train_until_crash, write_faces_folder
from safetensors.torch import load_file

from rfcore.boxes import MISSING, NEGATIVE, POSITIVE, image_left_first
from rfcore.config import MESH_CROP_MARGIN, get_config
from rfcore.image import network_input_to_rgb, preprocess
from rfcore.matching import AnchorTargets, FaceBatch
from rfcore.mesh import (
    MeshDecoder,
    build_hierarchy,
    crop_faces,
    crop_points,
    landmark_vertex_loss,
    mesh_branch_loss,
    project_mesh_params,
    uncrop_points,
)
from rfcore.mesh.fit import border_colour
from rfcore.model import RetinaFace
from rfcore.train.config import TrainConfig
from rfcore.train.loop import train
from rfcore.train.model import CROP_SAMPLES, TrainingModel, evenly_spaced, landmark_term, pixel_term
from rfcore.weights import CROP_MARGIN_KEY, DEFAULT_WEIGHTS, load_detector_weights, load_mesh_model
from rfcore.weights_io import load_weights, read_metadata

MOBILE = get_config("mobilenet0.25")


@pytest.fixture(scope="module")
def decoder():
    torch.manual_seed(0)
    return MeshDecoder(build_hierarchy())


def test_network_input_back_to_rgb_undoes_preprocess():
    rgb = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    back = network_input_to_rgb(preprocess(list(rgb), MOBILE.pixel_mean_bgr), MOBILE.pixel_mean_bgr)
    expected = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255
    torch.testing.assert_close(back, expected, rtol=0, atol=1e-6)


def test_spread_keeps_the_ends_and_spaces_evenly():
    assert evenly_spaced(5, None).tolist() == [0, 1, 2, 3, 4]
    assert evenly_spaced(3, 10).tolist() == [0, 1, 2]
    assert evenly_spaced(9, 3).tolist() == [0, 4, 8]


def test_pixel_term_renders_each_positive_against_its_own_face(decoder):
    # image 0 has faces a, b; image 1 has face c. Positives: (0, anchor 1) -> b, (1, anchor 2) -> c.
    faces = FaceBatch.from_list([torch.tensor([[0.0, 0, 8, 8], [10.0, 6, 18, 18]]), torch.tensor([[4.0, 4, 16, 12]])])
    labels = torch.full((2, 4), NEGATIVE)
    labels[0, 1] = labels[1, 2] = POSITIVE
    matched = torch.full((2, 4), -1)
    matched[0, 1], matched[1, 2] = 1, 0
    targets = AnchorTargets(labels, matched, torch.zeros(2, 4, 4), torch.zeros(2, 4, 10), torch.zeros(2, 4, dtype=bool))
    params = 0.1 * torch.randn(2, 4, 144, generator=torch.Generator().manual_seed(1))
    rgb = np.random.default_rng(2).integers(0, 256, (2, 24, 24, 3), dtype=np.uint8)
    images = preprocess(list(rgb), MOBILE.pixel_mean_bgr)
    positives = torch.stack([params[0, 1], params[1, 2]])

    value = pixel_term(decoder, lambda i, a: params[i, a], targets, faces, images, MOBILE.pixel_mean_bgr, crop_size=8)
    as_trained = pixel_term(decoder, lambda i, a: params[i, a], targets, faces, images, MOBILE.pixel_mean_bgr,
                            crop_size=8, crop_margin=MESH_CROP_MARGIN, over_border_colour=True)

    # crops cut from the RGB images themselves: converting after cropping changes nothing inside the image
    rgb = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255
    crops = crop_faces(rgb, torch.tensor([[0.0, 10, 6, 18, 18], [1.0, 4, 4, 16, 12]]), 8, CROP_SAMPLES)
    torch.testing.assert_close(value, mesh_branch_loss(decoder, positives, crops).mean())
    # as training computes it: the boxes grown by 1.5 about their centres, each face over its crop border's colour
    crops = crop_faces(rgb, torch.tensor([[0.0, 8, 3, 20, 21], [1.0, 1, 2, 19, 14]]), 8, CROP_SAMPLES)
    expected = mesh_branch_loss(decoder, positives, crops, background=border_colour(crops)).mean()
    torch.testing.assert_close(as_trained, expected)
    assert abs(float((as_trained - value).detach())) > 1e-3


def test_crop_points_and_uncrop_points_undo_each_other():
    boxes = torch.tensor([[10.0, 20, 42, 36], [-4, 0, 60, 128]])
    points = torch.tensor([[[10.0, 20], [42, 36], [26, 28]], [[-4, 0], [0, 64], [60, 128]]])
    in_crop = crop_points(points, boxes, (8, 16))
    assert in_crop[0].tolist() == [[0, 0], [16, 8], [8, 4]]  # corners to corners, the centre to the centre
    torch.testing.assert_close(uncrop_points(in_crop, boxes, (8, 16)), points)


def test_landmark_vertex_loss_by_hand():
    landmarks = torch.zeros(2, 5, 2)
    landmarks[1, 2] = torch.tensor([3.0, -4.0])  # one point 3 + 4 crop pixels away
    assert landmark_vertex_loss(torch.zeros(2, 5, 2), landmarks, 10).tolist() == pytest.approx([0.0, 7 / 5 / 10])
    with pytest.raises(ValueError, match=r"\(P, 5, 2\)"):
        landmark_vertex_loss(torch.zeros(2, 4, 2), torch.zeros(2, 4, 2), 10)


def test_landmark_term_measures_the_mesh_s_landmark_vertices_against_the_landmarks(decoder):
    params = 0.1 * torch.randn(3, 144, generator=torch.Generator().manual_seed(3))
    boxes = torch.tensor([[10.0, 20, 42, 52], [0, 0, 64, 64], [5, 5, 37, 37]])  # 32, 64 and 32 pixels wide
    vertices = project_mesh_params(decoder, params, (8, 8))[:, list(decoder.landmark_vertices)]  # (3, 5, 2)
    landmarks = uncrop_points(image_left_first(vertices), boxes, (8, 8))  # where the vertices land in the image
    landmarks[2] = MISSING  # a face without landmark annotation
    torch.testing.assert_close(landmark_term(decoder, params, landmarks, boxes, 8), torch.zeros(3), rtol=0, atol=1e-5)
    shifted = landmarks + torch.tensor([2.0, 0.0])  # 2 image pixels right: 0.5 and 0.25 crop pixels
    shifted[2] = MISSING
    torch.testing.assert_close(landmark_term(decoder, params, shifted, boxes, 8), torch.tensor([0.5 / 8, 0.25 / 8, 0]),
                               rtol=0, atol=1e-5)
    nameless = MeshDecoder(build_hierarchy())
    nameless.landmark_vertices = None
    with pytest.raises(ValueError, match="landmark vertices"):
        landmark_term(nameless, params, landmarks, boxes, 8)


def test_pixel_term_adds_the_weighted_landmark_term_to_each_face(decoder):
    boxes, landmarks = torch.tensor([[2.0, 2, 14, 14]]), torch.tensor([[[5.0, 6], [10, 6], [8, 9], [6, 12], [10, 12]]])
    faces = FaceBatch.from_list([boxes], [landmarks])
    targets = AnchorTargets(torch.tensor([[POSITIVE, NEGATIVE]]), torch.tensor([[0, -1]]), torch.zeros(1, 2, 4),
                            torch.zeros(1, 2, 10), torch.ones(1, 2, dtype=bool))
    params = 0.1 * torch.randn(1, 2, 144, generator=torch.Generator().manual_seed(4))
    images = torch.rand(1, 3, 16, 16)
    options = dict(crop_size=8, crop_margin=MESH_CROP_MARGIN)
    alone = pixel_term(decoder, lambda i, a: params[i, a], targets, faces, images, MOBILE.pixel_mean_bgr, **options)
    tied = pixel_term(decoder, lambda i, a: params[i, a], targets, faces, images, MOBILE.pixel_mean_bgr,
                      landmark_weight=2.0, **options)
    grown = torch.tensor([[-1.0, -1, 17, 17]])  # the crop's box: 1.5 times the face's
    expected = alone + 2.0 * landmark_term(decoder, params[0, :1], landmarks, grown, 8)[0]
    torch.testing.assert_close(tied, expected)
    assert float((tied - alone).detach()) > 1e-3


def test_a_fresh_mesh_branch_starts_from_a_zero_head_rendering_the_frontal_template_in_the_crop(decoder):
    torch.manual_seed(0)
    model = TrainingModel.build(RetinaFace.from_config(MOBILE, mesh_head=True), True, MOBILE.pixel_mean_bgr)
    assert all(bool((p == 0).all()) for p in model.detector.mesh_head.parameters())
    params = model.detector.mesh_head.at(model.detector.features(torch.rand(1, 3, 64, 64)), torch.tensor([0]),
                                         torch.tensor([5]))
    vertices = project_mesh_params(model.decoder, params, (32, 32))[0]  # (V, 2) crop pixels
    centre = (vertices.min(0).values + vertices.max(0).values) / 2
    assert torch.allclose(centre, torch.tensor([16.0, 16.0]), atol=2.0)  # the face sits in the middle of the crop
    assert ((vertices >= 0) & (vertices <= 32)).all()
    detector_only = TrainingModel.build(RetinaFace.from_config(MOBILE), False, MOBILE.pixel_mean_bgr)
    assert detector_only.decoder is None


def test_pixel_term_without_positives_is_zero_and_keeps_the_graph(decoder):
    faces = FaceBatch.from_list([torch.zeros(0, 4)])
    targets = AnchorTargets(torch.full((1, 3), NEGATIVE), torch.full((1, 3), -1), torch.zeros(1, 3, 4),
                            torch.zeros(1, 3, 10), torch.zeros(1, 3, dtype=bool))
    params = torch.randn(1, 3, 144, requires_grad=True)
    value = pixel_term(decoder, lambda i, a: params[i, a], targets, faces, torch.rand(1, 3, 8, 8), MOBILE.pixel_mean_bgr)
    value.backward()
    assert value.item() == 0 and params.grad is not None


def test_only_a_mesh_branch_records_its_crop_margin(decoder):
    detector = RetinaFace.from_config(MOBILE, mesh_head=True)
    files = TrainingModel(detector, decoder).file_metadata("mobilenet0.25")
    assert files["weights"][CROP_MARGIN_KEY] == "1.5" and CROP_MARGIN_KEY not in files["mesh_decoder"]
    assert CROP_MARGIN_KEY not in TrainingModel(detector).file_metadata("mobilenet0.25")["weights"]


def test_a_decoder_needs_a_mesh_head(decoder):
    with pytest.raises(ValueError, match="mesh_head=True"):
        TrainingModel(RetinaFace.from_config(MOBILE), decoder)


def test_shipped_weights_load_into_a_detector_with_an_untrained_mesh_head():
    torch.manual_seed(0)
    detector = RetinaFace.from_config(MOBILE, mesh_head=True)
    mesh_head = {k: v.clone() for k, v in detector.mesh_head.state_dict().items()}
    load_detector_weights(detector, DEFAULT_WEIGHTS)
    shipped = load_weights(None, DEFAULT_WEIGHTS)
    state = detector.state_dict()
    assert_same_tensors({k: state[k] for k in shipped}, shipped)
    assert_same_tensors(detector.mesh_head.state_dict(), mesh_head)
    with pytest.raises(ValueError, match="do not match the model"):
        load_detector_weights(RetinaFace.from_config(get_config("resnet50")), DEFAULT_WEIGHTS)


def test_lambda_pixel_defaults():
    assert TrainConfig().loss_preset().lambda_pixel == 0.0  # the public recipe has no mesh term
    assert TrainConfig(mesh=True).loss_preset().lambda_pixel == 0.01  # the paper's
    assert TrainConfig(mesh=True, lambda_pixel=0.5).loss_preset().lambda_pixel == 0.5
    assert TrainConfig(preset="paper", image_size=320).loss_preset().train_size == 320


@pytest.mark.slow
def test_mesh_landmarks_add_to_the_logged_pixel_term(tmp_path):
    data = write_faces_folder(tmp_path / "faces", count=2)  # with landmarks
    first = {}
    for weight in (0.0, 1.0):
        train(tiny_config(data, tmp_path / str(weight), mesh=True, mesh_anchors=2, epochs=1, mesh_landmarks=weight))
        steps = [json.loads(line) for line in (tmp_path / str(weight) / "log.jsonl").read_text().splitlines()]
        first[weight] = next(record["pixel"] for record in steps if "pixel" in record)
    assert first[1.0] > first[0.0] > 0  # the same first step, the landmark term added


def test_mesh_training_logs_pixel_saves_the_decoder_and_resumes_exactly(tmp_path):
    data = write_faces_folder(tmp_path / "faces", count=4)  # two steps per epoch
    settings = dict(mesh=True, mesh_anchors=3, epochs=2, checkpoint_every=1)  # crash after step 3: mid-epoch
    uninterrupted = train(tiny_config(data, tmp_path / "a", **settings))
    log = (tmp_path / "a" / "log.jsonl").read_text()
    assert '"pixel": 0.0' not in log
    assert (tmp_path / "a" / "mesh_decoder.safetensors").is_file()
    assert (uninterrupted.checkpoint / "mesh_decoder.safetensors").is_file()
    # the head inside the weights, and the margin its crops were cut with, which detection maps the mesh through
    assert read_metadata(tmp_path / "a" / "weights.safetensors")[CROP_MARGIN_KEY] == "1.5" == f"{MESH_CROP_MARGIN:g}"
    assert load_mesh_model(tmp_path / "a" / "weights.safetensors").crop_margin == MESH_CROP_MARGIN
    assert load_mesh_model(uninterrupted.checkpoint / "weights.safetensors").crop_margin == MESH_CROP_MARGIN
    assert CROP_MARGIN_KEY not in read_metadata(uninterrupted.checkpoint / "mesh_decoder.safetensors")

    train_until_crash(tiny_config(data, tmp_path / "b", **settings), step=4)
    train(tiny_config(data, tmp_path / "b", resume=True, **settings))

    for name in ("weights", "mesh_decoder"):
        assert_same_tensors(load_file(tmp_path / "b" / f"{name}.safetensors"),
                            load_file(tmp_path / "a" / f"{name}.safetensors"))
