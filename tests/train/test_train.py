"""rfcore.train: schedule, data order, checkpoints, exact resume and divergence, on a six-image folder."""

import argparse
import hashlib
import json
import math
import shutil
import sys
from pathlib import Path

import pytest
import torch
from builders import assert_same_tensors, log_terms, read_tensors, tiny_config, train_until_crash
from safetensors.torch import load_file

from rfcore.cli import main
from rfcore.cli.train import add_arguments
from rfcore.config import get_config
from rfcore.files import LOCK_FILE, FolderBusy, folder_lock
from rfcore.loss import LossTerms
from rfcore.model import RetinaFace
from rfcore.train import loop as training
from rfcore.train.checkpoint import checkpoint_dirs
from rfcore.train.config import TrainConfig
from rfcore.train.data import build_dataset
from rfcore.train.distributed import epoch_indices
from rfcore.train.loop import TrainingDiverged, build_model, train
from rfcore.train.schedule import learning_rate, schedule_epochs
from rfcore.weights_io import read_metadata, save_weights

STEPS_PER_EPOCH = 3  # six images, batch 2


# ---------------------------------------------------------------- schedule


def test_paper_schedule_marks_scale_with_the_epoch_count():
    assert schedule_epochs(TrainConfig(epochs=80)) == (5.0, (55.0, 68.0))
    assert schedule_epochs(TrainConfig(epochs=16)) == (1.0, (11.0, 13.6))
    explicit = TrainConfig(epochs=16, warmup_epochs=2, step_epochs=(10, 12))
    assert schedule_epochs(explicit) == (2.0, (10.0, 12.0))


def test_learning_rate_by_hand():
    cfg = TrainConfig(epochs=16)  # warm-up 1 epoch, steps at 11 and 13.6 epochs; 10 steps per epoch
    expected = {
        0: 1e-3,  # warm-up starts at warmup_lr
        5: 1e-3 + 0.5 * (1e-2 - 1e-3),  # halfway through the warm-up
        10: 1e-2,  # warm-up over
        109: 1e-2,
        110: 1e-3,  # epoch 11: / 10
        135: 1e-3,
        136: 1e-4,  # epoch 13.6: / 10 again
        159: 1e-4,
    }
    for step, lr in expected.items():
        assert learning_rate(step, 10, cfg) == pytest.approx(lr, rel=1e-12), step


def test_learning_rate_without_warm_up():
    cfg = TrainConfig(epochs=4, warmup_epochs=0, step_epochs=(1,), lr=0.5, lr_decay=0.2)
    assert [learning_rate(s, 2, cfg) for s in range(4)] == pytest.approx([0.5, 0.5, 0.1, 0.1])


# ---------------------------------------------------------------- data order


def test_epoch_order_is_a_function_of_seed_and_epoch():
    first = epoch_indices(10, seed=3, epoch=0)
    assert sorted(first) == list(range(10))
    assert epoch_indices(10, seed=3, epoch=0) == first
    assert epoch_indices(10, seed=3, epoch=1) != first
    assert epoch_indices(10, seed=4, epoch=0) != first


def test_ranks_share_an_epoch_evenly_and_cover_every_image():
    whole = epoch_indices(7, seed=0, epoch=2)
    parts = [epoch_indices(7, seed=0, epoch=2, rank=r, world_size=3) for r in range(3)]
    assert [len(p) for p in parts] == [3, 3, 3]
    assert set().union(*parts) == set(range(7))
    # rank r takes every third image of the epoch's order, wrapping around to pad
    padded = whole + whole[:2]
    assert parts == [padded[0::3], padded[1::3], padded[2::3]]


# ---------------------------------------------------------------- config and command line


def test_command_line_options_fill_the_config():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--data", "synthetic", "--epochs", "8", "--step-epochs", "5", "7", "--size", "320",
                              "--init-weights", "shipped", "--resume", "--lr", "0.02"])
    cfg = TrainConfig.from_args(args)
    assert (cfg.data, cfg.epochs, cfg.step_epochs, cfg.image_size) == ("synthetic", 8, (5.0, 7.0), 320)
    assert (cfg.init_weights, cfg.resume, cfg.lr) == ("shipped", True, 0.02)
    defaults = TrainConfig.from_args(parser.parse_args(["--data", "x"]))
    assert defaults == TrainConfig(data="x")
    assert (defaults.momentum, defaults.weight_decay, defaults.warmup_lr, defaults.lr) == (0.9, 5e-4, 1e-3, 1e-2)


@pytest.mark.parametrize("field, value", [("epochs", 0), ("batch_size", -1), ("momentum", 1.0), ("lr", 0.0),
                                          ("preset", "nope"), ("device", "tpu")])
def test_bad_settings_are_refused_by_name(field, value):
    with pytest.raises(ValueError, match=field if field != "preset" else "unknown preset"):
        TrainConfig(**{field: value})


def test_synthetic_data_is_wired_to_synthetic_faces():
    cfg = TrainConfig(data="synthetic", num_images=2, image_size=64)
    dataset = build_dataset(cfg, cfg.loss_preset())
    assert type(dataset).__name__ == "SyntheticFaces" and len(dataset) == 2
    assert dataset[0].image.shape == (64, 64, 3)


def test_missing_synthetic_module_gives_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "rfcore.data.synthetic", None)
    with pytest.raises(ImportError, match="--data synthetic needs rfcore.data.synthetic"):
        build_dataset(TrainConfig(data="synthetic"), get_config("mobilenet0.25"))


def test_fine_tuning_starts_from_the_given_weights(tmp_path):
    cfg = get_config("mobilenet0.25")
    torch.manual_seed(123)
    start = RetinaFace.from_config(cfg).state_dict()
    save_weights(start, tmp_path / "start.safetensors")
    model = build_model(TrainConfig(init_weights=str(tmp_path / "start.safetensors")), cfg, torch.device("cpu"))
    assert_same_tensors(model.detector.state_dict(), start)
    assert model.training and model.decoder is None
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        build_model(TrainConfig(init_weights=str(tmp_path / "missing.safetensors")), cfg, torch.device("cpu"))


# ---------------------------------------------------------------- runs


@pytest.mark.slow
def test_a_run_writes_log_checkpoints_and_weights(faces_folder, tmp_path):
    out = tmp_path / "run"
    result = train(tiny_config(faces_folder, out))

    assert (result.step, result.finished) == (2 * STEPS_PER_EPOCH, True)
    assert result.weights == out / "weights.safetensors"
    log = log_terms(out)
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6] and [r["epoch"] for r in log] == [0, 0, 0, 1, 1, 1]
    assert all(r["images"] == 2 and set(LossTerms._fields) <= r.keys() and math.isfinite(r["total"]) for r in log)
    assert log[0]["lr"] == pytest.approx(1e-3)
    # checkpoints at steps 2, 3 (epoch end), 4, 6; the newest two are kept, no temporary folder is left
    assert [p.name for p in checkpoint_dirs(out)] == ["step-00000004", "step-00000006"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000004", "step-00000006"]
    newest = result.checkpoint
    state = json.loads((newest / "state.json").read_text())
    assert (state["step"], state["epoch"], state["batch_in_epoch"], state["steps_per_epoch"]) == (6, 2, 0, 3)
    assert state["config"]["image_size"] == 64
    optimizer = load_file(newest / "optimizer.safetensors")
    model = RetinaFace.from_config(get_config("mobilenet0.25"))
    params = dict(model.named_parameters())
    assert {k.removeprefix("momentum/weights/") for k in optimizer if k.startswith("momentum/")} == params.keys()
    assert optimizer["rng/torch"].dtype == torch.uint8
    assert_same_tensors(read_tensors(newest / "weights.safetensors"), read_tensors(result.weights))
    described = {"preset": "mobilenet0.25", "mesh_head": "none"}  # what loaders read (rfcore.weights.weights_metadata)
    assert read_metadata(result.weights).items() >= described.items()
    assert read_metadata(newest / "weights.safetensors").items() >= described.items()


@pytest.mark.slow
def test_a_run_logged_to_a_file_prints_progress_lines_between_validations(faces_folder, tmp_path, monkeypatch,
                                                                          capsys):
    from rfcore import progress

    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.0)  # a line at every step instead of every few seconds
    train(tiny_config(faces_folder, tmp_path / "run", quiet=False, epochs=1))
    err = capsys.readouterr().err  # not a terminal, as a log file
    assert "\r" not in err
    lines = [line for line in err.splitlines() if "step/s" in line]
    assert {f"{step}/{STEPS_PER_EPOCH}" for step in range(1, STEPS_PER_EPOCH + 1)} <= {
        line.split("| ")[1].split(" ")[0] for line in lines}
    assert "cls " in lines[-1] and "box " in lines[-1]  # the step's losses, not cut short


@pytest.mark.slow
def test_interrupted_and_resumed_run_ends_with_identical_weights(faces_folder, tmp_path):
    uninterrupted = train(tiny_config(faces_folder, tmp_path / "a"))

    train_until_crash(tiny_config(faces_folder, tmp_path / "b"), step=6)
    # step 5 was trained and logged, but the newest checkpoint is step 4: epoch 1, one batch in
    assert checkpoint_dirs(tmp_path / "b")[-1].name == "step-00000004"
    assert len(log_terms(tmp_path / "b")) == 5

    resumed = train(tiny_config(faces_folder, tmp_path / "b", resume=True))

    assert resumed.step == uninterrupted.step == 6
    assert_same_tensors(read_tensors(resumed.weights), read_tensors(uninterrupted.weights))
    assert_same_tensors(load_file(resumed.checkpoint / "optimizer.safetensors"),
                        load_file(uninterrupted.checkpoint / "optimizer.safetensors"))
    assert log_terms(tmp_path / "b") == log_terms(tmp_path / "a")  # step 5 logged once, same numbers


@pytest.mark.slow
def test_a_run_stopped_at_an_epoch_end_resumes_exactly(faces_folder, tmp_path):
    uninterrupted = train(tiny_config(faces_folder, tmp_path / "a", checkpoint_every=0))
    stopped = train(tiny_config(faces_folder, tmp_path / "b", checkpoint_every=0, max_steps=STEPS_PER_EPOCH))
    assert (stopped.step, stopped.finished) == (3, False)
    assert [p.name for p in checkpoint_dirs(tmp_path / "b")] == ["step-00000003"]

    resumed = train(tiny_config(faces_folder, tmp_path / "b", checkpoint_every=0, resume=True))

    assert (resumed.step, resumed.finished) == (6, True)
    assert_same_tensors(read_tensors(resumed.weights), read_tensors(uninterrupted.weights))


@pytest.mark.slow
def test_resume_refuses_a_run_with_other_settings_and_start_refuses_to_overwrite(faces_folder, tmp_path):
    train(tiny_config(faces_folder, tmp_path, max_steps=2))
    with pytest.raises(ValueError, match="pass --resume"):
        train(tiny_config(faces_folder, tmp_path))
    with pytest.raises(ValueError, match=r"other settings \(batch_size: 2 then, 3 now"):
        train(tiny_config(faces_folder, tmp_path, batch_size=3, resume=True))


def test_resume_with_nothing_to_resume_is_refused_and_leaves_no_folder(faces_folder, tmp_path):
    with pytest.raises(ValueError, match=rf"--resume: {tmp_path / 'new'} holds no checkpoint to continue from: "
                                         "drop --resume to start a new run there"):
        train(tiny_config(faces_folder, tmp_path / "new", resume=True, max_steps=1))
    assert not (tmp_path / "new").exists()


def sha256_tree(folder) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("resume", [False, True])
def test_a_finished_run_without_checkpoints_is_never_emptied(faces_folder, tmp_path, resume):
    out = tmp_path / "run"
    train(tiny_config(faces_folder, out, keep_checkpoints=1))
    shutil.rmtree(out / "checkpoints")  # pruned, as the shipped runs are
    before = sha256_tree(out)
    expected = "only a finished run: log.jsonl, weights.safetensors" if resume else \
        "holds a finished run \\(log.jsonl, weights.safetensors\\) without a checkpoint to resume"
    with pytest.raises(ValueError, match=f"{expected}.*choose a new --out"):
        train(tiny_config(faces_folder, out, resume=resume))
    assert sha256_tree(out) == before


@pytest.mark.slow
def test_a_second_run_into_a_busy_folder_stops_at_once_naming_the_first(faces_folder, tmp_path):
    out = tmp_path / "run"
    with folder_lock(out, "rfcore train"):
        (out / LOCK_FILE).write_text("4242\n")  # the PID another process would have written
        with pytest.raises(FolderBusy, match=rf"{out} is in use by another rfcore train \(PID 4242\)"):
            train(tiny_config(faces_folder, out))  # flock: two descriptors conflict even in one process
    assert not out.exists()  # the lock's folder, left empty, is removed
    assert train(tiny_config(faces_folder, out, max_steps=1)).step == 1
    assert not (out / LOCK_FILE).exists()


def nan_box_from_step(first_bad: int, monkeypatch):
    real_loss, calls = training.multitask_loss, []

    def loss(*args, **kwargs):
        terms = real_loss(*args, **kwargs)
        calls.append(1)
        if len(calls) < first_bad:
            return terms
        box = terms.box * math.nan
        return terms._replace(box=box, total=terms.total + box)

    monkeypatch.setattr(training, "multitask_loss", loss)


@pytest.mark.slow
def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(faces_folder, tmp_path, monkeypatch):
    nan_box_from_step(5, monkeypatch)
    with pytest.raises(TrainingDiverged, match=r"step 5: loss term 'box' is nan.*step-00000004"):
        train(tiny_config(faces_folder, tmp_path))

    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step-00000003", "step-00000004"]
    assert not (tmp_path / "weights.safetensors").exists()
    kept = read_tensors(checkpoint_dirs(tmp_path)[-1] / "weights.safetensors")
    assert all(torch.isfinite(t).all() for t in kept.values() if t.is_floating_point())
    assert [r["step"] for r in log_terms(tmp_path)] == [1, 2, 3, 4]


@pytest.mark.slow
def test_command_line_reports_divergence_with_status_1(faces_folder, tmp_path, monkeypatch, capsys):
    nan_box_from_step(1, monkeypatch)
    status = main(["train", "--data", str(faces_folder), "--out", str(tmp_path), "--size", "64", "--epochs", "1",
                            "--batch-size", "2", "--device", "cpu", "--quiet"])
    assert status == 1
    err = capsys.readouterr().err
    assert "step 1: loss term 'box' is nan" in err and "no checkpoint was written yet" in err


def test_command_line_reports_missing_data_with_status_2(tmp_path, capsys):
    status = main(["train", "--data", str(tmp_path / "nowhere" / "label.txt"), "--out", str(tmp_path), "--quiet"])
    assert status == 2
    assert "nowhere/label.txt does not exist" in capsys.readouterr().err


def test_ctrl_c_during_training_is_one_sentence_exit_130_and_the_checkpoints_stay(faces_folder, tmp_path, capsys,
                                                                                   monkeypatch):
    out = tmp_path / "run"
    real_step, calls = training.train_step, []

    def interrupted_at_step_5(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(training, "train_step", interrupted_at_step_5)
    argv = ["train", "--data", str(faces_folder), "--out", str(out), "--size", "64", "--epochs", "2",
            "--batch-size", "2", "--device", "cpu", "--threads", "1", "--quiet", "--checkpoint-every", "2"]
    assert main(argv) == 130
    last = out / "checkpoints" / "step-00000004"
    assert capsys.readouterr().err == (f"rfcore train: interrupted (Ctrl-C); the last checkpoint, {last}, is intact: "
                                       "continue with --resume\n")
    kept = sha256_tree(out)
    assert not (out / LOCK_FILE).exists() and "checkpoints/step-00000004/state.json" in kept
    monkeypatch.undo()
    assert main([*argv, "--resume"]) == 0
    assert json.loads((out / "log.jsonl").read_text().splitlines()[-1])["step"] == 6
