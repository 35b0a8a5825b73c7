"""The command line never loses a user's file: outputs that are inputs are refused before anything is read or
written (every spelling: the path itself, relative, symlink, hard link), outputs appear whole or not at all, and
one bad or huge file is reported without stopping the others (the reproductions of issue 13)."""

import errno
import hashlib
import os
from pathlib import Path

import pytest
import torch

from rfcore import files
from rfcore.assets import IMAGES, load_image
from rfcore.cli import main
from rfcore.detector import Detector
from rfcore.video_files import write_pan_video
from rfcore.weights import DEFAULT_WEIGHTS
from rfcore.weights_io import load_weights

REFUSED = "is an input"


def checksum(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "x.jpg"
    path.write_bytes((IMAGES / "group.jpg").read_bytes())
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_pan_video(tmp_path_factory.mktemp("video") / "s.mp4", load_image(IMAGES / "group.jpg"), 6, (96, 128))


@pytest.mark.parametrize("spelling", ["same", "relative", "symlink", "hardlink"])
def test_json_file_naming_the_input_is_refused_and_the_image_kept(photo, monkeypatch, capsys, spelling):
    monkeypatch.chdir(photo.parent)
    output = {"same": str(photo), "relative": f"../{photo.parent.name}/x.jpg", "symlink": "link.jpg", "hardlink": "hard.jpg"}[spelling]
    (photo.parent / "link.jpg").symlink_to(photo)
    os.link(photo, photo.parent / "hard.jpg")
    before = checksum(photo)
    assert main(["detect", str(photo), "--json-file", output]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rfcore detect: output {output} {REFUSED}") and "Nothing was read or written." in err
    assert checksum(photo) == before


def test_video_out_naming_the_input_is_refused_and_the_video_kept(video, capsys):
    before = checksum(video)
    assert main(["detect", str(video), "--out", str(video)]) == 2
    assert f"output {video} {REFUSED}" in capsys.readouterr().err
    assert checksum(video) == before


def test_a_drawing_that_would_replace_an_input_is_refused(tmp_path, photo, capsys):
    drawn = tmp_path / "x_faces.png"
    drawn.write_bytes(b"an earlier drawing the user passes as input")
    assert main(["detect", str(photo), str(drawn), "--out", str(tmp_path)]) == 2
    assert f"output {drawn} {REFUSED}" in capsys.readouterr().err


def test_convert_onto_its_source_is_refused(tmp_path, capsys):
    src = tmp_path / "x.pth"
    torch.save(load_weights(None, DEFAULT_WEIGHTS), src)
    before = checksum(src)
    assert main(["convert", str(src), str(src)]) == 2
    assert f"output {src} {REFUSED}" in capsys.readouterr().err
    assert checksum(src) == before


@pytest.mark.slow
def test_export_onto_the_weights_is_refused_and_a_failed_export_leaves_the_old_file(tmp_path, monkeypatch, capsys):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(DEFAULT_WEIGHTS.read_bytes())
    assert main(["export", "--weights", str(weights), "--onnx", str(weights)]) == 2
    assert f"output {weights} {REFUSED}" in capsys.readouterr().err

    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(b"previous export")

    def fails(model, args, buffer, **kwargs):
        buffer.write(b"half an ONNX graph")
        raise OSError("simulated failure while exporting")

    monkeypatch.setattr(torch.onnx, "export", fails)
    assert main(["export", "--weights", str(weights), "--onnx", str(onnx_path)]) == 2
    assert onnx_path.read_bytes() == b"previous export" and sorted(p.name for p in tmp_path.iterdir()) == [
        "model.onnx", "w.safetensors"]
    assert main(["export", "--weights", str(weights), "--onnx", str(tmp_path / "new.onnx")]) == 2
    assert not (tmp_path / "new.onnx").exists()


def test_align_refuses_an_input_its_crops_would_replace(tmp_path, capsys):
    crop = tmp_path / "x_face0.png"
    crop.write_bytes((IMAGES / "astronaut.jpg").read_bytes())
    assert main(["align", str(IMAGES / "group.jpg"), str(tmp_path / "x.png"), str(crop), "--out", str(tmp_path)]) == 2
    assert f"{REFUSED}" in capsys.readouterr().err


@pytest.mark.slow
def test_the_json_file_appears_whole_or_keeps_its_old_contents(photo, tmp_path, monkeypatch, capsys):
    out = tmp_path / "faces.jsonl"
    out.write_text("old\n")

    def interrupted(self, loaded):
        raise KeyboardInterrupt

    monkeypatch.setattr(Detector, "detect_loaded", interrupted)
    assert main(["detect", str(photo), "--json-file", str(out)]) == 130
    assert capsys.readouterr().err == ("rfcore detect: interrupted (Ctrl-C); files already written are complete, "
                                       "none is half-written\n")
    assert out.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["faces.jsonl", "x.jpg"]
    monkeypatch.undo()
    assert main(["detect", str(photo), "--json-file", str(out)]) == 0
    assert out.read_text().startswith('{"image": ')


def test_a_full_disk_for_the_json_file_is_one_sentence_with_status_3(photo, tmp_path, monkeypatch, capsys):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    assert main(["detect", str(photo), "--json-file", str(tmp_path / "faces.jsonl")]) == 3
    err = capsys.readouterr().err
    assert err == (f"rfcore detect: no space left on the device while writing {tmp_path / 'faces.jsonl'}; the file was "
                   "not changed: free some space and run again\n")
    assert not (tmp_path / "faces.jsonl").exists()


def test_out_of_memory_on_one_file_is_reported_and_the_rest_still_run(photo, tmp_path, monkeypatch, capsys):
    real, calls = Detector.detect_same_size, []

    def first_fails(self, images):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 16000000000 bytes")
        return real(self, images)

    monkeypatch.setattr(Detector, "detect_same_size", first_fails)
    assert main(["detect", str(photo), str(IMAGES / "grace_hopper.jpg")]) == 1
    captured = capsys.readouterr()
    assert captured.err == ("rfcore detect: out of memory detecting faces on an image of 960x540 pixels (network "
                            "input long edge 960); lower max_size (command line: --max-size, default 4096)\n")
    assert "grace_hopper.jpg: 1 face" in captured.out


def test_a_truncated_jpeg_is_named_and_the_next_file_still_runs(tmp_path, capsys):
    whole = (IMAGES / "group.jpg").read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole[: len(whole) // 2])
    assert main(["detect", str(cut), str(IMAGES / "grace_hopper.jpg")]) == 1
    captured = capsys.readouterr()
    assert captured.err == (f"rfcore detect: {cut} is a truncated JPEG (the file ends inside the image data, e.g. a "
                            "cut download or a full disk): copy or export it again\n")
    assert "grace_hopper.jpg: 1 face" in captured.out


def test_an_image_over_the_pixel_limit_says_how_to_override(tmp_path, capsys):
    huge = tmp_path / "huge.png"
    huge.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR" + (20000).to_bytes(4, "big") * 2 + b"\x08\x02\0\0\0")
    assert main(["detect", str(huge), str(IMAGES / "grace_hopper.jpg")]) == 1
    captured = capsys.readouterr()
    assert "huge.png is 20000x20000 pixels" in captured.err and "--max-pixels 400000000" in captured.err
    assert "grace_hopper.jpg: 1 face" in captured.out


def test_a_reduced_jpeg_is_drawn_at_its_decoded_size(tmp_path, capsys):
    assert main(["detect", str(IMAGES / "group.jpg"), "--max-size", "240", "--out", str(tmp_path)]) == 0
    drawing = load_image(tmp_path / "group_faces.png")
    assert drawing.shape == (135, 240, 3)  # decoded at 1/4, faces scaled onto it
    assert "group.jpg:" in capsys.readouterr().out


def test_weights_given_as_a_folder_are_named(tmp_path, capsys):
    assert main(["detect", str(IMAGES / "group.jpg"), "--weights", str(tmp_path)]) == 2
    assert f"weights {tmp_path} is a folder, not a file" in capsys.readouterr().err


def test_a_full_disk_while_converting_is_one_sentence_with_status_3(tmp_path, monkeypatch, capsys):
    src = tmp_path / "x.pth"
    torch.save(load_weights(None, DEFAULT_WEIGHTS), src)
    dst = tmp_path / "x.safetensors"

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    assert main(["convert", str(src), str(dst)]) == 3
    err = capsys.readouterr().err
    assert err.startswith(f"rfcore convert: no space left on the device while writing {dst} (needed 1.")
    assert "Traceback" not in err and not dst.exists()


def test_out_naming_a_file_is_refused_for_drawings_and_crops(photo, capsys):
    before = checksum(photo)
    assert main(["detect", str(photo), "--out", str(photo)]) == 2
    assert f"rfcore detect: --out {photo} is a file: give a folder for the drawings" in capsys.readouterr().err
    assert main(["align", str(photo), "--out", str(photo)]) == 2
    assert f"rfcore align: --out {photo} is a file: give a folder for the crops" in capsys.readouterr().err
    assert checksum(photo) == before
