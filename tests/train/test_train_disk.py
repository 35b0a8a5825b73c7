"""rfcore train survives a full disk and a crash: each write site, a torn log line, a corrupt state.json,
a kill during the checkpoint rename, and stale temporary checkpoint folders."""

import errno
import os
from pathlib import Path

import pytest
from builders import log_terms, tiny_config, write_faces_folder

from rfcore import files
from rfcore.cli import main
from rfcore.cli.common import EXIT_DISK_FULL
from rfcore.train import checkpoint as checkpoints
from rfcore.train.checkpoint import checkpoint_dirs
from rfcore.train.config import TrainConfig
from rfcore.train.loop import TrainingDiskFull, train


@pytest.fixture(scope="module")
def faces_folder(tmp_path_factory):
    return write_faces_folder(tmp_path_factory.mktemp("faces"))


def fill_disk_at(monkeypatch, stem: str, in_checkpoint: bool, call: int = 1):
    """Raise ENOSPC on the ``call``-th atomic write of a file named ``stem`` (inside a checkpoint folder or not)."""
    real, calls = Path.write_bytes, []

    def write_bytes(self, data):
        if self.name.startswith(f".{stem}.") and self.parent.name.startswith(".step-") == in_checkpoint:
            calls.append(self)
            if len(calls) == call:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)


# checkpoints are due at steps 2, 3 (epoch end), 4 and 6; the disk fills at the third, step 4
CHECKPOINT_SITES = [("weights", True, 3), ("optimizer", True, 3), ("state", True, 3)]


@pytest.mark.parametrize(("stem", "in_checkpoint", "call"), CHECKPOINT_SITES)
@pytest.mark.slow
def test_a_full_disk_while_checkpointing_stops_and_keeps_the_last_good_checkpoint(
        faces_folder, tmp_path, monkeypatch, stem, in_checkpoint, call):
    fill_disk_at(monkeypatch, stem, in_checkpoint, call)
    with pytest.raises(TrainingDiskFull) as caught:
        train(tiny_config(faces_folder, tmp_path))
    message = str(caught.value)
    assert f"no space left on the device while writing {tmp_path}/checkpoints/.step-00000004." in message
    assert f"{stem}.safetensors" in message or "state.json" in message
    assert "(needed " in message and f"the last good checkpoint is {tmp_path}/checkpoints/step-00000003" in message
    assert "continue with --resume" in message
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000002", "step-00000003"]

    monkeypatch.undo()  # space freed
    resumed = train(tiny_config(faces_folder, tmp_path, resume=True))
    assert resumed.step == 6 and [r["step"] for r in log_terms(tmp_path)] == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow
def test_a_full_disk_at_the_final_weights_keeps_the_checkpoints(faces_folder, tmp_path, monkeypatch):
    fill_disk_at(monkeypatch, "weights", in_checkpoint=False)
    with pytest.raises(TrainingDiskFull, match=rf"writing {tmp_path}/weights.safetensors \(needed .*step-00000006"):
        train(tiny_config(faces_folder, tmp_path))
    assert not (tmp_path / "weights.safetensors").exists()
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step-00000004", "step-00000006"]


@pytest.mark.slow
def test_a_full_disk_while_logging_stops_with_the_log_named(faces_folder, tmp_path, monkeypatch):
    real_open, lines = open, []

    def full_after_four(path, mode="r", *args, **kwargs):
        if mode == "a":
            lines.append(path)
            if len(lines) == 5:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(files, "open", full_after_four, raising=False)
    with pytest.raises(TrainingDiskFull, match=rf"writing {tmp_path}/log.jsonl .*step-00000004"):
        train(tiny_config(faces_folder, tmp_path))
    assert [r["step"] for r in log_terms(tmp_path)] == [1, 2, 3, 4]


@pytest.mark.slow
def test_the_command_line_exits_with_its_own_status_for_a_full_disk(faces_folder, tmp_path, monkeypatch, capsys):
    fill_disk_at(monkeypatch, "state", in_checkpoint=True)
    status = main(["train", "--data", str(faces_folder), "--out", str(tmp_path), "--size", "64", "--epochs", "1",
                            "--batch-size", "2", "--device", "cpu", "--quiet"])
    assert status == EXIT_DISK_FULL == 3
    err = capsys.readouterr().err
    assert err.startswith("rfcore train: no space left on the device while writing") and "Traceback" not in err
    assert "no checkpoint was written yet" in err


@pytest.mark.slow
def test_a_torn_last_log_line_is_reported_and_dropped_on_resume_even_when_quiet(faces_folder, tmp_path, capsys):
    train(tiny_config(faces_folder, tmp_path, max_steps=4))
    log = tmp_path / "log.jsonl"
    with open(log, "a") as f:
        f.write('{"step": 5, "epoch": 1, "lr": 0.00')  # a full disk cut the line short
    capsys.readouterr()

    resumed = train(tiny_config(faces_folder, tmp_path, resume=True))

    assert resumed.step == 6 and [r["step"] for r in log_terms(tmp_path)] == [1, 2, 3, 4, 5, 6]
    assert f"{log} line 5 was cut short (a crash or a full disk); dropped it" in capsys.readouterr().err


@pytest.mark.slow
def test_a_bad_log_line_before_the_last_is_named_by_file_and_line(faces_folder, tmp_path):
    train(tiny_config(faces_folder, tmp_path, max_steps=2))
    log = tmp_path / "log.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join([lines[0], "garbage\n", lines[1]]))
    with pytest.raises(ValueError, match=rf"{log} line 2 is not a log record .*remove that line"):
        train(tiny_config(faces_folder, tmp_path, resume=True))


@pytest.mark.slow
def test_a_corrupt_state_json_is_named_with_what_to_do(faces_folder, tmp_path, capsys):
    train(tiny_config(faces_folder, tmp_path, max_steps=4))
    state = checkpoint_dirs(tmp_path)[-1] / "state.json"
    state.write_text(state.read_text()[:60])
    status = main(["train", "--data", str(faces_folder), "--out", str(tmp_path), "--size", "64", "--epochs", "2",
                            "--batch-size", "2", "--device", "cpu", "--threads", "1", "--checkpoint-every", "2",
                            "--quiet", "--resume"])
    assert status == 2
    err = capsys.readouterr().err
    assert f"{state} is corrupt (" in err and f"delete the folder {state.parent} to resume from the checkpoint" in err


@pytest.mark.slow
def test_a_kill_during_the_rename_leaves_the_old_checkpoints_and_the_stale_folder_is_removed(
        faces_folder, tmp_path, monkeypatch, capsys):
    real_rename, renames = os.rename, []

    def killed(src, dst):
        renames.append(dst)
        if len(renames) == 3:  # the checkpoint of step 4
            raise KeyboardInterrupt
        return real_rename(src, dst)

    monkeypatch.setattr(checkpoints.os, "rename", killed)
    monkeypatch.setattr(checkpoints.shutil, "rmtree", lambda *a, **k: None)  # a kill cleans nothing up
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(faces_folder, tmp_path))
    monkeypatch.undo()
    root = tmp_path / "checkpoints"
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step-00000002", "step-00000003"]
    stale = [p for p in root.iterdir() if p.name.startswith(".step-00000004.")]
    assert len(stale) == 1 and (stale[0] / "state.json").is_file()

    resumed = train(tiny_config(faces_folder, tmp_path, resume=True))

    assert resumed.step == 6
    assert f"removed {stale[0]}, a checkpoint an interrupted run left half-written" in capsys.readouterr().err
    assert not any(p.name.startswith(".") for p in root.iterdir())


@pytest.mark.slow
def test_a_stale_folder_is_removed_when_a_run_starts_afresh_too(faces_folder, tmp_path):
    (tmp_path / "checkpoints" / ".step-00000002.abcd").mkdir(parents=True)
    train(tiny_config(faces_folder, tmp_path, max_steps=1))
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-00000001"]


@pytest.mark.slow
def test_checkpoint_files_and_folders_are_fsynced_around_the_rename(faces_folder, tmp_path, monkeypatch):
    events = []
    real_fsync_file, real_fsync_dir, real_rename = files.fsync_file, files.fsync_dir, os.rename
    monkeypatch.setattr(files, "fsync_file", lambda p: (events.append(("file", Path(p).parent.name[:14])),
                                                        real_fsync_file(p)))
    monkeypatch.setattr(checkpoints, "fsync_dir", lambda p: (events.append(("dir", Path(p).name)), real_fsync_dir(p)))
    monkeypatch.setattr(checkpoints.os, "rename", lambda s, d: (events.append(("rename", Path(d).name)),
                                                                real_rename(s, d)))
    train(tiny_config(faces_folder, tmp_path, max_steps=1))
    step = [e for e in events if e[0] != "file" or e[1].startswith(".step-")]
    assert step == [("file", ".step-00000001"), ("file", ".step-00000001"), ("file", ".step-00000001"),
                    ("rename", "step-00000001"), ("dir", "checkpoints")]


def test_train_size_below_the_coarsest_stride_names_size():
    with pytest.raises(ValueError, match=r"image_size \(--size\) must be at least 32, the coarsest stride of "
                                         r"preset 'mobilenet0.25', got 1"):
        TrainConfig(image_size=1)


@pytest.mark.slow
def test_output_files_that_are_inputs_are_refused_before_training(faces_folder, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "weights.safetensors").symlink_to(faces_folder / "label.txt")
    with pytest.raises(ValueError, match="weights.safetensors is an input"):
        train(tiny_config(faces_folder, out))
    assert not (out / "log.jsonl").exists()


@pytest.mark.slow
def test_init_weights_that_are_a_folder_or_another_preset_are_named(faces_folder, tmp_path):
    from rfcore.weights import DEFAULT_WEIGHTS

    with pytest.raises(IsADirectoryError, match=rf"weights {tmp_path} is a folder, not a file .*--init-weights"):
        train(tiny_config(faces_folder, tmp_path / "run", init_weights=str(tmp_path)))
    with pytest.raises(ValueError, match=rf"{DEFAULT_WEIGHTS}: these weights are mobilenet0.25 \(file metadata\), "
                                         r"you asked for resnet50"):
        train(tiny_config(faces_folder, tmp_path / "run", init_weights="shipped", preset="resnet50"))
