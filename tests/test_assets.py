import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rfcore.assets import load_annotation, load_image

PHOTO = Path(__file__).resolve().parents[1] / "assets" / "images" / "grace_hopper.json"


def test_photo_annotation_is_plausible():
    ann = load_annotation(PHOTO)
    assert ann.image_path.name == "grace_hopper.jpg" and ann.image_size == (600, 512)
    assert load_image(ann.image_path).shape == (600, 512, 3)
    assert ann.boxes.shape == (1, 4) and ann.landmarks.shape == (1, 5, 2)
    (x1, y1, x2, y2), points = ann.boxes[0].tolist(), ann.landmarks[0]
    assert ((points[:, 0] > x1) & (points[:, 0] < x2) & (points[:, 1] > y1) & (points[:, 1] < y2)).all()
    left_eye, right_eye, nose, left_mouth, right_mouth = points
    assert left_eye[0] < nose[0] < right_eye[0]  # image-left eye first
    assert left_mouth[0] < right_mouth[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1])


def write(tmp_path, record):
    (tmp_path / "a.png").write_bytes((PHOTO.parent / "grace_hopper.jpg").read_bytes())
    path = tmp_path / "a.json"
    path.write_text(json.dumps(record))
    return path


def test_missing_landmarks_become_minus_one(tmp_path):
    path = write(tmp_path, {"image": "a.png", "image_size": [600, 512],
                            "faces": [{"box": [1, 2, 30, 40], "landmarks": None}, {"box": [5, 6, 7, 8]}]})
    ann = load_annotation(path)
    assert torch.equal(ann.landmarks, torch.full((2, 5, 2), -1.0))
    assert ann.boxes.tolist() == [[1, 2, 30, 40], [5, 6, 7, 8]]


def test_image_without_faces(tmp_path):
    ann = load_annotation(write(tmp_path, {"image": "a.png", "image_size": [600, 512], "faces": []}))
    assert ann.boxes.shape == (0, 4) and ann.landmarks.shape == (0, 5, 2)


@pytest.mark.parametrize(
    "record, error, words",
    [
        ({"image": "a.png", "faces": []}, ValueError, "missing key 'image_size'"),
        ({"image": "b.png", "image_size": [600, 512], "faces": []}, FileNotFoundError, "does not exist"),
        ({"image": "a.png", "image_size": [600, 512], "faces": [{"box": [1, 2, 600, 40]}]}, ValueError, "outside"),
        ({"image": "a.png", "image_size": [600, 512], "faces": [{"box": [1, 2, 3]}]}, ValueError, "shape"),
        ({"image": "a.png", "image_size": [600, 512], "faces": [{"box": [1, 2, 3, 4], "landmarks": [[1, 2]]}]},
         ValueError, "landmarks"),
    ],
)
def test_bad_files_raise_readable_errors(tmp_path, record, error, words):
    with pytest.raises(error, match=words):
        load_annotation(write(tmp_path, record))


def test_group_picture_reproduces_the_shipped_file(tmp_path):
    from rfcore.assets import IMAGES, load_image, write_group_picture

    made = load_annotation(write_group_picture(tmp_path))
    shipped = load_annotation(IMAGES / "group.json")
    assert made.image_size == shipped.image_size == (540, 960)
    assert torch.allclose(made.boxes, shipped.boxes, atol=0.01)
    assert torch.allclose(made.landmarks, shipped.landmarks, atol=0.01)
    difference = load_image(made.image_path).astype(int) - load_image(shipped.image_path).astype(int)
    assert abs(difference).mean() < 1.0


def test_group_picture_faces_keep_their_geometry():
    from rfcore.assets import GROUP_LAYOUT, make_group_picture

    picture, boxes, landmarks = make_group_picture()
    assert picture.shape == (540, 960, 3) and picture.dtype == np.uint8
    widths = (boxes[:, 2] - boxes[:, 0]).tolist()
    assert widths == pytest.approx([layout[1] for layout in GROUP_LAYOUT], abs=1.0)
    inside = (landmarks >= boxes[:, None, :2]) & (landmarks <= boxes[:, None, 2:])
    assert inside.all()
    # mirrored or not, the first eye and mouth corner are on the image's left
    assert (landmarks[:, 0, 0] < landmarks[:, 1, 0]).all()
    assert (landmarks[:, 3, 0] < landmarks[:, 4, 0]).all()
