import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.ops import box_iou

from rfcore.boxes import (
    IGNORED,
    NEGATIVE,
    POSITIVE,
    as_boxes,
    cxcywh_to_xyxy,
    decode_boxes,
    decode_landmarks,
    encode_boxes,
    encode_landmarks,
    has_landmarks,
    image_left_first,
    match_anchors,
    paired_iou,
    xyxy_to_cxcywh,
)

GRID = torch.tensor([[4, 4, 8, 8], [12, 4, 8, 8], [4, 12, 8, 8], [12, 12, 8, 8]], dtype=torch.float32)
VARIANCES = (0.1, 0.2)


def test_iou_on_the_two_by_two_grid_by_hand():
    face = torch.tensor([[2.0, 2.0, 10.0, 10.0]])
    iou = box_iou(cxcywh_to_xyxy(GRID), face)[:, 0]
    # intersections 6x6, 2x6, 6x2, 2x2 with two 64-px^2 boxes
    expected = torch.tensor([36 / 92, 12 / 116, 12 / 116, 4 / 124])
    assert torch.allclose(iou, expected)


def test_matching_on_the_two_by_two_grid_by_hand():
    face = torch.tensor([[2.0, 2.0, 10.0, 10.0]])
    labels, matched = match_anchors(GRID, face, pos_iou=0.5, neg_iou=0.3)
    # IoU 0.39 lies in the ignore band, but the face is forced onto its best anchor
    assert labels.tolist() == [POSITIVE, NEGATIVE, NEGATIVE, NEGATIVE]
    assert matched.tolist() == [0, -1, -1, -1]
    labels, _ = match_anchors(GRID, torch.tensor([[2.0, 2.0, 10.0, 10.0], [7.0, 0.0, 17.0, 8.0]]), 0.5, 0.3)
    # the second face: IoU 40/88 = 0.45 with anchor 1 (ignore band) -> forced positive;
    # anchor 0 has IoU 0.39 with face 0 and is still its best anchor
    assert labels.tolist() == [POSITIVE, POSITIVE, NEGATIVE, NEGATIVE]


def test_ignore_band():
    # face overlapping anchor 0 with IoU 0.4 and anchor 1 with IoU 0.6 (by construction below)
    anchors = torch.tensor([[4, 4, 8, 8], [4, 4, 8, 8], [40, 40, 8, 8]], dtype=torch.float32)
    face = torch.tensor([[0.0, 0.0, 8.0, 8.0]])
    anchors[0] = torch.tensor([4.0, 4.0, 8.0, 8.0 / 0.4])  # IoU 0.4: the face is inside, area ratio 0.4
    anchors[1] = torch.tensor([4.0, 4.0, 8.0, 8.0 / 0.6])  # IoU 0.6
    labels, matched = match_anchors(anchors, face, pos_iou=0.5, neg_iou=0.3)
    assert labels.tolist() == [IGNORED, POSITIVE, NEGATIVE]
    assert matched.tolist() == [-1, 0, -1]


def test_no_faces_means_all_negative():
    labels, matched = match_anchors(GRID, torch.zeros(0, 4), 0.5, 0.3)
    assert (labels == NEGATIVE).all() and (matched == -1).all()


def test_face_smaller_than_every_anchor_is_forced_onto_the_nearest():
    overlapping = GRID.clone()
    overlapping[:, 2:] = 16  # 16-px anchors every 8 px: each pixel lies in several anchors
    face = torch.tensor([[9.0, 9.0, 11.0, 11.0]])  # 2x2 px around (10, 10)
    labels, matched = match_anchors(overlapping, face, 0.5, 0.3)
    # inside all four anchors with the same IoU 4/256; anchor 3, centred at (12, 12), is nearest
    assert box_iou(cxcywh_to_xyxy(overlapping), face).flatten().tolist() == [4 / 256] * 4
    assert labels.tolist() == [NEGATIVE, NEGATIVE, NEGATIVE, POSITIVE]
    assert matched.tolist() == [-1, -1, -1, 0]


def test_face_partly_outside_the_image_still_matches():
    face = torch.tensor([[-6.0, -6.0, 6.0, 6.0]])  # only its lower-right quarter is in the image
    labels, matched = match_anchors(GRID, face, 0.5, 0.3)
    assert labels[0] == POSITIVE and matched[0] == 0
    assert (labels[1:] == NEGATIVE).all()


def test_two_identical_faces_share_anchors_with_the_first():
    face = torch.tensor([[0.0, 0.0, 8.0, 8.0]] * 2)
    labels, matched = match_anchors(GRID, face, 0.5, 0.3)
    assert labels.tolist() == [POSITIVE, NEGATIVE, NEGATIVE, NEGATIVE]
    assert matched[0] == 0


def test_paired_iou_is_the_diagonal_of_box_iou_bit_for_bit():
    gen = torch.Generator().manual_seed(0)
    a = cxcywh_to_xyxy(torch.rand(100, 4, generator=gen) * 50 + 1)
    b = cxcywh_to_xyxy(torch.rand(100, 4, generator=gen) * 50 + 1)
    assert torch.equal(paired_iou(a, b), torch.diagonal(box_iou(a, b)))


def test_encoding_by_hand():
    anchor = torch.tensor([10.0, 20.0, 16.0, 16.0])
    centred = torch.tensor([2.0, 12.0, 18.0, 28.0])
    assert torch.equal(encode_boxes(centred, anchor, VARIANCES), torch.zeros(4))
    # shifted right by 1.6 px = 0.1 anchor widths, twice as wide and as tall
    face = torch.tensor([10 + 1.6 - 16, 20 - 16, 10 + 1.6 + 16, 20 + 16])
    targets = encode_boxes(face, anchor, VARIANCES)
    assert targets.tolist() == pytest.approx([1.0, 0.0, math.log(2) / 0.2, math.log(2) / 0.2], abs=1e-5)
    points = torch.tensor([[10.0, 20.0], [11.6, 20.0], [10.0, 16.8], [10.0, 20.0], [10.0, 20.0]])
    assert encode_landmarks(points, anchor, VARIANCES).tolist() == pytest.approx(
        [0, 0, 1, 0, 0, -2, 0, 0, 0, 0], abs=1e-5
    )


def test_same_face_shape_gives_the_same_targets_on_any_level():
    small = encode_landmarks(torch.tensor([[4.0, 6.0]] * 5), torch.tensor([8.0, 8.0, 16.0, 16.0]), VARIANCES)
    large = encode_landmarks(torch.tensor([[64.0, 96.0]] * 5), torch.tensor([128.0, 128.0, 256.0, 256.0]), VARIANCES)
    assert torch.allclose(small, large)


positive = st.floats(min_value=1.0, max_value=600.0)
coordinate = st.floats(min_value=-100.0, max_value=800.0)


@settings(max_examples=200, deadline=None)
@given(x=coordinate, y=coordinate, w=positive, h=positive, ax=coordinate, ay=coordinate, aw=positive, ah=positive)
def test_box_round_trip(x, y, w, h, ax, ay, aw, ah):
    box = torch.tensor([x, y, x + w, y + h], dtype=torch.float64)
    anchor = torch.tensor([ax, ay, aw, ah], dtype=torch.float64)
    back = decode_boxes(encode_boxes(box, anchor, VARIANCES), anchor, VARIANCES)
    assert torch.allclose(back, box, rtol=1e-9, atol=1e-7)


@settings(max_examples=200, deadline=None)
@given(
    points=st.lists(st.tuples(coordinate, coordinate), min_size=5, max_size=5),
    ax=coordinate, ay=coordinate, aw=positive, ah=positive,
    variance=st.floats(min_value=0.05, max_value=1.0),
)
def test_landmark_round_trip(points, ax, ay, aw, ah, variance):
    points = torch.tensor(points, dtype=torch.float64)
    anchor = torch.tensor([ax, ay, aw, ah], dtype=torch.float64)
    encoded = encode_landmarks(points, anchor, (variance, 0.2))
    assert encoded.shape == (10,)
    assert torch.allclose(decode_landmarks(encoded, anchor, (variance, 0.2)), points, rtol=1e-9, atol=1e-7)


def test_box_format_round_trip():
    boxes = torch.tensor([[1.0, 2.0, 5.0, 10.0], [-3.0, 0.0, 0.0, 0.5]])
    assert torch.equal(cxcywh_to_xyxy(xyxy_to_cxcywh(boxes)), boxes)


def test_missing_landmarks_are_all_minus_one():
    points = torch.rand(3, 5, 2) * 10
    points[1] = -1
    points[2, 0] = -1  # one point at -1 is a real (if odd) coordinate
    assert has_landmarks(points).tolist() == [True, False, True]


@pytest.mark.parametrize(
    "boxes, problem",
    [
        ([[10.0, 0.0, 5.0, 8.0]], "x2 < x1"),
        ([[0.0, 8.0, 5.0, 2.0]], "y2 < y1"),
        ([[0.0, float("nan"), 5.0, 8.0]], "NaN"),
        ([[0.0, 0.0, float("inf"), 8.0]], "infinite"),
        ([[0.0, 0.0, 5.0]], "shape"),
        ("not boxes", "tensor"),
    ],
)
def test_bad_boxes_are_clear_errors(boxes, problem):
    with pytest.raises(ValueError, match=problem):
        as_boxes(boxes, "faces")


def test_bad_box_error_names_the_box_and_value():
    with pytest.raises(ValueError, match=r"box 1 .*\[10\.0, 0\.0, 5\.0, 8\.0\]"):
        match_anchors(GRID, torch.tensor([[0.0, 0.0, 4.0, 4.0], [10.0, 0.0, 5.0, 8.0]]), 0.5, 0.3)


def test_bad_anchor_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="anchors must have shape"):
        match_anchors(GRID[:, :3], torch.zeros(0, 4), 0.5, 0.3)


def test_image_left_first_swaps_each_pair_by_x_in_numpy_and_torch():
    points = np.array([[[5, 0], [1, 0], [3, 3], [2, 6], [4, 6]],    # eyes swapped, mouth in order
                       [[1, 0], [5, 0], [3, 3], [4, 6], [2, 6]]], np.float32)  # mouth swapped
    expected = [[1, 5, 3, 2, 4], [1, 5, 3, 2, 4]]
    np.testing.assert_array_equal(image_left_first(points)[..., 0], expected)
    assert image_left_first(torch.from_numpy(points))[..., 0].tolist() == expected
    np.testing.assert_array_equal(points[0, :2, 0], [5, 1])  # the input is left as it was
