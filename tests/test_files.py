"""rfcore.files: outputs that are inputs are refused; files appear whole or not at all; a full disk is named."""

import errno
import os
import re
from pathlib import Path

import pytest

from rfcore import files
from rfcore.files import DiskFull, append_line, atomic_path, check_not_inputs, same_file, write_bytes, write_text


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_write_bytes_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "out.bin"
    write_bytes(target, b"old")
    write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.bin"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = write_text(tmp_path / "summary.json", "{}\n")
    with pytest.raises(RuntimeError, match="half-way"):
        with atomic_path(target) as tmp:
            tmp.write_text('{"partial": ')
            raise RuntimeError("half-way")
    assert target.read_text() == "{}\n"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_the_temporary_keeps_the_suffix_for_writers_that_need_it(tmp_path):
    with atomic_path(tmp_path / "clip.mp4") as tmp:
        assert tmp.suffix == ".mp4" and tmp.parent == tmp_path and tmp.name.startswith(".clip.")
        tmp.write_bytes(b"x")
    assert (tmp_path / "clip.mp4").read_bytes() == b"x"


def test_a_full_disk_names_the_file_and_the_space_needed(tmp_path, monkeypatch):
    target = write_bytes(tmp_path / "weights.safetensors", b"old")
    monkeypatch.setattr(Path, "write_bytes", disk_full)
    with pytest.raises(DiskFull) as caught:
        files.write_bytes(target, b"x" * 2_500_000)
    assert str(caught.value) == (f"no space left on the device while writing {target} (needed 2.5 MB); "
                                 "the file was not changed: free some space and run again")
    assert caught.value.errno == errno.ENOSPC and caught.value.needed == 2_500_000
    monkeypatch.undo()
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["weights.safetensors"]


def test_a_full_disk_during_fsync_is_reported_too(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(DiskFull, match="out.txt"):
        write_text(tmp_path / "out.txt", "hello")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_append_line_adds_whole_lines_and_names_a_full_disk(tmp_path, monkeypatch):
    log = tmp_path / "log.jsonl"
    append_line(log, '{"step": 1}')
    append_line(log, '{"step": 2}')
    assert log.read_text() == '{"step": 1}\n{"step": 2}\n'

    def full_open(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files, "open", full_open, raising=False)
    with pytest.raises(DiskFull, match=r"log.jsonl \(needed 12 B\)"):
        append_line(log, '{"step": 3}')


def test_same_file_sees_through_relative_paths_symlinks_and_hard_links(tmp_path, monkeypatch):
    original = tmp_path / "x.jpg"
    original.write_bytes(b"image")
    (tmp_path / "link.jpg").symlink_to(original)
    os.link(original, tmp_path / "hard.jpg")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert same_file(original, "../x.jpg")
    assert same_file(original, tmp_path / "link.jpg")
    assert same_file(original, tmp_path / "hard.jpg")
    assert not same_file(original, tmp_path / "other.jpg")


@pytest.mark.parametrize("output", ["x.jpg", "sub/../x.jpg", "link.jpg", "hard.jpg"])
def test_check_not_inputs_refuses_every_spelling_of_an_input(tmp_path, monkeypatch, output):
    (tmp_path / "x.jpg").write_bytes(b"image")
    (tmp_path / "link.jpg").symlink_to(tmp_path / "x.jpg")
    os.link(tmp_path / "x.jpg", tmp_path / "hard.jpg")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=rf"output {re.escape(output)} is an input.*never writes over a file it reads"):
        check_not_inputs(["x.jpg", None], [None, output])
    check_not_inputs(["x.jpg"], ["faces.json"])  # another file is fine
