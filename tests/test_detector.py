"""Tests of rfcore.detect: input handling, decoding, NMS, box voting, flip and multi-scale tests, meshes."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from builders import save_mesh_run
from torchvision.ops import box_iou

import rfcore
from rfcore.anchors import make_anchors
from rfcore.assets import load_annotation
from rfcore.boxes import decode_boxes
from rfcore.config import get_config
from rfcore.detector import Detector, Face, TTAConfig
from rfcore.image import input_size, preprocess, read_image, to_rgb
from rfcore.mesh import MeshDecoder, build_hierarchy
from rfcore.mesh.camera import camera_from_params, project, to_view
from rfcore.model import RetinaFace, RetinaFaceOutput
from rfcore.postprocess import Detections, box_vote, candidates, flip_detections, suppress
from rfcore.weights import DEFAULT_WEIGHTS
from rfcore.weights_io import load_weights

ANNOTATION = Path(__file__).resolve().parents[1] / "assets" / "images" / "grace_hopper.json"


@pytest.fixture(scope="module")
def truth():
    return load_annotation(ANNOTATION)


@pytest.fixture(scope="module")
def image(truth):
    return read_image(truth.image_path)


@pytest.fixture(scope="module")
def detector():
    return Detector()


def as_tensors(faces):
    boxes = torch.tensor([f.box for f in faces]).reshape(-1, 4)
    return boxes, torch.tensor([f.landmarks for f in faces]).reshape(-1, 5, 2), torch.tensor([f.score for f in faces])


def assert_same_faces(faces, expected, atol=1e-3):
    """Equal up to float rounding (a batch of two runs different convolution kernels than one image)."""
    assert len(faces) == len(expected)
    for got, want in zip(as_tensors(faces), as_tensors(expected)):
        assert torch.allclose(got, want, atol=atol)


def mirror(faces, width):
    """Faces found on a mirrored image, mapped back (with the left/right landmark swap)."""
    boxes, points, scores = as_tensors(faces)
    dets = flip_detections(Detections(boxes, scores, points, torch.zeros(len(faces), dtype=torch.long)), width)
    return dets.to_faces()


# ---------------------------------------------------------------- the real detector


def test_finds_grace_hopper_with_landmarks(detector, truth):
    faces = detector.detect(truth.image_path)
    assert len(faces) == 1
    boxes, points, scores = as_tensors(faces)
    assert box_iou(boxes, truth.boxes).item() > 0.7
    assert scores.item() > 0.99
    x1, y1, x2, y2 = truth.boxes[0]
    face_size = ((x2 - x1) * (y2 - y1)).sqrt()
    errors = (points[0] - truth.landmarks[0]).norm(dim=1) / face_size  # (5,)
    assert errors.mean() < 0.05 and errors.max() < 0.08


@pytest.mark.slow
def test_module_is_callable_and_faces_serialise(truth):
    from rfcore import detect

    faces = detect(truth.image_path)
    assert faces == rfcore.detect(str(truth.image_path))
    record = json.loads(json.dumps(faces[0].to_dict()))
    assert set(record) == {"box", "score", "landmarks"}
    assert len(record["box"]) == 4 and np.array(record["landmarks"]).shape == (5, 2)
    assert isinstance(faces[0], Face) and hash(faces[0]) == hash(faces[0])


@pytest.mark.slow
def test_paths_and_arrays_in_every_layout_agree(detector, truth, image):
    reference = detector.detect(truth.image_path)
    assert detector.detect(image, color="RGB") == reference
    assert detector.detect(np.ascontiguousarray(image[:, :, ::-1]), color="bgr") == reference
    alpha = np.full(image.shape[:2] + (1,), 7, dtype=np.uint8)
    assert detector.detect(np.concatenate([image, alpha], axis=2), color="RGB") == reference
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    for array in (grey, grey[:, :, None]):
        (face,) = detector.detect(array)
        assert box_iou(torch.tensor([face.box]), truth.boxes).item() > 0.6


@pytest.mark.slow
def test_batch_of_different_sizes(detector, truth, image):
    small = cv2.resize(image, (256, 300))
    batch = detector.detect([truth.image_path, small, image], color="RGB")
    assert len(batch) == 3
    single = detector.detect(image, color="RGB")
    assert_same_faces(batch[0], single)
    assert_same_faces(batch[2], single)
    assert batch[1] == detector.detect(small, color="RGB")  # alone in its size group
    stacked = detector.detect(np.stack([image, image[::-1].copy()]), color="RGB")
    assert len(stacked) == 2
    assert_same_faces(stacked[0], single)
    assert detector.detect([]) == []


@pytest.mark.slow
def test_threshold_and_input_size(truth, image):
    assert Detector(threshold=0.9999999).detect(image, color="RGB") == []
    (face,) = Detector(short_edge=256, max_size=300).detect(image, color="RGB")
    assert box_iou(torch.tensor([face.box]), truth.boxes).item() > 0.7  # back in original pixels
    assert input_size(600, 512, None, None) == (600, 512)
    assert input_size(600, 512, 256, None) == (300, 256)
    assert input_size(600, 512, 256, 200) == (200, 171)
    assert input_size(600, 512, None, 300) == (300, 256)


@pytest.mark.slow
def test_fused_and_plain_detectors_agree(detector, image):
    assert_same_faces(Detector(fuse=False).detect(image, color="RGB"), detector.detect(image, color="RGB"))


def test_custom_model_runs():
    torch.manual_seed(0)
    model = RetinaFace.from_config(get_config("mobilenet0.25"))
    faces = Detector(model=model, threshold=0.0, max_faces=3).detect(np.zeros((40, 56), dtype=np.uint8))
    assert len(faces) == 3
    with pytest.raises(ValueError, match="either weights or model"):
        Detector("w.safetensors", model=model)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "array, color, message",
    [
        (np.zeros((8, 8, 3), dtype=np.float32), "RGB", "uint8.*float32"),
        (np.zeros((8, 8, 2), dtype=np.uint8), "RGB", r"shape.*\(8, 8, 2\)"),
        (np.zeros((2, 8, 8, 8, 3), dtype=np.uint8), "RGB", "shape"),
        (np.zeros((0, 8, 3), dtype=np.uint8), "RGB", "empty"),
        (np.zeros((8, 8, 3), dtype=np.uint8), None, "color must be 'RGB' or 'BGR'.*None"),
        (np.zeros((8, 8, 4), dtype=np.uint8), "HSV", "color must be.*'HSV'"),
    ],
)
def test_bad_arrays_are_named(array, color, message):
    with pytest.raises(ValueError, match=message):
        to_rgb(array, color)


def test_bad_paths_are_named(detector, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.jpg does not exist"):
        detector.detect(tmp_path / "nothing.jpg")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        detector.detect(tmp_path)
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(ValueError, match="notes.jpg is not a readable image"):
        detector.detect(str(text))


def test_bad_options_and_missing_weights(tmp_path):
    with pytest.raises(ValueError, match="threshold must be in"):
        Detector(threshold=1.5)
    with pytest.raises(ValueError, match="max_faces must be a positive int"):
        Detector(max_faces=0)
    with pytest.raises(FileNotFoundError, match=r"missing.safetensors not found.*--weights"):
        Detector(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="scales"):
        TTAConfig(scales=(500, -1))


# ---------------------------------------------------------------- decoding, NMS, voting


def test_candidates_decode_only_the_top_k_above_threshold():
    cfg = get_config("mobilenet0.25")
    anchors = torch.tensor([[10.0, 10, 16, 16], [30, 30, 32, 32], [50, 50, 16, 16]])
    face_logit = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 1.0, 4.0]])  # background logit is 0
    output = RetinaFaceOutput(
        logits=torch.stack([torch.zeros(2, 3), face_logit], dim=-1),
        box_deltas=torch.zeros(2, 3, 4),
        landmark_deltas=torch.zeros(2, 3, 10),
    )
    dets = candidates(output, anchors, cfg.variances, threshold=0.5, top_k=2)
    # image 0: anchors 0 and 2 pass (anchor 1 has p < 0.5); image 1: anchors 2 and 1, best first
    assert dets.image_index.tolist() == [0, 0, 1, 1]
    assert torch.allclose(dets.scores, torch.sigmoid(torch.tensor([2.0, 0.5, 4.0, 1.0])))
    assert dets.boxes.tolist() == [[2, 2, 18, 18], [42, 42, 58, 58], [42, 42, 58, 58], [14, 14, 46, 46]]
    assert torch.equal(dets.landmarks[0], torch.full((5, 2), 10.0))
    assert len(candidates(output, anchors, cfg.variances, threshold=0.99, top_k=2).scores) == 0


def dets(boxes, scores, image_index=None):
    boxes = torch.tensor(boxes, dtype=torch.float32)
    points = boxes[:, None, :2].repeat(1, 5, 1) + torch.arange(5.0)[None, :, None]  # (F, 5, 2)
    index = torch.zeros(len(boxes), dtype=torch.long) if image_index is None else torch.tensor(image_index)
    return Detections(boxes, torch.tensor(scores), points, index)


def test_suppress_works_per_image_and_caps_faces():
    pool = dets(
        [[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [50, 50, 60, 60], [80, 80, 90, 90]],
        [0.9, 0.8, 0.7, 0.6, 0.95],
        [0, 0, 1, 0, 0],
    )
    first, second, third = suppress(pool, num_images=3, nms_iou=0.4, max_faces=2)
    assert first.scores.tolist() == pytest.approx([0.95, 0.9])  # box 1 suppressed, box 3 over the cap
    assert second.boxes.tolist() == [[0, 0, 10, 10]]  # same place, other image: kept
    assert len(third.scores) == 0


def test_box_vote_is_the_score_weighted_mean_of_overlapping_boxes():
    pool = dets([[0, 0, 10, 10], [2, 0, 12, 10], [40, 40, 50, 50], [0, 6, 10, 16]], [0.9, 0.6, 0.8, 0.3])
    # IoU(A, B) = 80 / 120 > 0.4 votes; IoU(A, D) = 40 / 160 = 0.25 does not
    kept = pool.select(torch.tensor([0, 2]))
    voted = box_vote(kept, pool, iou_threshold=0.4)
    # (0.9 A + 0.6 B) / 1.5: x1 = (0.9 * 0 + 0.6 * 2) / 1.5 = 0.8, x2 = (0.9 * 10 + 0.6 * 12) / 1.5 = 10.8
    assert torch.allclose(voted.boxes[0], torch.tensor([0.8, 0.0, 10.8, 10.0]))
    assert torch.allclose(voted.landmarks[0, 0], torch.tensor([0.8, 0.0]))
    assert voted.boxes[1].tolist() == [40, 40, 50, 50]  # voted only for itself
    assert voted.scores.tolist() == pytest.approx([0.9, 0.8])


def test_box_vote_counts_each_candidate_once():
    pool = dets([[0, 0, 10, 10], [7, 0, 17, 10], [3.5, 0, 13.5, 10]], [0.9, 0.8, 0.5])
    # IoU(A, C) = 30 / 170: both kept; B overlaps both with IoU 65 / 135 but NMS dropped it for A
    voted = box_vote(pool.select(torch.tensor([0, 1])), pool, iou_threshold=0.4)
    # A: x1 = (0.9 * 0 + 0.5 * 3.5) / 1.4 = 1.25, x2 = (0.9 * 10 + 0.5 * 13.5) / 1.4 = 11.25
    assert torch.allclose(voted.boxes, torch.tensor([[1.25, 0.0, 11.25, 10.0], [7.0, 0.0, 17.0, 10.0]]))


def test_box_vote_keeps_the_mesh_of_the_top_scoring_voter():
    pool = dets([[0, 0, 10, 10], [1, 0, 11, 10], [2, 0, 12, 10], [40, 40, 50, 50]], [0.7, 0.9, 0.6, 0.8])
    pool = pool._replace(meshes=torch.arange(4.0)[:, None, None].expand(4, 3, 2))  # mesh k is all k
    kept = pool.select(torch.tensor([1, 3]))
    # kept has the top score of its group here; as the first row below, the lower-scoring face 0 owns the group
    for kept_rows, expected in ((kept, [1, 3]), (pool.select(torch.tensor([0, 3])), [1, 3])):
        voted = box_vote(kept_rows, pool, iou_threshold=0.4)
        assert voted.meshes[:, 0, 0].tolist() == expected
    assert box_vote(kept._replace(meshes=None), pool._replace(meshes=None), 0.4).meshes is None


def test_flip_mirrors_meshes_with_their_vertex_order():
    face = dets([[10, 20, 30, 50]], [0.9])
    face = face._replace(meshes=torch.tensor([[[14.0, 30], [26, 31], [20, 38]]]))  # left eye, right eye, nose
    order = torch.tensor([1, 0, 2])
    flipped = flip_detections(face, width=100, mesh_order=order)
    # the old right-eye vertex (26, 31) mirrors to the image-left (74, 31): it is the left-eye vertex now
    assert flipped.meshes[0].tolist() == [[74, 31], [86, 30], [80, 38]]
    assert torch.equal(flip_detections(flipped, width=100, mesh_order=order).meshes, face.meshes)
    with pytest.raises(ValueError, match="meshes of 3 vertices needs their vertex order, got 2"):
        flip_detections(face, width=100, mesh_order=torch.tensor([1, 0]))


def test_flip_mirrors_boxes_and_swaps_left_and_right():
    face = dets([[10, 20, 30, 50]], [0.9])
    face = face._replace(landmarks=torch.tensor([[[14.0, 30], [26, 30], [20, 38], [15, 45], [25, 45]]]))
    flipped = flip_detections(face, width=100)
    assert flipped.boxes.tolist() == [[70, 20, 90, 50]]
    # the old right eye (26, 30) is now the image-left eye at 100 - 26
    assert flipped.landmarks[0].tolist() == [[74, 30], [86, 30], [80, 38], [75, 45], [85, 45]]
    assert torch.equal(flip_detections(flipped, width=100).landmarks, face.landmarks)


# ---------------------------------------------------------------- test-time augmentation


@pytest.mark.slow
def test_flip_test_is_mirror_symmetric(truth, image):
    flip_only = Detector(tta=TTAConfig(flip=True, scales=(None,)))
    width = image.shape[1]
    direct = flip_only.detect(image, color="RGB")
    mirrored_back = mirror(flip_only.detect(np.ascontiguousarray(image[:, ::-1]), color="RGB"), width)
    boxes, points, scores = as_tensors(direct)
    boxes_back, points_back, scores_back = as_tensors(mirrored_back)
    assert len(direct) == 1
    assert (boxes - boxes_back).abs().max() < 1.0
    assert (points - points_back).abs().max() < 1.0
    assert torch.allclose(scores, scores_back, atol=1e-4)
    assert box_iou(boxes, truth.boxes).item() > 0.7


@pytest.mark.slow
def test_plain_detection_is_nearly_mirror_symmetric(detector, truth, image):
    # Without the flip test the network alone is only roughly mirror-symmetric.
    direct = as_tensors(detector.detect(image, color="RGB"))
    back = as_tensors(mirror(detector.detect(np.ascontiguousarray(image[:, ::-1]), color="RGB"), image.shape[1]))
    assert box_iou(direct[0], back[0]).item() > 0.9
    x1, y1, x2, y2 = truth.boxes[0]
    assert (direct[1] - back[1]).norm(dim=-1).mean() < 0.05 * ((x2 - x1) * (y2 - y1)).sqrt()


@pytest.mark.slow
def test_multi_scale_flip_test_finds_the_face(truth, image):
    tta = TTAConfig(flip=True, scales=(300, None))
    assert tta.passes() == [(300, False), (300, True), (None, False), (None, True)]
    faces = Detector(tta=tta).detect(image, color="RGB")
    assert len(faces) == 1
    boxes, points, _ = as_tensors(faces)
    assert box_iou(boxes, truth.boxes).item() > 0.7
    assert TTAConfig().scales == (500, 800, 1100, 1400, 1700)


def test_preprocess_is_bgr_minus_the_mean_in_channels_last():
    rgb = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    got = preprocess(list(rgb), (104.0, 117.0, 123.0))
    expected = torch.from_numpy(rgb[..., ::-1].astype(np.float32) - np.float32([104, 117, 123])).permute(0, 3, 1, 2)
    assert got.dtype == torch.float32 and got.shape == (2, 3, 5, 7)
    assert torch.equal(got, expected)
    assert got.is_contiguous(memory_format=torch.channels_last)


# ---------------------------------------------------------------- mesh


def noise_image(size=96, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def mesh_by_hand(weights, image, box):
    """Independently: the face's anchor (the one whose decoded box is ``box``), decode, project, map through the box."""
    cfg = get_config("mobilenet0.25")
    model = RetinaFace.from_config(cfg, mesh_head=True).eval()
    model.load_state_dict(load_weights(None, weights))
    decoder = MeshDecoder(build_hierarchy()).eval()
    decoder.load_state_dict(load_weights(None, weights.with_name("mesh_decoder.safetensors")))
    with torch.no_grad():
        output = model(preprocess([image], cfg.pixel_mean_bgr))
        boxes = decode_boxes(output.box_deltas[0], make_anchors(cfg, image.shape[:2]), cfg.variances)
        anchor = (boxes - torch.tensor(box)).abs().amax(dim=1).argmin()
        params = output.mesh_params[0, anchor]
        camera = camera_from_params(params[None, 128:135])
        vertices = decoder(params[None, :128]).vertices
        crop, _ = project(to_view(vertices, camera), camera, (32, 32))  # (1, V, 2) in a 32 x 32 crop
    x1, y1, x2, y2 = box
    return torch.stack([x1 + crop[0, :, 0] * (x2 - x1) / 32, y1 + crop[0, :, 1] * (y2 - y1) / 32], dim=1)


@pytest.mark.slow
def test_mesh_detector_gives_each_face_its_projected_mesh(mesh_weights):
    image = noise_image()
    faces = Detector(mesh_weights, mesh=True, threshold=0.0, max_faces=4).detect(image, color="RGB")
    assert len(faces) == 4
    num_vertices = build_hierarchy().num_vertices[-1]
    for face in faces:
        assert np.array(face.mesh).shape == (num_vertices, 2)
        assert np.array(face.to_dict()["mesh"]).shape == (num_vertices, 2)
    expected = mesh_by_hand(mesh_weights, image, faces[0].box)
    scale = max(faces[0].box[2] - faces[0].box[0], faces[0].box[3] - faces[0].box[1])
    assert torch.allclose(torch.tensor(faces[0].mesh), expected, atol=1e-3 * scale)


@pytest.mark.slow
def test_no_faces_give_no_meshes(mesh_weights):
    empty = Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 5, 2), torch.zeros(0, dtype=torch.long),
                       torch.zeros(0, 144))
    meshes = Detector(mesh_weights, mesh=True).mesh_vertices(empty)
    assert meshes.shape == (0, build_hierarchy().num_vertices[-1], 2) and empty._replace(meshes=meshes).to_faces() == []


def test_without_mesh_faces_have_none_and_no_mesh_key(detector, image):
    face = detector.detect(image, color="RGB")[0]
    assert face.mesh is None and "mesh" not in face.to_dict()


@pytest.mark.slow
def test_weights_with_a_mesh_head_also_detect_without_mesh(mesh_weights):
    image = noise_image(seed=2)
    with_mesh = Detector(mesh_weights, mesh=True, threshold=0.0, max_faces=4).detect(image, color="RGB")
    without = Detector(mesh_weights, threshold=0.0, max_faces=4).detect(image, color="RGB")
    assert len(without) == len(with_mesh) > 0
    for plain, meshed in zip(without, with_mesh):
        assert plain.mesh is None and plain.box == meshed.box and plain.score == meshed.score


@pytest.mark.slow
def test_zero_mesh_parameters_put_the_mesh_on_its_box(tmp_path):
    weights = save_mesh_run(tmp_path, zero_mesh_head=True)
    for face in Detector(weights, mesh=True, threshold=0.0, max_faces=4).detect(noise_image(seed=1), color="RGB"):
        x1, y1, x2, y2 = face.box
        grow_x, grow_y = 0.25 * (x2 - x1), 0.25 * (y2 - y1)  # the box grown by 50%
        x, y = np.array(face.mesh).T
        inside = (x > x1 - grow_x) & (x < x2 + grow_x) & (y > y1 - grow_y) & (y < y2 + grow_y)
        assert inside.mean() > 0.95
        assert abs(x.mean() - (x1 + x2) / 2) < 0.2 * (x2 - x1)  # centred, as a frontal face fills its crop


def test_mesh_needs_weights_with_a_mesh_head_and_its_decoder(tmp_path, mesh_weights):
    (tmp_path / "plain.safetensors").write_bytes(DEFAULT_WEIGHTS.read_bytes())
    (tmp_path / "mesh_decoder.safetensors").write_bytes(mesh_weights.with_name("mesh_decoder.safetensors").read_bytes())
    with pytest.raises(ValueError, match=r"plain.safetensors has no mesh head"):
        Detector(tmp_path / "plain.safetensors", mesh=True)
    (tmp_path / "mesh_decoder.safetensors").unlink()
    (tmp_path / "weights.safetensors").write_bytes(mesh_weights.read_bytes())
    with pytest.raises(FileNotFoundError, match="mesh_decoder.safetensors not found"):
        Detector(tmp_path / "weights.safetensors", mesh=True)


def mirror_meshes(faces, width, order):
    """Meshes of faces found on a mirrored image, mapped back: ``(F, V, 2)``."""
    meshes = torch.tensor([face.mesh for face in faces])[:, order]
    meshes[..., 0] = width - meshes[..., 0]
    return meshes


@pytest.mark.slow
def test_flip_test_with_mesh_is_mirror_symmetric(mesh_weights):
    image = noise_image(seed=3)
    flip_only = Detector(mesh_weights, mesh=True, threshold=0.0, max_faces=4, tta=TTAConfig(flip=True, scales=(None,)))
    direct = flip_only.detect(image, color="RGB")
    back = flip_only.detect(np.ascontiguousarray(image[:, ::-1]), color="RGB")
    assert len(direct) == 4
    assert_same_faces(direct, mirror(back, image.shape[1]))
    meshes = torch.tensor([face.mesh for face in direct])
    assert torch.allclose(meshes, mirror_meshes(back, image.shape[1], flip_only.mesh_order), atol=1e-3)


@pytest.mark.slow
def test_voted_faces_keep_their_own_mesh(mesh_weights):
    """One pass with voting: each kept face is its group's top scorer, so its mesh is the one it has without TTA."""
    image = noise_image(seed=4)
    plain = Detector(mesh_weights, mesh=True, threshold=0.0, max_faces=4).detect(image, color="RGB")
    voted = Detector(mesh_weights, mesh=True, threshold=0.0, max_faces=4,
                     tta=TTAConfig(flip=False, scales=(None,))).detect(image, color="RGB")
    assert [face.score for face in voted] == [face.score for face in plain]
    assert any(v.box != p.box for v, p in zip(voted, plain))  # voting moved some boxes
    for v, p in zip(voted, plain):  # the same mesh, decoded in batches of other sizes: equal up to float rounding
        assert torch.allclose(torch.tensor(v.mesh), torch.tensor(p.mesh), rtol=0, atol=1e-4)
