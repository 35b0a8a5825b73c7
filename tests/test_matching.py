import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rfcore.anchors import make_anchors
from rfcore.bench.targets import random_faces
from rfcore.boxes import NEGATIVE, POSITIVE
from rfcore.config import get_config
from rfcore.matching import FaceBatch, TargetAssigner, per_image_targets


def assert_same_targets(fast, peer):
    for name, a, b in zip(fast._fields, fast, peer):
        assert torch.equal(a, b), f"{name} differs at {(a != b).nonzero()[:5].tolist()}"


@settings(max_examples=25, deadline=None)
@given(
    preset=st.sampled_from(["paper", "mobilenet0.25"]),
    height=st.integers(min_value=40, max_value=360),
    width=st.integers(min_value=40, max_value=360),
    faces=st.integers(min_value=0, max_value=30),
    seed=st.integers(min_value=0, max_value=10_000),
)
@pytest.mark.slow
def test_batched_matching_equals_the_dense_definition(preset, height, width, faces, seed):
    cfg = get_config(preset)
    boxes, points = random_faces(3, faces, (height, width), seed)
    boxes[1] = boxes[1][: faces // 2]  # images of a batch hold different numbers of faces
    points[1] = points[1][: faces // 2]
    fast = TargetAssigner(cfg, (height, width))(boxes, points)
    peer = per_image_targets(cfg, make_anchors(cfg, (height, width)), boxes, points)
    assert_same_targets(fast, peer)


@pytest.mark.parametrize("preset", ["paper", "mobilenet0.25"])
def test_every_face_is_matched(preset):
    # faces can only go unmatched when two of them pick the same best anchor,
    # which a few faces spread over a large image do not
    boxes, points = random_faces(4, 8, (640, 640), seed=1)
    targets = TargetAssigner(get_config(preset), (640, 640))(boxes, points)
    for image, image_boxes in enumerate(boxes):
        matched = targets.matched_idxs[image]
        assert set(matched[matched >= 0].tolist()) == set(range(len(image_boxes)))


def test_image_without_faces_is_all_negative():
    assign = TargetAssigner(get_config("paper"), (128, 128))
    targets = assign([torch.zeros(0, 4), torch.tensor([[10.0, 10.0, 40.0, 50.0]])])
    assert (targets.labels[0] == NEGATIVE).all()
    assert (targets.matched_idxs[0] == -1).all()
    assert not targets.landmark_valid[0].any()
    assert (targets.labels[1] == POSITIVE).any()


def test_empty_batch_of_faces():
    targets = TargetAssigner(get_config("mobilenet0.25"), (64, 64))([torch.zeros(0, 4)] * 2)
    assert targets.labels.shape == (2, 168)
    assert (targets.labels == NEGATIVE).all()


def test_padded_and_list_inputs_agree():
    boxes, points = random_faces(3, 6, (200, 160), seed=7)
    boxes[2], points[2] = boxes[2][:2], points[2][:2]
    padded = torch.zeros(3, 6, 4)
    padded_points = torch.zeros(3, 6, 5, 2)
    mask = torch.zeros(3, 6, dtype=torch.bool)
    for i, (b, p) in enumerate(zip(boxes, points)):
        padded[i, : len(b)], padded_points[i, : len(b)], mask[i, : len(b)] = b, p, True
    assign = TargetAssigner(get_config("paper"), (200, 160))
    assert_same_targets(assign(FaceBatch.from_padded(padded, mask, padded_points)), assign(boxes, points))


def test_faces_without_landmarks_train_boxes_only():
    box = torch.tensor([[20.0, 20.0, 60.0, 70.0]])
    assign = TargetAssigner(get_config("paper"), (128, 128))
    with_points = assign([box], [torch.tensor([[[30.0, 35.0], [50, 35], [40, 45], [32, 60], [48, 60]]])])
    without = assign([box], [torch.full((1, 5, 2), -1.0)])
    positive = with_points.labels[0] == POSITIVE
    assert torch.equal(with_points.labels, without.labels)
    assert torch.equal(with_points.boxes, without.boxes)
    assert with_points.landmark_valid[0].equal(positive)
    assert not without.landmark_valid.any()
    assert (without.landmarks == 0).all()
    assert not assign([box]).landmark_valid.any()  # no landmarks given: none valid


def test_box_targets_decode_back_to_the_face():
    from rfcore.boxes import decode_boxes

    cfg = get_config("paper")
    assign = TargetAssigner(cfg, (256, 256))
    face = torch.tensor([[30.0, 40.0, 90.0, 115.0]])
    targets = assign([face])
    positive = targets.labels[0] == POSITIVE
    decoded = decode_boxes(targets.boxes[0][positive], assign.anchors[positive], cfg.variances)
    assert torch.allclose(decoded, face.expand_as(decoded), atol=1e-3)


@pytest.mark.parametrize(
    "boxes, problem",
    [
        ([torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([[5.0, 5.0, 1.0, 9.0]])], r"boxes\[1\]: box 0 has x2 < x1"),
        ([torch.tensor([[0.0, float("nan"), 10.0, 10.0]])], r"boxes\[0\].*NaN"),
        ([torch.zeros(2, 5)], r"boxes\[0\] must have shape"),
    ],
)
def test_bad_faces_name_the_image_and_problem(boxes, problem):
    with pytest.raises(ValueError, match=problem):
        TargetAssigner(get_config("paper"), (64, 64))(boxes)


def test_bad_landmarks_are_clear_errors():
    assign = TargetAssigner(get_config("paper"), (64, 64))
    box = [torch.tensor([[0.0, 0.0, 10.0, 10.0]])]
    with pytest.raises(ValueError, match=r"landmarks\[0\] must have shape"):
        assign(box, [torch.zeros(1, 4, 2)])
    with pytest.raises(ValueError, match="landmarks for 2"):
        assign(box, [None, None])
    with pytest.raises(ValueError, match="mask"):
        FaceBatch.from_padded(torch.zeros(2, 3, 4), torch.ones(3, 2))
