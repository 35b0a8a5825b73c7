"""``rfcore eval`` on a tiny WIDER FACE-layout folder: the bundled pictures with hand-made .mat ground truth."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from builders import write_wider_mat

from rfcore.assets import load_annotation
from rfcore.cli import main
from rfcore.cli.evaluation import add_parsers, tta_config
from rfcore.detect_config import PAPER_TEST_SCALES

REPO = Path(__file__).resolve().parents[2]
PICTURES = {"0--Parade/grace_hopper": "grace_hopper", "0--Parade/astronaut": "astronaut", "1--Group/group": "group"}
"""Image key in the tiny set -> bundled picture (assets/images/<name>.jpg and .json)."""


def xywh(boxes) -> np.ndarray:
    boxes = np.asarray(boxes, float)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


@pytest.fixture(scope="module")
def wider(tmp_path_factory):
    """``(gt_dir, images_dir)``: easy faces are at least 80 px wide, medium at least 30, hard all."""
    root = tmp_path_factory.mktemp("wider")
    faces, subsets = {}, {"easy": {}, "medium": {}, "hard": {}}
    for key, picture in PICTURES.items():
        annotation = load_annotation(REPO / "assets" / "images" / f"{picture}.json")
        destination = root / "images" / f"{key}.jpg"
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(annotation.image_path, destination)
        faces[key] = xywh(annotation.boxes.numpy())
        widths = faces[key][:, 2]
        for subset, least in (("easy", 80), ("medium", 30), ("hard", 0)):
            subsets[subset][key] = (np.flatnonzero(widths >= least) + 1).tolist()
    return write_wider_mat(root / "ground_truth", faces, subsets), root / "images"


@pytest.fixture(scope="module")
def evaluated(wider, tmp_path_factory):
    """The output folder and printed report of one full ``rfcore eval`` run."""
    gt_dir, images = wider
    out = tmp_path_factory.mktemp("eval")
    assert main(["eval", "--gt-dir", str(gt_dir), "--images", str(images), "--out", str(out), "--quiet"]) == 0
    return out


def read_summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


@pytest.mark.slow
def test_eval_prints_aps_and_writes_predictions_curves_and_summary(evaluated, capsys):
    summary = read_summary(evaluated)
    assert summary["images"] == 3 and list(summary["subsets"]) == ["easy", "medium", "hard"]
    assert [s["faces"] for s in summary["subsets"].values()] == [6, 10, 12]
    assert summary["subsets"]["easy"]["ap"] == pytest.approx(1.0)
    assert 0.5 < summary["subsets"]["hard"]["ap"] <= summary["subsets"]["easy"]["ap"]
    assert summary["settings"]["threshold"] == 0.02 and summary["settings"]["tta"] is None
    assert summary["landmarks"] is None  # the .mat ground truth has no landmarks
    lines = (evaluated / "predictions" / "1--Group" / "group.txt").read_text().splitlines()
    assert lines[0] == "1--Group/group.jpg" and int(lines[1]) == len(lines) - 2 >= 10
    assert sorted(p.name for p in (evaluated / "predictions" / "0--Parade").iterdir()) == [
        "astronaut.txt", "grace_hopper.txt"]
    figure = cv2.imread(str(evaluated / "pr_curves.png"))
    assert figure.shape[1] > 2 * figure.shape[0]  # three panels side by side


@pytest.mark.slow
def test_eval_report_table(wider, tmp_path, capsys):
    gt_dir, images = wider
    assert main(["eval", "--gt-dir", str(gt_dir), "--images", str(images), "--out", str(tmp_path), "--quiet",
                 "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert "1 image, " in out and "subset" in out
    assert "easy" in out and "medium" in out and "hard" in out
    assert f"wrote {tmp_path / 'predictions'}/ (1 file)" in out
    assert read_summary(tmp_path)["images"] == 1 and read_summary(tmp_path)["settings"]["limit"] == 1


@pytest.mark.slow
def test_pred_dir_gives_the_same_aps_from_the_written_files(wider, evaluated, tmp_path):
    gt_dir, _ = wider
    assert main(["eval", "--gt-dir", str(gt_dir), "--pred-dir", str(evaluated / "predictions"),
                 "--out", str(tmp_path)]) == 0
    again, first = read_summary(tmp_path), read_summary(evaluated)
    for subset in ("easy", "medium", "hard"):
        assert again["subsets"][subset]["ap"] == pytest.approx(first["subsets"][subset]["ap"], abs=1e-4)
    assert again["settings"]["pred_dir"] == str(evaluated / "predictions")
    assert not (tmp_path / "predictions").exists()


def test_missing_dataset_names_every_expected_file(tmp_path, capsys):
    code = main(["eval", "--gt-dir", str(tmp_path / "ground_truth"), "--images", str(tmp_path / "images")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    for name in ("wider_face_val.mat", "wider_easy_val.mat", "wider_medium_val.mat", "wider_hard_val.mat"):
        assert f"{tmp_path / 'ground_truth' / name}  MISSING" in err
    assert "eval_tools.zip" in err and "WIDER_val/images" in err


def test_missing_images_are_named(wider, tmp_path, capsys):
    gt_dir, images = wider
    partial = tmp_path / "images"
    shutil.copytree(images, partial)
    (partial / "1--Group" / "group.jpg").unlink()
    assert main(["eval", "--gt-dir", str(gt_dir), "--images", str(partial), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"1 of 3 images not found under {partial} (--images)" in err
    assert str(partial / "1--Group" / "group.jpg") in err
    assert main(["eval", "--gt-dir", str(gt_dir), "--out", str(tmp_path / "o")]) == 2
    assert "--images DIR is needed to run the detector" in capsys.readouterr().err


@pytest.mark.slow
def test_malformed_prediction_file_names_file_and_line(wider, evaluated, tmp_path, capsys):
    gt_dir, _ = wider
    pred_dir = tmp_path / "pred"
    shutil.copytree(evaluated / "predictions", pred_dir)
    bad = pred_dir / "0--Parade" / "astronaut.txt"
    bad.write_text("0--Parade/astronaut.jpg\n1\n10 20 30 0.9\n")
    assert main(["eval", "--gt-dir", str(gt_dir), "--pred-dir", str(pred_dir), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"rfcore eval: {bad}:3: expected 5 numbers 'x y w h score', got 4" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "options, message",
    [
        (["--limit", "0"], "--limit must be at least 1, got 0"),
        (["--pred-dir", "p", "--flip"], "the detector options --flip do not apply"),
        (["--vote-iou", "0.3"], "--vote-iou needs test-time augmentation"),
    ],
)
def test_options_that_do_not_fit_exit_with_status_2(wider, tmp_path, capsys, options, message):
    gt_dir, images = wider
    assert main(["eval", "--gt-dir", str(gt_dir), "--images", str(images), "--out", str(tmp_path), *options]) == 2
    assert message in capsys.readouterr().err


def parse(*options):
    import argparse

    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers())
    return parser.parse_args(["eval", "--gt-dir", "g", *options])


def test_test_time_options_become_a_tta_config():
    assert tta_config(parse()) is None
    paper = tta_config(parse("--multiscale"))
    assert paper.flip and paper.scales == PAPER_TEST_SCALES and paper.vote_iou == 0.4
    flip_only = tta_config(parse("--flip", "--vote-iou", "0.5"))
    assert flip_only.flip and flip_only.scales == (None,) and flip_only.vote_iou == 0.5
    scales = tta_config(parse("--scales", "300", "600"))
    assert not scales.flip and scales.scales == (300, 600)


@pytest.mark.slow
def test_flip_runs_and_is_recorded(wider, tmp_path):
    gt_dir, images = wider
    assert main(["eval", "--gt-dir", str(gt_dir), "--images", str(images), "--out", str(tmp_path), "--quiet",
                 "--limit", "1", "--flip"]) == 0
    summary = read_summary(tmp_path)
    assert summary["settings"]["tta"] == {"flip": True, "scales": [None], "vote_iou": 0.4}
    assert summary["subsets"]["easy"]["ap"] == pytest.approx(1.0)


def test_label_file_sets_count_every_face_and_report_landmarks(tmp_path, capsys):
    annotation = load_annotation(REPO / "assets" / "images" / "grace_hopper.json")
    (tmp_path / "images").mkdir()
    shutil.copy(annotation.image_path, tmp_path / "images" / "hopper.jpg")
    box = xywh(annotation.boxes.numpy())[0]
    points = " ".join(f"{x:.1f} {y:.1f} 0.0" for x, y in annotation.landmarks[0].tolist())
    (tmp_path / "label.txt").write_text(f"# hopper.jpg\n{' '.join(f'{v:g}' for v in box)} {points} 1.0\n")
    assert main(["eval", "--label-file", str(tmp_path / "label.txt"), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "landmarks: 1 of 1 annotated faces found" in out
    summary = read_summary(tmp_path / "out")
    assert summary["subsets"] == {"all": {"ap": pytest.approx(1.0), "faces": 1}}
    assert summary["landmarks"]["mean_nme"] < 0.1
    assert (tmp_path / "out" / "predictions" / "hopper.txt").is_file()


def test_an_empty_label_file_exits_with_status_2(tmp_path, capsys):
    (tmp_path / "label.txt").write_text("")
    (tmp_path / "images").mkdir()
    assert main(["eval", "--label-file", str(tmp_path / "label.txt"), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rfcore eval: label file {tmp_path / 'label.txt'} lists no images (--label-file)")
    assert not (tmp_path / "out").exists()


def test_ground_truth_boxes_outside_their_image_are_named(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    shutil.copy(REPO / "assets" / "images" / "grace_hopper.jpg", tmp_path / "images" / "hopper.jpg")
    (tmp_path / "label.txt").write_text("# hopper.jpg\n150 120 200 250\n700 50 40 40\n")  # the image is 512 wide
    assert main(["eval", "--label-file", str(tmp_path / "label.txt"), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert (f"rfcore eval: warning: 1 ground-truth box(es) lie wholly outside their image (first: "
            f"{tmp_path / 'images' / 'hopper.jpg'} box [700.0, 50.0, 740.0, 90.0] in a 512x600 image)") in err


def test_outputs_that_are_inputs_are_refused_before_anything_is_read(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    label = tmp_path / "summary.json"
    label.write_text("# a.jpg\n1 1 5 5\n")
    assert main(["eval", "--label-file", str(label), "--out", str(tmp_path), "--quiet"]) == 2
    assert f"output {label} is an input" in capsys.readouterr().err
    assert label.read_text() == "# a.jpg\n1 1 5 5\n"


def test_max_size_with_pred_dir_is_refused_but_its_default_is_not(wider, tmp_path, capsys):
    gt_dir, images = wider
    assert main(["eval", "--gt-dir", str(gt_dir), "--pred-dir", "p", "--max-size", "800", "--out", str(tmp_path)]) == 2
    assert "the detector options --max-size do not apply" in capsys.readouterr().err
