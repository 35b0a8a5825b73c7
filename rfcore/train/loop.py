"""Training RetinaFace [paper §4.2]: the run of a :class:`~rfcore.train.config.TrainConfig`, alone or under torchrun.

::

    rfcore train --data path/to/widerface/train/label.txt --out runs/wider
    torchrun --nproc_per_node 4 -m rfcore train --data path/to/label.txt --batch-size 8

:func:`train` repeats :func:`train_step` (target assignment, forward, Eq. 1 of
:func:`rfcore.loss.multitask_loss`, backward, SGD) at the rate of
:mod:`rfcore.train.schedule`, on the batches of :mod:`rfcore.train.data`. It writes
``log.jsonl``, ``weights.safetensors`` (and ``mesh_decoder.safetensors`` with
``--mesh``) and atomic checkpoints (:mod:`rfcore.train.checkpoint`) to ``--out``.
Everything a step depends on is in a checkpoint or a function of ``(seed, epoch)``,
so an interrupted run resumes to bit-identical weights on CPU. Under torchrun each
rank is one DistributedDataParallel replica and rank 0 writes. A loss or weight that
stops being finite raises :class:`TrainingDiverged`, keeping the last good checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from rfcore.config import RetinaFaceConfig
from rfcore.data import TrainBatch
from rfcore.files import DiskFull, append_line, folder_lock, format_bytes
from rfcore.loss import multitask_loss
from rfcore.matching import TargetAssigner
from rfcore.model import RetinaFace
from rfcore.progress import progress_bar
from rfcore.train.checkpoint import checkpoint_dirs, load_checkpoint, read_state, remove_stale, save_checkpoint
from rfcore.train.config import TrainConfig
from rfcore.train.data import build_dataset, epoch_batches, torch_threads
from rfcore.train.distributed import Ranks, average_batchnorm_stats, replicate, setup_ranks
from rfcore.train.log import TERMS, log_record, trim_log
from rfcore.train.model import TrainingModel, freeze_for_fine_tuning
from rfcore.train.run_folder import check_outputs, check_resumable, check_run_folder
from rfcore.train.schedule import learning_rate, make_optimizer
from rfcore.train.validation import Validator, validation_samples
from rfcore.weights import MESH_DECODER_FILE, load_detector_weights, load_mesh_decoder, resolve_weights
from rfcore.weights_io import save_weights

# ---------------------------------------------------------------- model and step


def build_model(train_cfg: TrainConfig, cfg: RetinaFaceConfig, device: torch.device) -> TrainingModel:
    """The network (and mesh decoder), seeded by ``train_cfg.seed``, ``train_cfg.init_weights`` loaded, in train mode.

    Starting from weights, batch norm is frozen unless ``train_cfg.train_bn`` (:attr:`TrainConfig.frozen_bn`).
    """
    torch.manual_seed(train_cfg.seed)
    detector = RetinaFace.from_config(cfg, mesh_head=train_cfg.mesh)
    model = TrainingModel.build(detector, train_cfg.mesh, cfg.pixel_mean_bgr, train_cfg.mesh_anchors,
                                train_cfg.mesh_landmarks)
    if train_cfg.init_weights is not None:
        load_detector_weights(detector, resolve_weights(train_cfg.init_weights, "--init-weights"), train_cfg.preset)
    if train_cfg.mesh and train_cfg.mesh_decoder is not None:
        decoder = resolve_weights(train_cfg.mesh_decoder, "--mesh-decoder", MESH_DECODER_FILE)
        model.decoder.load_state_dict(load_mesh_decoder(decoder).state_dict())
        model.decoder.requires_grad_(False)  # pre-trained and kept, as the paper's [§4.2]
    model = model.to(device).train()
    if train_cfg.frozen_bn:
        freeze_for_fine_tuning(detector)
    return model


class TrainingDiverged(RuntimeError):
    """A loss term or the weights stopped being finite; the message names the step and the last good checkpoint."""


class TrainingDiskFull(OSError):
    """The device of ``--out`` filled up; the message names the file, the space needed and the last good checkpoint."""


def train_step(
    net: TrainingModel | DistributedDataParallel,
    batch: TrainBatch,
    assigner: TargetAssigner,
    cfg: RetinaFaceConfig,
    optimizer: torch.optim.Optimizer,
    lr: float,
    world_size: int = 1,
) -> torch.Tensor:
    """One SGD step on a batch: targets, forward, Eq. 1, backward, update.

    Args:
        net: The :class:`~rfcore.train.model.TrainingModel` (possibly wrapped in DDP), in train mode.
        batch: Images and faces, on any device.
        assigner: Targets for the batch's image size, on the network's device.
        cfg: Loss weights and OHEM ratio (:meth:`TrainConfig.loss_preset`).
        optimizer: Updated in place.
        lr: Learning rate of this step.
        world_size: Ranks the loss terms are averaged over.

    Returns:
        ``(6,)`` the loss terms ``total, cls, box, pts, pixel`` (:data:`TERMS`)
        averaged over ranks, then the images in the step on all ranks.

    Raises:
        TrainingDiverged: If a term is NaN or infinite; the weights are left untouched.
    """
    targets = assigner(batch.faces)
    output, pixel = net(batch.images.to(assigner.anchors.device, non_blocking=True), targets, batch.faces)
    terms = multitask_loss(output, targets, cfg, pixel)
    values = torch.stack([*(t.detach().float() for t in terms), terms.total.new_tensor(len(batch.images))])
    if world_size > 1:
        dist.all_reduce(values)
        values[: len(TERMS)] /= world_size
    bad = [name for name, value in zip(TERMS, values.tolist()) if not math.isfinite(value)]
    if bad:
        raise TrainingDiverged(f"loss term {bad[-1]!r} is {values[TERMS.index(bad[-1])].item()}")
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    terms.total.backward()
    optimizer.step()
    return values.cpu()


# ---------------------------------------------------------------- the run


@dataclass(frozen=True)
class TrainResult:
    """How a run ended.

    Attributes:
        weights: The final weights file (``out/weights.safetensors``).
        checkpoint: The newest checkpoint folder, or ``None``.
        step: Steps taken in total (including those before a resume).
        finished: All epochs done (False when ``max_steps`` stopped the run).
        terms: Loss terms of the last step of this process's run (empty if it took none).
    """

    weights: Path
    checkpoint: Path | None
    step: int
    finished: bool
    terms: dict


def train(train_cfg: TrainConfig) -> TrainResult:
    """Train a RetinaFace as ``train_cfg`` says, alone or as one rank under ``torchrun``.

    Returns:
        The :class:`TrainResult` (the same on every rank).

    Raises:
        TrainingDiverged: If the loss or the weights stop being finite.
        TrainingDiskFull: If the device of ``out`` fills up; the last good
            checkpoint is kept.
        FileNotFoundError, ValueError: For missing data or weights, an output
            file that is an input, a finished run in ``out`` (:func:`~rfcore.train.run_folder.check_run_folder`),
            or a checkpoint that does not fit the config.
        rfcore.files.FolderBusy: If another process trains into ``out``.
    """
    check_outputs(train_cfg)
    ranks = setup_ranks(train_cfg.device, train_cfg.processes)
    lock = folder_lock(train_cfg.out, "rfcore train") if ranks.rank == 0 else contextlib.nullcontext()
    try:
        with lock:
            check_run_folder(train_cfg)
            return _run(train_cfg, ranks)
    except DiskFull as err:
        raise _disk_full(err, Path(train_cfg.out)) from None
    finally:
        if ranks.world_size > 1:
            dist.destroy_process_group()


def _disk_full(err: DiskFull, out: Path) -> TrainingDiskFull:
    last = checkpoint_dirs(out)
    kept = f"the last good checkpoint is {last[-1]}" if last else "no checkpoint was written yet"
    needed = "" if err.needed is None else f" (needed {format_bytes(err.needed)})"
    return TrainingDiskFull(f"no space left on the device while writing {err.path}{needed}; training stopped, "
                            f"{kept}: free some space and continue with --resume")


class _Run(NamedTuple):
    """What the loop of :func:`_run` works on."""

    train_cfg: TrainConfig
    ranks: Ranks
    cfg: RetinaFaceConfig
    model: TrainingModel
    optimizer: torch.optim.SGD
    steps_per_epoch: int
    validator: Validator | None
    status: dict


def _run(train_cfg: TrainConfig, ranks: Ranks) -> TrainResult:
    if train_cfg.threads:
        torch.set_num_threads(train_cfg.threads)
    cfg = train_cfg.loss_preset()
    dataset = build_dataset(train_cfg, cfg)
    num_samples = min(len(dataset), train_cfg.num_images or len(dataset))
    if num_samples == 0:
        raise ValueError(f"no training images in {train_cfg.data}")
    steps_per_epoch = math.ceil(math.ceil(num_samples / ranks.world_size) / train_cfg.batch_size)
    model = build_model(train_cfg, cfg, ranks.device)
    optimizer = make_optimizer(model, train_cfg)
    run = _Run(train_cfg, ranks, cfg, model, optimizer, steps_per_epoch, _validator(train_cfg, ranks), {})
    step, checkpoint = _start(run)
    net = replicate(model, train_cfg.mesh) if ranks.world_size > 1 else model
    assigner = TargetAssigner(cfg, (cfg.train_size, cfg.train_size), ranks.device)
    last_step = min(train_cfg.epochs * steps_per_epoch, train_cfg.max_steps or math.inf)
    # in a log file too: a line every few seconds between validations (rfcore.progress)
    bar = progress_bar(total=last_step, initial=step, unit="step", disable=train_cfg.quiet or ranks.rank > 0)
    values, log = None, Path(train_cfg.out) / "log.jsonl"
    with bar:
        while step < last_step:
            epoch = step // steps_per_epoch
            batches = epoch_batches(dataset, num_samples, train_cfg, cfg, epoch, step - epoch * steps_per_epoch, ranks)
            for batch in batches:
                started, lr = time.perf_counter(), learning_rate(step, steps_per_epoch, train_cfg)
                try:
                    values = train_step(net, batch, assigner, cfg, optimizer, lr, ranks.world_size)
                except TrainingDiverged as err:
                    raise _diverged(step + 1, str(err), checkpoint) from None
                step += 1
                record = log_record(step, epoch, lr, values, time.perf_counter() - started)
                _report(run, bar, log, record)
                if train_cfg.val is not None and (step % train_cfg.val_every == 0 or step == last_step):
                    _validate(run, bar, log, step)  # before the checkpoint: a resume from it has this record
                if _checkpoint_due(train_cfg, step, steps_per_epoch, last_step):
                    checkpoint = _checkpoint(run, step, record)
                if step == last_step:
                    break
    return _finish(run, step, checkpoint, values)


def _checkpoint_due(train_cfg: TrainConfig, step: int, steps_per_epoch: int, last_step: int) -> bool:
    """At the last step, at every epoch end and every ``checkpoint_every`` steps."""
    every = train_cfg.checkpoint_every
    return step == last_step or step % steps_per_epoch == 0 or (every > 0 and step % every == 0)


def _start(run: _Run) -> tuple[int, Path | None]:
    """Step and checkpoint to start from: the newest checkpoint with ``resume``, else step 0."""
    train_cfg, out = run.train_cfg, Path(run.train_cfg.out)
    found = checkpoint_dirs(out)  # checked by check_run_folder: with resume, at least one
    if run.ranks.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        for folder in remove_stale(out):
            _message(run, f"removed {folder}, a checkpoint an interrupted run left half-written", warning=True)
    if not found:
        return 0, None
    state = read_state(found[-1])
    check_resumable(state, train_cfg, run.ranks.world_size, found[-1])
    load_checkpoint(found[-1], run.model.saved_modules(), run.optimizer)
    if run.ranks.rank == 0:
        note = trim_log(out / "log.jsonl", state["step"])
        if note:
            _message(run, note, warning=True)
        _message(run, f"resuming {found[-1]} at step {state['step']} (epoch {state['epoch']})")
    return state["step"], found[-1]


def _report(run: _Run, bar, log: Path, record: dict) -> None:
    """Progress bar and log line of a step (rank 0 only)."""
    bar.update(1)
    if run.ranks.rank:
        return
    run.status["losses"] = (f"epoch {record['epoch']} lr {record['lr']:.2e} "
                            + " ".join(f"{name} {record[name]:.3f}" for name in TERMS))
    bar.set_postfix_str(run.status["losses"] + run.status.get("validation", ""), refresh=False)
    if record["step"] % run.train_cfg.log_every == 0:
        append_line(log, json.dumps(record))


def _validator(train_cfg: TrainConfig, ranks: Ranks) -> Validator | None:
    """The :class:`~rfcore.train.validation.Validator` of ``--val`` on rank 0, with its images loaded; else ``None``."""
    if train_cfg.val is None or ranks.rank:
        return None
    with torch_threads(1):
        samples = validation_samples(train_cfg.val, train_cfg.val_images, progress=not train_cfg.quiet)
    return Validator(samples, train_cfg.preset)


def _validate(run: _Run, bar, log: Path, step: int) -> None:
    """Score the network on the validation set (rank 0, the only one with a validator); a log line, the bar.

    Every rank calls it: the batch-norm statistics are first averaged over the ranks, as in the weights that a
    checkpoint or the end of the run writes, so that the scores logged are those of the weights saved.
    """
    average_batchnorm_stats(run.model, run.ranks.world_size)
    if run.validator is None:
        return
    result = run.validator(run.model.detector)
    append_line(log, json.dumps({"step": step, "validation": result}))
    ap, nme = result["ap"]["all"], result["nme"]["all"]
    run.status["validation"] = f" | val AP {ap:.3f}" + ("" if nme is None else f" NME {100 * nme:.1f}%")
    bar.set_postfix_str(run.status["losses"] + run.status["validation"])


def _checkpoint(run: _Run, step: int, record: dict) -> Path:
    """Average batch-norm statistics, check the weights and (rank 0) write a checkpoint."""
    _sync_and_check(run, step)
    folder = Path(run.train_cfg.out) / "checkpoints" / f"step-{step:08d}"
    if run.ranks.rank == 0:
        state = {
            "step": step,
            "epoch": step // run.steps_per_epoch,
            "batch_in_epoch": step % run.steps_per_epoch,
            "steps_per_epoch": run.steps_per_epoch,
            "world_size": run.ranks.world_size,
            "rng": {"torch": "optimizer.safetensors rng/torch",
                    "numpy": "order default_rng([seed, epoch]), augmentation default_rng([seed, epoch, index])",
                    "seed": run.train_cfg.seed},
            "last_step": record,
            "config": run.train_cfg.to_dict(),
        }
        save_checkpoint(run.train_cfg.out, run.model.saved_modules(), run.optimizer, state, run.train_cfg.keep_checkpoints,
                        run.model.file_metadata(run.train_cfg.preset))
    if run.ranks.world_size > 1:
        dist.barrier()  # the checkpoint exists before any rank moves on
    return folder


def _sync_and_check(run: _Run, step: int) -> None:
    average_batchnorm_stats(run.model, run.ranks.world_size)
    bad = [name for name, tensor in run.model.state_dict().items()
           if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        last = checkpoint_dirs(Path(run.train_cfg.out))
        raise _diverged(step, f"weights {bad[:3]} are no longer finite", last[-1] if last else None)


def _diverged(step: int, what: str, checkpoint: Path | None) -> TrainingDiverged:
    kept = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint was written yet"
    return TrainingDiverged(f"step {step}: {what}; stopped without saving, {kept} (lower --lr and resume)")


def _finish(run: _Run, step: int, checkpoint: Path | None, values: torch.Tensor | None) -> TrainResult:
    """Write the final weights (and, with ``save_all_ranks``, every rank's): ``weights`` and ``mesh_decoder``."""
    train_cfg, out = run.train_cfg, Path(run.train_cfg.out)
    _sync_and_check(run, step)
    files = run.model.file_metadata(train_cfg.preset)
    for name, module in run.model.saved_modules().items():
        metadata = {**files[name], "step": str(step), "source": "rfcore.train"}
        if run.ranks.rank == 0:
            save_weights(module.state_dict(), out / f"{name}.safetensors", metadata)
        if train_cfg.save_all_ranks:
            save_weights(module.state_dict(), out / f"{name}.rank{run.ranks.rank}.safetensors", metadata)
    finished = step >= train_cfg.epochs * run.steps_per_epoch
    _message(run, f"{'finished' if finished else 'stopped'} at step {step}{run.status.get('validation', '')}: "
                  f"weights in {out / 'weights.safetensors'}")
    terms = {} if values is None else dict(zip(TERMS, values.tolist()))
    return TrainResult(out / "weights.safetensors", checkpoint, step, finished, terms)


def _message(run: _Run, text: str, warning: bool = False) -> None:
    """Print ``text`` on rank 0 unless ``quiet``; a ``warning`` (a file repaired on the way) even then."""
    if run.ranks.rank == 0 and (warning or not run.train_cfg.quiet):
        print(f"rfcore train: {text}", file=sys.stderr, flush=True)

