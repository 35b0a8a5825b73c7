"""Tests of `rfcore align`: aligned crops written per detected face."""

import shutil

import cv2
import numpy as np
import pytest

from rfcore.align import align_face
from rfcore.assets import IMAGES, load_image
from rfcore.cli import main
from rfcore.detector import Detector, Face

HOPPER = str(IMAGES / "grace_hopper.jpg")
GROUP = str(IMAGES / "group.jpg")


pytestmark = pytest.mark.usefixtures("one_thread")


def read_rgb(path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_align_writes_one_crop_per_face(tmp_path, capsys):
    assert main(["align", HOPPER, GROUP, "--out", str(tmp_path)]) == 0
    group_faces = Detector().detect(GROUP)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["grace_hopper_face0.png"] + [f"group_face{k}.png" for k in range(len(group_faces))])
    assert len(group_faces) == 10
    crop = read_rgb(tmp_path / "group_face0.png")
    assert crop.shape == (112, 112, 3)
    assert np.array_equal(crop, align_face(load_image(GROUP), group_faces[0]))  # highest score first, lossless
    out = capsys.readouterr().out
    assert f"{HOPPER}: 1 face, 1 aligned 112x112 crop written to {tmp_path}" in out
    assert f"{GROUP}: 10 faces, 10 aligned 112x112 crops" in out


def test_align_96x112_and_same_stems(tmp_path):
    copy = tmp_path / "other" / "grace_hopper.jpg"
    copy.parent.mkdir()
    shutil.copy(HOPPER, copy)
    out = tmp_path / "crops"
    assert main(["align", HOPPER, str(copy), "--out", str(out), "--size", "96x112"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["grace_hopper_2_face0.png", "grace_hopper_face0.png"]
    assert read_rgb(out / "grace_hopper_face0.png").shape == (112, 96, 3)


def test_align_reports_bad_files_and_keeps_going(tmp_path, capsys):
    missing = str(tmp_path / "missing.jpg")
    assert main(["align", missing, HOPPER, "--out", str(tmp_path / "out")]) == 1
    assert f"rfcore align: {missing} does not exist" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["grace_hopper_face0.png"]


def test_align_reports_a_face_it_cannot_align(tmp_path, capsys, monkeypatch):
    points = ((223.0, 189.0), (305.0, 187.0), (268.0, 238.0), (230.0, 281.0), (305.0, 277.0))
    good = Face((165.0, 142.0, 368.0, 336.0), 0.99, points)
    mirrored = Face(good.box, 0.9, tuple(points[k] for k in (1, 0, 2, 4, 3)))
    monkeypatch.setattr(Detector, "detect", lambda self, image, color=None: [good, mirrored])
    assert main(["align", HOPPER, "--out", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert f"rfcore align: {HOPPER}: face 1: landmarks are in mirrored order" in captured.err
    assert [p.name for p in tmp_path.iterdir()] == ["grace_hopper_face0.png"]
    assert "2 faces, 1 aligned 112x112 crop written" in captured.out


@pytest.mark.parametrize("size", ["0", "96x", "big"])
def test_align_rejects_a_bad_size(size, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["align", HOPPER, "--out", str(tmp_path), "--size", size])
    assert exit_info.value.code == 2
    assert "crop size must be SIDE or WIDTHxHEIGHT" in capsys.readouterr().err


def test_align_reports_missing_weights(tmp_path, capsys):
    assert main(["align", HOPPER, "--out", str(tmp_path), "--weights", str(tmp_path / "none.safetensors")]) == 2
    assert "none.safetensors not found" in capsys.readouterr().err
