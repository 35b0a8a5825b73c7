"""Hostile inputs: every case of a new user's worst day ends in one sentence and an exit status from the table
(2 bad input, 3 no space, 130 interrupted) and leaves every input byte-identical (sha256 before and after).

The files a command resolves by itself (default weights, mesh files, calibration pictures) are copies in a
temporary folder, so a regression cannot harm the repository's own assets.
"""

import hashlib
import os
import shutil
from pathlib import Path

import pytest

import rfcore
import rfcore.assets
import rfcore.weights
from rfcore.assets import IMAGES
from rfcore.cli import main
from rfcore.weights import DEFAULT_WEIGHTS, MESH_DECODER_FILE, MESH_HEAD_FILE


def sha256_tree(*paths) -> dict:
    """``{file: sha256}`` of every file under ``paths`` (files or folders)."""
    found = [q for p in map(Path, paths) for q in ([p] if p.is_file() else sorted(p.rglob("*"))) if q.is_file()]
    return {str(q): hashlib.sha256(q.read_bytes()).hexdigest() for q in found}


def one_sentence(err: str, command: str) -> str:
    """The error output, checked to be one line from ``rfcore COMMAND:`` (no traceback)."""
    assert err.count("\n") == 1 and err.startswith(f"rfcore {command}: "), err
    assert "Traceback" not in err
    return err


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A copy of assets/weights that rfcore takes for the shipped weights."""
    folder = tmp_path / "weights"
    shutil.copytree(DEFAULT_WEIGHTS.parent, folder)
    monkeypatch.setattr(rfcore.weights, "DEFAULT_WEIGHTS", folder / DEFAULT_WEIGHTS.name)
    return folder


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "g.jpg"
    shutil.copy(IMAGES / "grace_hopper.jpg", path)
    return path


# ---------------------------------------------------------------- 1. eval writes only inside --out


@pytest.mark.parametrize("header", ["{victim}/photo.jpg", "../../victim/photo2.jpg"])
def test_eval_refuses_image_names_that_leave_the_images_folder(tmp_path, capsys, header):
    victim = tmp_path / "victim"
    victim.mkdir()
    for name in ("photo", "photo2"):
        shutil.copy(IMAGES / "grace_hopper.jpg", victim / f"{name}.jpg")
        (victim / f"{name}.txt").write_text("precious\n")
    data = tmp_path / "a" / "b"
    (data / "images").mkdir(parents=True)
    label = data / "label.txt"
    label.write_text(f"# ok.jpg\n1 1 5 5\n# {header.format(victim=victim)}\n10 10 50 50\n")
    shutil.copy(IMAGES / "grace_hopper.jpg", data / "images" / "ok.jpg")
    before = sha256_tree(victim, label)
    assert main(["eval", "--label-file", str(label), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = one_sentence(capsys.readouterr().err, "eval")
    assert f"{label}:3: the image path " in err and ("is absolute" in err or "climbs out of the images folder" in err)
    assert sha256_tree(victim, label) == before and not (tmp_path / "out").exists()


def test_prediction_paths_stay_inside_their_folder(tmp_path):
    from rfcore.evaluation.predictions import prediction_path

    assert prediction_path(tmp_path, "0--Parade/a") == tmp_path / "0--Parade" / "a.txt"
    for name in ("/etc/passwd", "../x", "a/../../x"):
        with pytest.raises(ValueError, match=f"nothing is written outside {tmp_path}"):
            prediction_path(tmp_path, name)


# ---------------------------------------------------------------- 2. files a command resolves by itself


def test_detect_refuses_to_write_over_the_default_weights(shipped, photo, capsys):
    target = shipped / DEFAULT_WEIGHTS.name
    before = sha256_tree(shipped, photo)
    assert main(["detect", str(photo), "--json-file", str(target)]) == 2
    assert f"output {target} is an input" in one_sentence(capsys.readouterr().err, "detect")
    assert sha256_tree(shipped, photo) == before


@pytest.mark.parametrize("name", [MESH_DECODER_FILE, MESH_HEAD_FILE])
def test_detect_mesh_refuses_to_write_over_the_mesh_files_beside_the_weights(shipped, photo, capsys, name):
    before = sha256_tree(shipped, photo)
    weights = shipped / DEFAULT_WEIGHTS.name
    assert main(["detect", str(photo), "--mesh", "--weights", str(weights), "--json-file", str(shipped / name)]) == 2
    assert f"output {shipped / name} is an input" in one_sentence(capsys.readouterr().err, "detect")
    assert sha256_tree(shipped, photo) == before


def test_export_int8_refuses_to_write_over_a_calibration_picture(tmp_path, monkeypatch, capsys):
    pictures = tmp_path / "images"
    shutil.copytree(IMAGES, pictures)
    monkeypatch.setattr(rfcore.assets, "IMAGES", pictures)
    before = sha256_tree(pictures)
    assert main(["export", "--int8", "--onnx", str(pictures / "group.jpg")]) == 2
    assert f"output {pictures / 'group.jpg'} is an input" in one_sentence(capsys.readouterr().err, "export")
    assert sha256_tree(pictures) == before


# ---------------------------------------------------------------- 7. outputs only over regular files


def special_files(tmp_path) -> dict:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "null"
    link.symlink_to(os.devnull)
    return {"a character device": Path(os.devnull), "a character device (a link to it)": link,
            "a FIFO (named pipe)": fifo, "a folder": tmp_path / "folder"}


@pytest.mark.parametrize("command", ["detect", "export"])
def test_outputs_naming_a_device_fifo_or_folder_are_refused_before_any_work(tmp_path, photo, capsys, command):
    (tmp_path / "folder").mkdir()
    for kind, target in special_files(tmp_path).items():
        argv = ["detect", str(photo), "--json-file", str(target)] if command == "detect" else \
            ["export", "--onnx", str(target)]
        assert main(argv) == 2
        err = one_sentence(capsys.readouterr().err, command)
        assert f"output {target} is {kind.split(' (a link')[0]}, not a regular file" in err
    assert Path(os.devnull).is_char_device() and (tmp_path / "fifo").is_fifo() and (tmp_path / "null").is_symlink()


def test_json_file_in_a_folder_that_cannot_be_written_is_one_sentence(tmp_path, photo, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["detect", str(photo), "--json-file", str(blocker / "out.jsonl")]) == 2
    assert f"cannot write {blocker / 'out.jsonl'}: {blocker} is a file, not a folder" in \
        one_sentence(capsys.readouterr().err, "detect")


# ---------------------------------------------------------------- 5. every decoder bounded before it allocates


@pytest.mark.parametrize(("side", "suffix", "options", "message"), [
    (20000, ".tif", [], "is 20000x20000 pixels (400 megapixels, 1.2 GB decoded), over the limit of 100 megapixels"),
    (20000, ".gif", [], "is 20000x20000 pixels (400 megapixels, 1.2 GB decoded), over the limit of 100 megapixels"),
    (65000, ".jpg", [], "its header claims 65000x65000 pixels, but it holds "),
    (60000, ".png", ["--max-pixels", "0"], "is 60000x60000 pixels, more than OpenCV decodes (1,073,741,824 pixels)"),
    (20000, ".gif", ["--max-pixels", "0"], "its header claims 20000x20000 pixels, but it holds "),  # decoded at 3.6 GB
])
def test_hostile_headers_are_refused_before_decoding(tmp_path, photo, monkeypatch, capsys, side, suffix, options,
                                                     message):
    from rfcore.bench.memory import forge_header

    hostile = forge_header(tmp_path / f"hostile{suffix}", side)
    assert hostile.stat().st_size < 20_000
    before = sha256_tree(hostile, photo)
    assert main(["detect", str(hostile), str(photo), *options]) == 1  # the next file still runs
    out, err = capsys.readouterr()
    assert one_sentence(err, "detect").startswith(f"rfcore detect: {hostile}") and message in err
    assert out.startswith(f"{photo}: 1 face")
    assert sha256_tree(hostile, photo) == before


# ---------------------------------------------------------------- FIFOs and devices never hang a batch


def test_a_fifo_or_device_input_is_skipped_and_the_next_file_runs(tmp_path, photo, capsys):
    for name in ("f.jpg", "f.mp4"):
        os.mkfifo(tmp_path / name)
    inputs = [tmp_path / "f.jpg", tmp_path / "f.mp4", Path(os.devnull), photo]
    assert main(["detect", *map(str, inputs)]) == 1  # a FIFO opened for reading would block until a writer came
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        f"rfcore detect: {tmp_path / 'f.jpg'} is a FIFO (named pipe), not an image: rfcore reads only regular files",
        f"rfcore detect: {tmp_path / 'f.mp4'} is a FIFO (named pipe), not a video: rfcore reads only regular files",
        f"rfcore detect: {os.devnull} is a character device, not an image: rfcore reads only regular files"]
    assert out.startswith(f"{photo}: 1 face")


# ---------------------------------------------------------------- 6. and sizes: every number option is bounded


@pytest.mark.parametrize(("argv", "message"), [
    (["anchors", "--size", "-1", "5"], "argument --size: must be between 1 and 16,384, got -1"),
    (["align", "g.jpg", "--out", "x", "--size", "100000"], "crop size must be at most 4096 pixels a side"),
    (["detect", "g.jpg", "--batch", "100000"], "argument --batch: must be between 1 and 256, got 100000"),
    (["detect", "g.jpg", "--threshold", "nan"], "argument --threshold: must be a finite number, got nan"),
    (["eval", "--label-file", "l.txt", "--scales", "100000"], "argument --scales: must be between 16 and 16,384"),
    (["train", "--data", "synthetic", "--workers", "100000"], "argument --workers: must be between 0 and "),
])
def test_options_out_of_range_are_refused_by_argparse_naming_them(capsys, argv, message):
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(("options", "message"), [
    (["--size", "100000"], "image_size (--size) must be at most 4,096, got 100000"),
    (["--num-images", "1000000000"], "num_images (--num-images) must be at most 10,000,000, got 1000000000"),
    (["--seed", "-1"], "seed (--seed) must not be negative, got -1"),
    (["--seed", "99999999999999999999999"], "seed (--seed) must be at most 4,294,967,295, got 99999999999999999999999"),
    (["--step-epochs", "nan"], "step_epochs (--step-epochs) must be a finite number, got nan"),
    (["--step-epochs", "-5"], "step_epochs (--step-epochs) must not be negative, got (-5.0,)"),
    (["--lr", "inf"], "lr (--lr) must be a finite number, got inf"),
    (["--mesh", "--mesh-landmarks", "-1"], "mesh_landmarks (--mesh-landmarks) must not be negative, got -1.0"),
])
def test_train_options_out_of_range_are_one_sentence_naming_the_option(tmp_path, capsys, options, message):
    assert main(["train", "--data", "synthetic", "--out", str(tmp_path / "run"), *options]) == 2
    assert one_sentence(capsys.readouterr().err, "train") == f"rfcore train: train config: {message}\n"
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- 8. weights of a non-floating dtype


def test_detect_refuses_int8_weights_with_the_right_keys_and_shapes(tmp_path, photo, capsys):
    import torch

    from rfcore.weights_io import load_weights, save_weights

    state = {key: value.to(torch.int8) for key, value in load_weights(None, DEFAULT_WEIGHTS).items()}
    weights = tmp_path / "int8.safetensors"
    save_weights(state, weights, {"preset": "mobilenet0.25"})
    before = sha256_tree(weights, photo)
    assert main(["detect", str(photo), "--weights", str(weights)]) == 2
    assert "not floating point: " in one_sentence(capsys.readouterr().err, "detect")
    assert sha256_tree(weights, photo) == before


# ---------------------------------------------------------------- label files: a byte-order mark, huge numbers


def test_a_label_file_with_a_byte_order_mark_is_read(tmp_path):
    from rfcore.data.widerface import read_label_file

    label = tmp_path / "label.txt"
    label.write_bytes("\ufeff# a.jpg\n1 2 3 4\n".encode())
    assert [entry.image for entry in read_label_file(label).entries] == ["a.jpg"]


def test_a_face_line_beyond_float32_is_refused_with_file_and_line(tmp_path):
    from rfcore.data.widerface import read_label_file

    label = tmp_path / "label.txt"
    label.write_text("# a.jpg\n165 142 1e39 1e39\n")
    with pytest.raises(ValueError, match=rf"^{label}:2: value 3 is too large to be a coordinate: '1e39'$"):
        read_label_file(label)


# ---------------------------------------------------------------- standard output full or closed


def run_rfcore(args: list[str], stdout=None, close_stdout: bool = False):
    """``rfcore ARGS`` in a fresh process (standard output a device, or closed as ``>&-`` does)."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "rfcore", *args], stdout=stdout, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(rfcore.__file__).parents[1])},
                          preexec_fn=(lambda: os.close(1)) if close_stdout else None)


@pytest.mark.slow  # a fresh interpreter imports torch and runs the command end to end
def test_stdout_on_a_full_device_is_exit_3_in_one_sentence(photo):
    with open("/dev/full", "w") as full:
        done = run_rfcore(["detect", str(photo), "--json"], full)
    assert done.returncode == 3
    assert done.stderr == "rfcore detect: no space left on the device of standard output; free some space or redirect it\n"


def test_a_closed_stdout_is_exit_2_in_one_sentence_before_any_work(photo):
    done = run_rfcore(["detect", str(photo)], close_stdout=True)
    assert done.returncode == 2
    assert done.stderr == "rfcore detect: standard output is closed: send it somewhere, e.g. > /dev/null\n"


@pytest.mark.slow  # a fresh interpreter imports torch and runs the command end to end
def test_a_json_file_through_proc_self_fd_is_one_sentence(photo, tmp_path):
    with open(tmp_path / "out.txt", "w") as out:
        done = run_rfcore(["detect", str(photo), "--json-file", "/proc/self/fd/1"], out)
    assert done.returncode == 2 and done.stderr == (
        "rfcore detect: cannot write /proc/self/fd/1: no file can be created in /proc/self/fd (No such file or "
        "directory)\n")


# ---------------------------------------------------------------- 3. the shipped run folder, as the report tried it


def test_train_over_the_shipped_run_refuses_and_leaves_it_byte_identical(tmp_path, capsys):
    from rfcore.assets import ASSETS

    run = tmp_path / "synthetic-from-scratch"
    shutil.copytree(ASSETS / "runs" / "synthetic-from-scratch", run)
    before = sha256_tree(run)
    argv = ["train", "--data", "synthetic", "--num-images", "4", "--size", "64", "--batch-size", "2", "--epochs", "1",
            "--quiet", "--device", "cpu", "--out", str(run)]
    assert main(argv) == 2
    assert one_sentence(capsys.readouterr().err, "train") == (
        f"rfcore train: {run} holds a finished run (log.jsonl, weights.safetensors) without a checkpoint to resume: "
        "choose a new --out (rfcore never empties a run folder)\n")
    assert sha256_tree(run) == before and not (run / ".rfcore.lock").exists()


def test_eval_on_a_full_disk_exits_3(tmp_path, capsys, monkeypatch):
    import errno

    from rfcore import files

    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    shutil.copy(IMAGES / "grace_hopper.jpg", data / "images" / "a.jpg")
    (data / "label.txt").write_text("# a.jpg\n180 110 170 215\n")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    assert main(["eval", "--label-file", str(data / "label.txt"), "--out", str(tmp_path / "out"), "--quiet"]) == 3
    assert "no space left on the device while writing " in one_sentence(capsys.readouterr().err, "eval")
