"""rfcore.data.variety and its options: seeded, deterministic, ground truth untouched, no photograph of a face."""

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_synthetic import other_kernels_environment

from rfcore.config import VARIETY_OPTIONS as OPTIONS
from rfcore.data import SyntheticFaces
from rfcore.data.backgrounds import PICTURES, picture
from rfcore.data.degrade import degrade
from rfcore.data.occluders import covered
from rfcore.data.paint import face_frames, polygon_mask, to_image
from rfcore.data.synthetic import VALIDATION, VALIDATION_VARIED, validation_set
from rfcore.data.variety import CLOSEUP_SIZES, Variety

SETTINGS = {"length": 6, "image_size": (160, 192), "faces": (2, 5), "min_face": 12, "max_face": 90, "seed": 11}


@pytest.fixture(scope="module")
def plain():
    dataset = SyntheticFaces(**SETTINGS)
    return [dataset.render(i) for i in range(len(dataset))]


@pytest.fixture(scope="module", params=OPTIONS + ("all",))
def varied(request):
    dataset = SyntheticFaces(**SETTINGS, variety=Variety.from_names([request.param]))
    return request.param, dataset, [dataset.render(i) for i in range(len(dataset))]


def closeup(image) -> bool:
    """The image is a close-up of :data:`CLOSEUP_SIZES` (its faces are at least that large)."""
    sizes = (image.sample.boxes[:, 2:] - image.sample.boxes[:, :2]).max(axis=1)
    return len(sizes) > 0 and sizes.min() >= CLOSEUP_SIZES[0] * min(SETTINGS["image_size"]) - 1


def test_each_option_changes_the_pixels_and_keeps_the_ground_truth(plain, varied):
    """Every option but closeups keeps the faces; closeups turn some images into close-ups and keep the rest."""
    name, _, images = varied
    changed = 0
    for before, after in zip(plain, images):
        if name in ("closeups", "all") and closeup(after) and not closeup(before):
            changed += 1
            continue
        for field in ("boxes", "landmarks"):
            np.testing.assert_array_equal(getattr(before.sample, field), getattr(after.sample, field))
        np.testing.assert_array_equal(before.vertices, after.vertices)
        np.testing.assert_array_equal(before.poses, after.poses)
        changed += not np.array_equal(before.sample.image, after.sample.image)
        assert after.visible.shape == after.sample.landmarks.shape[:2] and after.visible.dtype == bool
    assert changed >= (1 if name == "closeups" else 3), f"{name} changed only {changed} of {len(images)} images"


def test_each_option_is_seeded_and_deterministic(varied):
    name, _, images = varied
    again = SyntheticFaces(**SETTINGS, variety=Variety.from_names([name]))
    for index in (4, 1):  # any order
        np.testing.assert_array_equal(again.render(index).sample.image, images[index].sample.image)
        np.testing.assert_array_equal(again.render(index).visible, images[index].visible)
    other = SyntheticFaces(**{**SETTINGS, "seed": 12}, variety=Variety.from_names([name]))
    assert not np.array_equal(other.render(1).sample.image, images[1].sample.image)


def test_closeups_are_large_faces_whose_box_is_the_rendered_opacitys():
    dataset = SyntheticFaces(**{**SETTINGS, "length": 16}, variety=Variety(closeups=True))
    images = [dataset.render(i) for i in range(len(dataset))]
    closeups = [image for image in images if closeup(image)]
    assert 2 <= len(closeups) <= 12
    for image in closeups:
        for box in image.sample.boxes:
            x1, y1, x2, y2 = np.floor(box).astype(int)
            inside = image.alpha[max(y1 - 3, 0) : y2 + 3, max(x1 - 3, 0) : x2 + 3] > 0.5
            rows, columns = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
            found = np.array([columns[0], rows[0], columns[-1] + 1, rows[-1] + 1]) + [max(x1 - 3, 0), max(y1 - 3, 0)] * 2
            assert np.abs(found - box).max() < 2.0  # render pixels enlarged about 2x


def test_switching_one_option_leaves_the_others_draws_alone():
    both = SyntheticFaces(**SETTINGS, variety=Variety(occluders=True, degrade=False))
    with_details = SyntheticFaces(**SETTINGS, variety=Variety(occluders=True, details=True))
    for index in range(3):
        np.testing.assert_array_equal(both.render(index).visible, with_details.render(index).visible)


def test_only_occluders_hide_landmarks_and_a_hidden_landmark_is_painted_over(plain):
    hidden = 0
    for name in OPTIONS:
        dataset = SyntheticFaces(**{**SETTINGS, "length": 24}, variety=Variety.from_names([name]))
        plain_set = SyntheticFaces(**{**SETTINGS, "length": 24})
        for index in range(len(dataset)):
            image = dataset.render(index)
            if name != "occluders":
                assert image.visible.all()
                continue
            before = plain_set.render(index).sample.image
            for face, point in zip(*np.nonzero(~image.visible)):
                x, y = np.floor(image.sample.landmarks[face, point]).astype(int)
                assert not np.array_equal(image.sample.image[y, x], before[y, x])  # the occluder is on it
                hidden += 1
    assert hidden >= 5


def test_covered_reads_the_pixel_under_each_point():
    mask = np.zeros((4, 5), np.float32)
    mask[1, 2] = 1.0
    mask[3, 4] = 0.4
    points = np.array([[2.5, 1.5], [2.99, 1.01], [3.0, 1.5], [4.5, 3.5], [-3.0, 9.0]])
    np.testing.assert_array_equal(covered(mask, points), [True, True, False, False, False])


def test_face_frames_put_the_eyes_at_plus_minus_half():
    landmarks = np.array([[[10, 20], [30, 24], [20, 30], [12, 40], [28, 42]]], np.float32)
    frames = face_frames(landmarks)
    np.testing.assert_allclose(to_image(frames, [(-0.5, 0), (0.5, 0), (0, 1)])[0], [[10, 20], [30, 24], [20, 41]])


def test_a_polygon_mask_covers_its_area_at_sub_pixel_corners():
    mask = polygon_mask((20, 20), [np.array([[2.25, 3.25], [12.25, 3.25], [12.25, 9.25], [2.25, 9.25]])])
    # 10 x 6 pixels; OpenCV fills both ends of a span, a quarter sub-pixel row wider at most
    assert 60 <= mask.sum() <= 10.25 * 6.25
    assert mask[6, 7] == 1 and mask[3, 2] == 0.75 * 0.75 and mask[0, 0] == 0 and mask[15, 15] == 0


def test_degrade_keeps_the_shape_and_is_seeded():
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    first = degrade(image, np.random.default_rng(3))
    np.testing.assert_array_equal(first, degrade(image, np.random.default_rng(3)))
    assert first.shape == image.shape and first.dtype == np.uint8
    outputs = [degrade(image, np.random.default_rng(seed)) for seed in range(20)]
    assert sum(not np.array_equal(out, image) for out in outputs) >= 15
    assert any((out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all() for out in outputs)  # grey


FORBIDDEN = ("astronaut", "camera", "retina", "lfw_subset", "lbpcascade", "phantom", "skin", "brain", "kidney")
"""scikit-image data with a person (or a person's body) in it, or face data: never a background."""


def test_background_pictures_are_an_allow_list_without_people():
    assert PICTURES and not any(word in name for name in PICTURES for word in FORBIDDEN)
    for name in PICTURES:
        image = picture(name)
        assert image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) >= 150
    with pytest.raises(ValueError, match="allowed"):
        picture("astronaut.png")


def test_no_training_input_is_a_photograph_of_a_face(monkeypatch):
    """Every file read while drawing varied images is one of the allow-listed pictures (never the bundled
    photographs of faces, never a scikit-image picture off the list)."""
    read = []
    original = cv2.imread

    def recording_imread(path, *args):
        read.append(Path(path).name)
        return original(path, *args)

    monkeypatch.setattr(cv2, "imread", recording_imread)
    picture.cache_clear()
    dataset = SyntheticFaces(**{**SETTINGS, "length": 30}, variety=Variety.from_names(["all"]))
    for index in range(len(dataset)):
        dataset.render(index)
    picture.cache_clear()
    assert read and set(read) <= set(PICTURES)


def test_the_varied_validation_set_is_the_plain_one_with_another_seed_and_every_option():
    assert {k: v for k, v in VALIDATION_VARIED.items() if k != "seed"} == {k: v for k, v in VALIDATION.items()
                                                                         if k != "seed"}
    assert VALIDATION_VARIED["seed"] != VALIDATION["seed"]
    varied, plain = validation_set(3, varied=True), validation_set(3)
    assert varied.variety.names == OPTIONS and not plain.variety
    assert len(varied) == 3 and varied.seed == VALIDATION_VARIED["seed"]


@pytest.mark.parametrize("names, words", [(["glitter"], "unknown synthetic variety 'glitter'"),
                                          (["all", "hats"], "unknown synthetic variety 'hats'")])
def test_unknown_options_are_named(names, words):
    with pytest.raises(ValueError, match=words):
        Variety.from_names(names)


VARIED_TRUTH_CODE = """
import numpy as np
from rfcore.data.synthetic import SyntheticFaces
from rfcore.data.variety import Variety
dataset = SyntheticFaces(5, image_size=(160, 192), faces=(2, 5), min_face=12, max_face=90, seed=11,
                         variety=Variety.from_names(["all"]))
truth = [dataset.render(i) for i in range(5)]
np.savez({path!r}, *[t.sample.boxes for t in truth], *[t.sample.landmarks for t in truth],
         *[t.visible for t in truth])
"""


@pytest.mark.slow  # a fresh interpreter under the generic CPU kernels
def test_varied_ground_truth_and_visibility_are_bit_identical_under_other_cpu_kernels(tmp_path):
    here, there = tmp_path / "here.npz", tmp_path / "there.npz"
    exec(VARIED_TRUTH_CODE.format(path=str(here)), {})
    subprocess.run([sys.executable, "-c", VARIED_TRUTH_CODE.format(path=str(there))],
                   env=other_kernels_environment(), check=True, timeout=300)
    here, there = dict(np.load(here)), dict(np.load(there))
    assert here.keys() == there.keys() and len(here) == 15
    for name in here:
        np.testing.assert_array_equal(here[name], there[name], err_msg=name)


def test_train_config_and_command_line_carry_the_options():
    from rfcore.cli.train import command_line
    from rfcore.train.config import TrainConfig

    train_cfg = TrainConfig(variety=("occluders", "details"))
    assert train_cfg.variety == ("details", "occluders")  # in OPTIONS order
    assert TrainConfig(variety=("all",)).variety == OPTIONS
    assert "--variety details occluders" in command_line(train_cfg)
    with pytest.raises(ValueError, match="unknown synthetic variety 'hats'"):
        TrainConfig(variety=("hats",))
