"""Tests of rfcore.align: template, least-squares similarity, aligned crops."""

import math

import cv2
import numpy as np
import pytest

from rfcore.align import (
    ARCFACE_TEMPLATE,
    align_face,
    align_faces,
    alignment_matrix,
    parse_size,
    similarity_transform,
    template_points,
)
from rfcore.assets import IMAGES, load_annotation, load_image
from rfcore.detector import Face

HOPPER = load_annotation(IMAGES / "grace_hopper.json")
HOPPER_POINTS = HOPPER.landmarks[0].numpy().astype(np.float64)  # (5, 2) hand-annotated


def similarity(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    """``(2, 3)`` matrix of a rotation by ``angle_deg``, a scale and a translation."""
    a = math.radians(angle_deg)
    return np.array([[scale * math.cos(a), -scale * math.sin(a), tx], [scale * math.sin(a), scale * math.cos(a), ty]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(matrix)


def test_template_sizes():
    assert np.array_equal(template_points(112), ARCFACE_TEMPLATE)
    assert np.allclose(template_points((96, 112)), ARCFACE_TEMPLATE - [8, 0])  # the usual 96x112 shift
    assert np.allclose(template_points(224), 2 * ARCFACE_TEMPLATE)
    assert np.allclose(template_points((192, 224)), 2 * ARCFACE_TEMPLATE - [16, 0])


@pytest.mark.parametrize("text, size", [("112", (112, 112)), ("96x112", (96, 112)), ("224X224", (224, 224))])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["abc", "0", "96x", "1x2x3", "-5"])
def test_parse_size_rejects_bad_text(text):
    with pytest.raises(ValueError, match="SIDE or WIDTHxHEIGHT"):
        parse_size(text)


def test_similarity_transform_recovers_a_known_similarity():
    known = similarity(-37.0, 2.3, 140.0, -12.5)
    points = apply(known, ARCFACE_TEMPLATE)
    assert np.allclose(similarity_transform(ARCFACE_TEMPLATE, points), known, atol=1e-9)
    assert np.allclose(similarity_transform(points, ARCFACE_TEMPLATE), invert(known), atol=1e-9)


def test_least_squares_fit_matches_opencv():
    ours = alignment_matrix(HOPPER_POINTS)
    opencv, inliers = cv2.estimateAffinePartial2D(HOPPER_POINTS, ARCFACE_TEMPLATE, method=cv2.LMEDS)
    assert inliers.all()
    assert np.allclose(ours, opencv, atol=1e-4)
    residual = np.linalg.norm(apply(ours, HOPPER_POINTS) - ARCFACE_TEMPLATE, axis=1)
    assert residual.max() < 3.0  # a real face is close to, not exactly, the template


def test_rotated_scaled_face_comes_back_upright():
    image = load_image(HOPPER.image_path)
    # landmarks exactly a similarity of the template (scale 2.25, no rotation) on Grace Hopper's face
    points = ARCFACE_TEMPLATE * 2.25 + [130, 76]
    assert np.abs(points - HOPPER_POINTS).max() < 20
    known = similarity(35.0, 0.7, 200.0, -60.0)
    moved = cv2.warpAffine(image, known, (700, 600))
    moved_points = apply(known, points)

    assert np.abs(apply(alignment_matrix(moved_points), moved_points) - ARCFACE_TEMPLATE).max() < 0.5
    upright, restored = align_face(image, points), align_face(moved, moved_points)
    assert restored.shape == (112, 112, 3) and restored.dtype == np.uint8
    # the upright crop is the 252-pixel square the template covers, shrunk to 112
    region = cv2.resize(image[76 : 76 + 252, 130 : 130 + 252], (112, 112), interpolation=cv2.INTER_AREA)
    assert np.abs(region.astype(int) - upright).mean() < 12
    assert np.abs(restored.astype(int) - upright).mean() < 6  # the same crop, up to resampling
    unaligned = cv2.resize(moved[150:450, 250:550], (112, 112))
    assert np.abs(unaligned.astype(int) - upright).mean() > 30


def test_pixels_land_on_the_template():
    # Five bright blobs at a rotated, scaled copy of the template; after alignment their centroids sit
    # on the template points: checks the warp's direction and pixel convention, not just the matrix.
    points = apply(similarity(25.0, 2.5, 120.0, 40.0), ARCFACE_TEMPLATE)
    yy, xx = np.mgrid[0:500, 0:500]
    blobs = sum(np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 4.0**2)) for x, y in points)
    image = np.repeat((255 * blobs).round().astype(np.uint8)[:, :, None], 3, axis=2)
    crop = align_face(image, points)[:, :, 0].astype(np.float64)
    cy, cx = np.mgrid[0:112, 0:112]
    for x, y in ARCFACE_TEMPLATE:
        window = (cx - x) ** 2 + (cy - y) ** 2 <= 5**2
        weights = crop * window
        centroid = np.array([(weights * cx).sum(), (weights * cy).sum()]) / weights.sum()
        assert np.linalg.norm(centroid - [x, y]) < 0.5


def test_mirrored_landmark_order_is_rejected():
    with pytest.raises(ValueError, match="mirrored order"):
        alignment_matrix(HOPPER_POINTS[[1, 0, 2, 4, 3]])
    mirrored_image_points = np.stack([512 - HOPPER_POINTS[:, 0], HOPPER_POINTS[:, 1]], axis=1)  # order not fixed
    with pytest.raises(ValueError, match="only a reflection"):
        align_face(np.zeros((600, 512, 3), np.uint8), mirrored_image_points)


@pytest.mark.parametrize(
    "points, message",
    [
        (np.full((5, 2), -1.0), r"all at the same point \(-1, -1\) \(a face without landmarks"),
        (np.full((5, 2), 30.0), "all at the same point"),
        (np.stack([np.arange(5.0), 2 * np.arange(5.0) + 3], axis=1), "lie on one line"),
        (np.zeros((4, 2)), r"shape \(5, 2\)"),
        (np.full((5, 2), np.nan), "finite"),
    ],
)
def test_degenerate_landmarks_are_rejected(points, message):
    with pytest.raises(ValueError, match=message):
        alignment_matrix(points)


def test_96x112_crop_is_the_112_crop_without_8_pixels_each_side():
    image = load_image(HOPPER.image_path)
    wide, narrow = align_face(image, HOPPER_POINTS, 112), align_face(image, HOPPER_POINTS, (96, 112))
    assert narrow.shape == (112, 96, 3)
    assert np.abs(narrow.astype(int) - wide[:, 8:104]).max() <= 1
    shifted = apply(alignment_matrix(HOPPER_POINTS, (96, 112)), HOPPER_POINTS)
    assert np.allclose(shifted, apply(alignment_matrix(HOPPER_POINTS), HOPPER_POINTS) - [8, 0])


def test_align_faces_accepts_faces_and_arrays_and_keeps_order_dtype_and_channels():
    image = load_image(HOPPER.image_path)
    face = Face((165.0, 142.0, 368.0, 336.0), 0.99, tuple(map(tuple, HOPPER_POINTS.tolist())))
    moved = HOPPER_POINTS + [-60, 30]
    crops = align_faces(image, [face, moved])
    assert [c.shape for c in crops] == [(112, 112, 3)] * 2 and all(c.dtype == np.uint8 for c in crops)
    assert np.array_equal(crops[0], align_face(image, HOPPER_POINTS))
    assert np.array_equal(crops[1], align_face(image, moved))
    assert len(align_faces(image, np.stack([HOPPER_POINTS, moved]))) == 2  # (F, 5, 2) array
    grey = align_faces(image[:, :, 0].astype(np.float32), [face], 224)[0]
    assert grey.shape == (224, 224) and grey.dtype == np.float32
    assert align_faces(image, []) == []


def test_align_faces_names_the_face_that_fails():
    image = load_image(HOPPER.image_path)
    with pytest.raises(ValueError, match="face 1: landmarks are in mirrored order"):
        align_faces(image, [HOPPER_POINTS, HOPPER_POINTS[[1, 0, 2, 4, 3]]])
    with pytest.raises(ValueError, match="non-empty"):
        align_faces(np.zeros((0, 5, 3), np.uint8), [HOPPER_POINTS])
    with pytest.raises(ValueError, match="size must be"):
        align_faces(image, [HOPPER_POINTS], (0, 112))
