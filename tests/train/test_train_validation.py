"""Validation during training (--val), size-band scores, frozen batch norm for fine-tuning, and the run plots."""

import json

import numpy as np
import pytest
import torch
from builders import assert_same_tensors, log_terms, read_tensors, tiny_config

from rfcore.cli import main
from rfcore.config import get_config
from rfcore.data.sample import FaceSample
from rfcore.data.synthetic import VALIDATION, validation_set
from rfcore.evaluation import ImagePredictions, truth_from_samples
from rfcore.evaluation.run import size_band_summary
from rfcore.evaluation.truth import SIZE_BANDS, with_size_bands
from rfcore.loss import multitask_loss
from rfcore.matching import TargetAssigner
from rfcore.model import RetinaFace
from rfcore.model.retinaface import MESH_PARAMS
from rfcore.train import loop as training
from rfcore.train.config import FROM_SCRATCH, TrainConfig
from rfcore.train.log import step_records, validation_records
from rfcore.train.loop import build_model, train
from rfcore.train.schedule import make_optimizer
from rfcore.train.validation import Validator, validation_samples
from rfcore.viz.train import plot_run, plot_validation
from rfcore.weights_io import read_metadata, save_weights

# ---------------------------------------------------------------- size bands


def sample_with_sizes(sizes, image_size=300):
    """One image with square faces of the given sides in a row, landmarks at fixed fractions of each box."""
    boxes, x = [], 2.0
    for size in sizes:
        boxes.append([x, 5.0, x + size, 5.0 + size])
        x += size + 2
    boxes = np.array(boxes, np.float32)
    fractions = np.array([[0.3, 0.3], [0.7, 0.3], [0.5, 0.5], [0.35, 0.75], [0.65, 0.75]], np.float32)
    landmarks = boxes[:, None, :2] + fractions[None] * (boxes[:, None, 2:] - boxes[:, None, :2])
    return FaceSample(np.zeros((image_size, image_size, 3), np.uint8), boxes, landmarks)


def test_size_bands_split_faces_by_their_longer_side():
    truth = with_size_bands(truth_from_samples([sample_with_sizes([10, 23.9, 24, 63.9, 64, 150])]))
    assert truth.subsets["small"][0].tolist() == [True, True, False, False, False, False]
    assert truth.subsets["medium"][0].tolist() == [False, False, True, True, False, False]
    assert truth.subsets["large"][0].tolist() == [False, False, False, False, True, True]
    assert truth.subsets["all"][0].all() and set(SIZE_BANDS) == {"small", "medium", "large"}


def test_size_band_summary_by_hand():
    sample = sample_with_sizes([20, 40, 100])
    truth = truth_from_samples([sample])
    shifted = sample.landmarks + np.array([2.0, 0.0], np.float32)  # every point 2 pixels to the right
    # the small face is missed, a false positive scores below the found faces
    boxes = np.concatenate([sample.boxes[1:], [[200, 200, 240, 240]]])
    predictions = {truth.names[0]: ImagePredictions.from_xyxy(boxes, np.array([0.9, 0.8, 0.1]), shifted[[1, 2, 0]])}

    summary = size_band_summary(truth, predictions)

    assert summary["faces"] == {"all": 3, "small": 1, "medium": 1, "large": 1}
    assert summary["ap"]["small"] == 0.0 and summary["ap"]["medium"] == 1.0 and summary["ap"]["large"] == 1.0
    assert summary["ap"]["all"] == pytest.approx(2 / 3)  # precision 1 up to recall 2/3
    assert summary["nme"]["medium"] == pytest.approx(2 / 40) and summary["nme"]["large"] == pytest.approx(2 / 100)
    assert summary["nme"]["small"] is None  # no small face found: no error to average
    assert summary["nme"]["all"] == pytest.approx((2 / 40 + 2 / 100) / 2)
    assert summary["detections"] == 3
    json.dumps(summary)  # JSON-ready


def test_the_validation_set_is_held_out_and_covers_every_band():
    assert VALIDATION["length"] >= 200 and VALIDATION["seed"] != TrainConfig().seed
    assert (VALIDATION["min_face"], VALIDATION["max_face"]) == (10.0, 200.0)
    head = [validation_set(24)[i] for i in range(24)]
    truth = with_size_bands(truth_from_samples(head))
    assert all(truth.face_count(band) >= 10 for band in SIZE_BANDS)
    assert len(validation_set(3)) == 3 and len(validation_set(10_000)) == VALIDATION["length"]


# ---------------------------------------------------------------- bad validation sets


def test_a_missing_validation_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        validation_samples(str(tmp_path / "nowhere" / "label.txt"))


def test_a_validation_set_without_faces_is_refused(tmp_path):
    (tmp_path / "images").mkdir()
    import cv2

    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.zeros((40, 40, 3), np.uint8))
    (tmp_path / "label.txt").write_text("# a.png\n")
    with pytest.raises(ValueError, match=f"--val {tmp_path}.*no face"):
        validation_samples(str(tmp_path))


def test_the_command_line_names_a_missing_validation_file(faces_folder, tmp_path, capsys):  # noqa: F811
    status = main(["train", "--data", str(faces_folder), "--val", str(tmp_path / "missing.txt"), "--quiet",
                   "--size", "64", "--epochs", "1", "--out", str(tmp_path / "run")])
    assert status == 2
    assert "missing.txt" in capsys.readouterr().err


# ---------------------------------------------------------------- validation in a run


def test_validator_leaves_the_network_as_it_was(faces_folder):  # noqa: F811
    torch.manual_seed(0)
    network = RetinaFace.from_config(get_config("mobilenet0.25")).train()
    before = {k: v.clone() for k, v in network.state_dict().items()}
    result = Validator(validation_samples(str(faces_folder)), "mobilenet0.25")(network)
    assert network.training
    assert_same_tensors(network.state_dict(), before)
    assert result["faces"]["all"] == 12 and set(result["ap"]) == {"all", "small", "medium", "large"}


@pytest.mark.slow
def test_a_run_validates_every_n_steps_and_at_the_end(faces_folder, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    train(tiny_config(faces_folder, out, val=str(faces_folder), val_every=4))
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in validation_records(records)] == [4, 6]
    assert [r["step"] for r in step_records(records)] == [1, 2, 3, 4, 5, 6]
    assert records.index(validation_records(records)[0]) == 4  # right after step 4's line
    assert validation_records(records)[-1]["validation"]["faces"]["all"] == 12


@pytest.mark.slow
def test_a_run_interrupted_during_validation_resumes_exactly(faces_folder, tmp_path, monkeypatch):  # noqa: F811
    config = {"val": str(faces_folder), "val_every": 3, "checkpoint_every": 0}
    uninterrupted = train(tiny_config(faces_folder, tmp_path / "a", **config))

    calls, real = [], Validator.__call__

    def interrupted(self, network):
        calls.append(1)
        if len(calls) == 2:  # the validation at step 6, after step 3's checkpoint
            raise KeyboardInterrupt
        return real(self, network)

    monkeypatch.setattr(Validator, "__call__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(faces_folder, tmp_path / "b", **config))
    monkeypatch.setattr(Validator, "__call__", real)
    resumed = train(tiny_config(faces_folder, tmp_path / "b", resume=True, **config))

    assert_same_tensors(read_tensors(resumed.weights), read_tensors(uninterrupted.weights))
    assert without_seconds(tmp_path / "b") == without_seconds(tmp_path / "a")


def without_seconds(out):
    records = log_terms(out)
    for record in validation_records(records):
        del record["validation"]["seconds"]
    return records


@pytest.mark.slow
def test_the_run_plots_read_losses_and_validation(faces_folder, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    train(tiny_config(faces_folder, out, val=str(faces_folder), val_every=2))
    fig = plot_run(out, window=2)
    assert len(fig.axes) == 6  # four loss terms, AP and NME
    assert len(plot_validation(json_lines(out)).axes[0].lines) == 4  # all faces and three bands
    plain = tmp_path / "plain"
    train(tiny_config(faces_folder, plain, max_steps=2))
    assert len(plot_run(plain, window=2).axes) == 4
    with pytest.raises(ValueError, match="--val"):
        plot_validation(json_lines(plain))
    with pytest.raises(FileNotFoundError, match="log.jsonl"):
        plot_run(tmp_path / "empty")


def json_lines(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- fine-tuning with frozen batch norm


def folded_weights(path):
    """Weights whose batch norms are identities plus a bias, as the shipped file's (folded) are."""
    torch.manual_seed(5)
    model = RetinaFace.from_config(get_config("mobilenet0.25"))
    state = model.state_dict()
    for key in state:
        if key.endswith("running_mean"):
            state[key] = torch.zeros_like(state[key])
        elif key.endswith("running_var") or (key.endswith(".weight") and key.replace("weight", "running_var") in state):
            state[key] = torch.ones_like(state[key])
    save_weights(state, path)
    return path


def one_batch(faces_folder, cfg):  # noqa: F811
    from rfcore.data import TrainTransform, WiderFace, face_loader

    dataset = WiderFace(faces_folder, TrainTransform(size=64), seed=0)
    return next(iter(face_loader(dataset, cfg, 4, seed=0)))


@pytest.mark.parametrize("train_bn", [False, True])
def test_fine_tuning_freezes_batch_norm_unless_asked(faces_folder, tmp_path, train_bn):  # noqa: F811
    init = folded_weights(tmp_path / "folded.safetensors")
    train_cfg = TrainConfig(init_weights=str(init), image_size=64, train_bn=train_bn)
    cfg = train_cfg.loss_preset()
    model = build_model(train_cfg, cfg, torch.device("cpu"))
    batch = one_batch(faces_folder, cfg)
    targets = TargetAssigner(cfg, (64, 64))(batch.faces)

    reference = build_model(TrainConfig(), cfg, torch.device("cpu")).detector
    reference.load_state_dict(model.detector.state_dict())
    with torch.no_grad():
        eval_loss = multitask_loss(reference.eval()(batch.images), targets, cfg).total.item()
    norms = [name for name, m in model.detector.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = {k: v.clone() for k, v in model.detector.state_dict().items() if k.rsplit(".", 1)[0] in norms}
    assert len(before) == 5 * len(norms) > 0  # weight, bias, running mean and variance, batches seen
    stem_before = model.detector.body.stage1[0][0].weight.clone()
    optimizer = make_optimizer(model, train_cfg)
    step_loss = training.train_step(model, batch, TargetAssigner(cfg, (64, 64)), cfg, optimizer, 1e-3)[0].item()

    after = model.detector.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    if train_bn:  # batch statistics replace the stored ones: the first loss is not the loaded network's
        assert changed and step_loss != pytest.approx(eval_loss, rel=1e-3)
    else:  # the first step computes exactly what the loaded network computes; batch norm and the stem stay
        assert not changed
        stem = next(m for m in model.detector.modules() if isinstance(m, torch.nn.Conv2d))
        assert stem.weight is model.detector.body.stage1[0][0].weight and not stem.weight.requires_grad
        assert step_loss == pytest.approx(eval_loss, rel=1e-5)
        assert torch.equal(model.detector.body.stage1[0][0].weight, stem_before)
        assert all(not m.training for m in model.detector.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_from_scratch_batch_norm_always_trains():
    assert not TrainConfig().frozen_bn and not TrainConfig(train_bn=True).frozen_bn
    assert TrainConfig(init_weights="shipped").frozen_bn and not TrainConfig(init_weights="x", train_bn=True).frozen_bn


# ---------------------------------------------------------------- the recipe's command


@pytest.mark.parametrize("train_cfg", [FROM_SCRATCH, TrainConfig(data="x.txt", step_epochs=(3, 4), mesh=True, lr=0.5)])
def test_command_line_gives_back_the_config(train_cfg):
    import argparse
    import shlex

    from rfcore.cli.train import add_arguments, command_line

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    command = command_line(train_cfg)
    assert command.startswith("rfcore train --data ")
    assert TrainConfig.from_args(parser.parse_args(shlex.split(command)[2:])) == train_cfg


@pytest.mark.slow
def test_a_pre_trained_mesh_decoder_is_loaded_and_kept(faces_folder, tmp_path):  # noqa: F811
    from rfcore.weights import DEFAULT_WEIGHTS, MESH_DECODER_FILE, load_mesh_decoder

    train_cfg = TrainConfig(mesh=True, mesh_decoder="shipped", image_size=64)
    model = build_model(train_cfg, train_cfg.loss_preset(), torch.device("cpu"))
    shipped = load_mesh_decoder(DEFAULT_WEIGHTS.with_name(MESH_DECODER_FILE)).state_dict()
    assert_same_tensors(model.decoder.state_dict(), shipped)
    assert not any(p.requires_grad for p in model.decoder.parameters())
    result = train(tiny_config(faces_folder, tmp_path / "run", mesh=True, mesh_decoder="shipped", max_steps=2))
    assert_same_tensors(read_tensors(result.weights.with_name(MESH_DECODER_FILE)), shipped)  # unchanged by training
    assert read_metadata(result.weights)["mesh_head"] == f"{MESH_PARAMS} values per anchor"
    assert read_metadata(result.weights.with_name(MESH_DECODER_FILE))["decoder"] == model.decoder.layout
    with pytest.raises(FileNotFoundError, match="nowhere.safetensors"):
        build_model(TrainConfig(mesh=True, mesh_decoder=str(tmp_path / "nowhere.safetensors")),
                    train_cfg.loss_preset(), torch.device("cpu"))


@pytest.mark.slow
def test_the_progress_bar_shows_the_validation(faces_folder, tmp_path, monkeypatch):  # noqa: F811
    import io

    from tqdm import tqdm

    screen = io.StringIO()
    monkeypatch.setattr(training, "progress_bar", lambda **options: tqdm(file=screen, mininterval=0,
                                                                       **{**options, "disable": False}))
    train(tiny_config(faces_folder, tmp_path / "run", quiet=False, val=str(faces_folder), val_every=6))
    last = screen.getvalue().split("\r")[-1]
    assert "6/6" in last and "val AP" in last and "NME" in last and "total" in last
