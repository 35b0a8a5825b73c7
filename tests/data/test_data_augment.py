"""rfcore.data.augment: hand-sized cases and properties over random samples."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rfcore.config import get_config
from rfcore.data import (
    CropWindow,
    FaceSample,
    TrainTransform,
    crop,
    hflip,
    photometric_distort,
    random_square_crop,
    resize,
    square_crop_window,
)

FACE_POINTS = np.array([[0.3, 0.35], [0.7, 0.35], [0.5, 0.55], [0.35, 0.8], [0.65, 0.8]], np.float32)
"""Five points as fractions of a face box: eyes, nose, mouth corners."""


def make_sample(height, width, boxes, with_points, seed=0) -> FaceSample:
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    # (F, 1, 2) corners and sizes with (5, 2) fractions -> (F, 5, 2)
    points = boxes[:, None, :2] + (boxes[:, None, 2:] - boxes[:, None, :2]) * FACE_POINTS
    points[~np.asarray(with_points, bool)] = -1
    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return FaceSample(image, boxes, points.astype(np.float32), "synthetic")


@st.composite
def samples(draw, max_side=48):
    """Random images with up to four faces; boxes may stick out of the image, as in WIDER FACE."""
    height, width = draw(st.integers(4, max_side)), draw(st.integers(4, max_side))
    num_faces = draw(st.integers(0, 4))
    coord = st.floats(-4, max_side + 4, allow_nan=False, width=32)
    boxes = []
    for _ in range(num_faces):
        x1, y1 = draw(coord), draw(coord)
        w, h = draw(st.floats(0.5, 30, width=32)), draw(st.floats(0.5, 30, width=32))
        boxes.append([x1, y1, x1 + w, y1 + h])
    with_points = draw(st.lists(st.booleans(), min_size=num_faces, max_size=num_faces))
    return make_sample(height, width, boxes, with_points, seed=draw(st.integers(0, 1000)))


def inside(points, boxes, tol=1e-3):
    """``(F, 5, 2)`` points inside ``(F, 4)`` boxes -> ``(F, 5)`` bool."""
    return (points >= boxes[:, None, :2] - tol).all(-1) & (points <= boxes[:, None, 2:] + tol).all(-1)


def test_flip_mirrors_and_swaps_left_and_right():
    face = make_sample(20, 100, [[10, 2, 30, 18]], [True])
    flipped = hflip(face)
    np.testing.assert_allclose(flipped.boxes, [[70, 2, 90, 18]])
    # left eye at x = 16 and right eye at x = 24 become 100 - 24 = 76 and 100 - 16 = 84
    np.testing.assert_allclose(flipped.landmarks[0, :2], [[76, 7.6], [84, 7.6]])
    np.testing.assert_allclose(flipped.landmarks[0, 3:, 0], [100 - 23, 100 - 17])
    assert (flipped.landmarks[0, :, 0][[0, 3]] < flipped.landmarks[0, :, 0][[1, 4]]).all()
    np.testing.assert_array_equal(flipped.image, face.image[:, ::-1])


@settings(max_examples=60, deadline=None)
@given(samples())
def test_flip_twice_is_the_identity(sample):
    twice = hflip(hflip(sample))
    np.testing.assert_array_equal(twice.image, sample.image)
    np.testing.assert_allclose(twice.boxes, sample.boxes, atol=1e-4)
    np.testing.assert_allclose(twice.landmarks, sample.landmarks, atol=1e-4)


@settings(max_examples=60, deadline=None)
@given(samples())
def test_flip_and_resize_keep_landmarks_in_their_face(sample):
    started_inside = inside(sample.landmarks, sample.boxes) & sample.has_landmarks[:, None]
    for moved in (hflip(sample), resize(sample, 17), resize(sample, (9, 30))):
        assert (inside(moved.landmarks, moved.boxes)[started_inside]).all()
        assert (moved.landmarks[~sample.has_landmarks] == -1).all()


def test_crop_keeps_faces_whose_centre_is_inside_and_clips_them():
    # centres (15, 15) inside, (45, 45) outside, (28, 10) inside with the box sticking out
    face = make_sample(60, 60, [[10, 10, 20, 20], [40, 40, 50, 50], [24, 4, 32, 16]], [True, True, False])
    cropped = crop(face, CropWindow(x=5, y=5, side=25))

    assert cropped.image.shape == (25, 25, 3)
    np.testing.assert_array_equal(cropped.image, face.image[5:30, 5:30])
    np.testing.assert_allclose(cropped.boxes, [[5, 5, 15, 15], [19, 0, 25, 11]])
    np.testing.assert_allclose(cropped.landmarks[0], face.landmarks[0] - 5)
    assert (cropped.landmarks[1] == -1).all()


@settings(max_examples=80, deadline=None)
@given(samples(), st.integers(0, 2**32 - 1))
def test_crops_never_create_boxes_outside_the_image(sample, seed):
    cropped = random_square_crop(sample, np.random.default_rng(seed))
    side = cropped.image.shape[0]
    assert cropped.image.shape[1] == side
    assert side >= max(1, int(0.3 * min(sample.image_size)))
    assert ((cropped.boxes >= 0) & (cropped.boxes <= side)).all()
    assert (cropped.boxes[:, 2:] > cropped.boxes[:, :2]).all()
    assert len(cropped.landmarks) == len(cropped.boxes)


@settings(max_examples=80, deadline=None)
@given(samples(), st.integers(0, 2**32 - 1))
def test_landmarks_follow_their_face_through_a_crop(sample, seed):
    rng = np.random.default_rng(seed)
    window = square_crop_window(sample.image_size, sample.boxes, rng)
    cropped = crop(sample, window)
    x, y, side = window
    centre = (sample.boxes[:, :2] + sample.boxes[:, 2:]) / 2
    kept = ((centre > [x, y]) & (centre < [x + side, y + side])).all(axis=1)
    assert len(cropped.boxes) == kept.sum()
    # points of the face that were inside both the face and the window stay inside the clipped face
    in_window = ((sample.landmarks >= [x, y]) & (sample.landmarks <= [x + side, y + side])).all(-1)
    started_inside = (inside(sample.landmarks, sample.boxes) & in_window)[kept] & sample.has_landmarks[kept][:, None]
    assert inside(cropped.landmarks, cropped.boxes)[started_inside].all()
    np.testing.assert_array_equal(cropped.has_landmarks, sample.has_landmarks[kept])


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_train_transform_keeps_every_uncut_face_and_its_landmarks(seed):
    # a square image cropped at scale 1 is the whole image: every face survives, unclipped
    face = make_sample(40, 40, [[2, 3, 12, 15], [20, 20, 38, 39], [25, 1, 30, 6]], [True, False, True])
    transform = TrainTransform(size=64, crop_scale=(1.0, 1.0))
    out = transform(face, np.random.default_rng(seed))
    assert out.image.shape == (64, 64, 3) and out.image.dtype == np.uint8
    assert len(out.boxes) == 3
    assert inside(out.landmarks, out.boxes)[out.has_landmarks].all()
    assert out.has_landmarks.tolist() == [True, False, True]
    np.testing.assert_allclose(np.sort((out.boxes[:, 2:] - out.boxes[:, :2]).prod(1)),
                               np.sort(((face.boxes[:, 2:] - face.boxes[:, :2]) * 1.6).prod(1)), rtol=1e-5)


@settings(max_examples=40, deadline=None)
@given(samples(), st.integers(0, 2**32 - 1))
def test_train_transform_output_is_valid_and_deterministic(sample, seed):
    transform = TrainTransform(size=32)
    out = transform(sample, np.random.default_rng(seed))
    again = transform(sample, np.random.default_rng(seed))
    assert out.image.shape == (32, 32, 3) and out.image.dtype == np.uint8
    assert ((out.boxes >= 0) & (out.boxes <= 32)).all() and (out.boxes[:, 2:] > out.boxes[:, :2]).all()
    assert out.boxes.dtype == np.float32 and out.landmarks.dtype == np.float32
    np.testing.assert_array_equal(out.image, again.image)
    np.testing.assert_array_equal(out.boxes, again.boxes)
    np.testing.assert_array_equal(out.landmarks, again.landmarks)


def test_resize_scales_boxes_and_landmarks():
    face = make_sample(20, 40, [[4, 2, 12, 10]], [True])
    out = resize(face, 10)
    assert out.image.shape == (10, 10, 3)
    np.testing.assert_allclose(out.boxes, [[1, 1, 3, 5]])
    np.testing.assert_allclose(out.landmarks, face.landmarks * [0.25, 0.5])


def test_crop_window_prefers_a_window_with_a_face():
    boxes = np.array([[45.0, 45.0, 55.0, 55.0]], np.float32)
    for seed in range(20):
        x, y, side = square_crop_window((100, 100), boxes, np.random.default_rng(seed))
        assert 30 <= side <= 100 and 0 <= x <= 100 - side and 0 <= y <= 100 - side
        assert x < 50 < x + side and y < 50 < y + side


def test_photometric_distortion():
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    out = photometric_distort(image, np.random.default_rng(1))
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, photometric_distort(image, np.random.default_rng(1)))
    np.testing.assert_array_equal(photometric_distort(image, np.random.default_rng(1), p=0.0), image)
    changed = [not np.array_equal(photometric_distort(image, np.random.default_rng(s)), image) for s in range(10)]
    assert sum(changed) >= 8


@pytest.mark.parametrize("seed", range(5))
def test_photometric_distortion_keeps_grey_grey(seed):
    grey = np.repeat(np.arange(0, 256, 4, dtype=np.uint8)[:, None, None], 3, axis=2)  # (64, 1, 3)
    out = photometric_distort(grey, np.random.default_rng(seed), p=1.0).astype(int)
    assert np.abs(out - out[..., :1]).max() <= 1


def test_train_transform_from_config():
    assert TrainTransform.from_config(get_config("paper")).size == 640
    assert TrainTransform.from_config(get_config("paper"), flip_prob=0.0).flip_prob == 0.0
