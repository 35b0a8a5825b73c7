"""Training RetinaFace [paper §4.2]: SGD, warm-up and step schedule, exact resume, torchrun DDP.

::

    rfcore train --data path/to/widerface/train/label.txt --out runs/wider
    rfcore train --data synthetic --num-images 2000 --epochs 20 --init-weights shipped
    torchrun --nproc_per_node 4 -m rfcore train --data path/to/label.txt --batch-size 8

The settings of a run are a :class:`~rfcore.train.config.TrainConfig`
(command-line options of the same names). One step (:func:`train_step`):
target assignment (:class:`rfcore.matching.TargetAssigner`), network
forward, the multi-task loss of Eq. 1 (:func:`rfcore.loss.multitask_loss`),
backward, SGD step. With ``--mesh`` the network also has the mesh head and
the step adds ``λ3 L_pixel`` through the mesh decoder (:mod:`rfcore.train.model`).

**Schedule.** SGD with momentum 0.9 and weight decay 5e-4 (on every
parameter, as the public recipe does). The learning rate rises linearly from
1e-3 to 1e-2 over the first 5 of 80 epochs and is divided by 10 at epochs 55
and 68; training stops at 80. For another epoch count the three marks scale
with it (:func:`schedule_epochs`, :func:`learning_rate`).

**Exact resume.** Everything a step depends on is either in a checkpoint or
a function of ``(seed, epoch)``:

* the order of the images in epoch ``e`` is a permutation drawn from
  ``numpy.random.default_rng([seed, e])`` (:func:`~rfcore.train.distributed.epoch_indices`);
* the augmentation of image ``i`` in epoch ``e`` draws from
  ``default_rng([seed, e, i])`` (the rule of the datasets in :mod:`rfcore.data`);
* a checkpoint holds the weights (with the batch-norm statistics), the SGD
  momentum buffers, the torch random state and the step count.

Resuming from step ``s`` continues epoch ``s // steps_per_epoch`` after
skipping its first ``s % steps_per_epoch`` batches, so on CPU a run that is
interrupted and resumed ends with bit-identical weights.

**Output folder** (``--out``)::

    log.jsonl                  one JSON object per step: step, epoch, lr, images, seconds, every loss term
    weights.safetensors        the final weights (load with rfcore.weights.load_weights, or --weights)
    mesh_decoder.safetensors   with --mesh: the final mesh decoder
    checkpoints/step-00000120/ the same weights, optimizer.safetensors (momentum buffers, random
                               state) and state.json (step, epoch, config); see rfcore.train.checkpoint

Checkpoints are written at every epoch end, every ``checkpoint_every`` steps
and when ``max_steps`` stops the run, each atomically (:mod:`rfcore.train.checkpoint`);
the newest ``keep_checkpoints`` are kept. Nothing is pickled.

**Distributed.** Under ``torchrun`` (``WORLD_SIZE > 1``) every process is
one rank of a :class:`~torch.nn.parallel.DistributedDataParallel` model
(NCCL on GPUs, gloo on CPU). Each rank trains on its own share of every
epoch's order, gradients are averaged, and the logged loss terms are
averaged over ranks. DDP hands rank 0's batch-norm running statistics to
all ranks at every forward pass, after which each rank updates them from
its own images; they are averaged over ranks before every save. Rank 0
writes the log and the checkpoints; for multi-node resume the output folder
must be on a file system all nodes share.

**Divergence.** A NaN or infinite loss term (averaged over ranks) stops the
run before the bad step is applied, with :class:`TrainingDiverged` naming the
step and the term; no checkpoint is written after it, so the last good one
stays.
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
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from rfcore.config import RetinaFaceConfig
from rfcore.data import TrainBatch, TrainTransform, WiderFace, face_loader
from rfcore.data.variety import Variety
from rfcore.files import DiskFull, append_line, check_not_inputs, folder_lock, format_bytes
from rfcore.loss import multitask_loss
from rfcore.matching import TargetAssigner
from rfcore.model import RetinaFace
from rfcore.progress import progress_bar
from rfcore.train.checkpoint import checkpoint_dirs, load_checkpoint, read_state, remove_stale, save_checkpoint
from rfcore.train.config import (
    PAPER_EPOCHS,
    PAPER_STEP_EPOCHS,
    PAPER_WARMUP_EPOCHS,
    RUN_FIELDS,
    SYNTHETIC_IMAGES,
    TrainConfig,
)
from rfcore.train.distributed import Ranks, average_batchnorm_stats, epoch_indices, setup_ranks
from rfcore.train.log import TERMS, log_record, trim_log
from rfcore.train.model import TrainingModel, freeze_for_fine_tuning
from rfcore.train.validation import NAMED_SETS, Validator, validation_samples
from rfcore.weights import load_detector_weights, load_mesh_decoder, save_weights

# ---------------------------------------------------------------- schedule


def schedule_epochs(train_cfg: TrainConfig) -> tuple[float, tuple[float, ...]]:
    """Warm-up length and learning-rate steps in epochs: the paper's 5 and (55, 68) of 80, scaled.

    Returns:
        ``(warmup_epochs, step_epochs)``; explicit values of ``train_cfg`` are used as they are.
    """
    def scaled(mark: float) -> float:
        return mark * train_cfg.epochs / PAPER_EPOCHS

    warmup = scaled(PAPER_WARMUP_EPOCHS) if train_cfg.warmup_epochs is None else train_cfg.warmup_epochs
    steps = tuple(map(scaled, PAPER_STEP_EPOCHS)) if train_cfg.step_epochs is None else train_cfg.step_epochs
    return warmup, steps


def learning_rate(step: int, steps_per_epoch: int, train_cfg: TrainConfig) -> float:
    """The learning rate of optimizer step ``step`` (0 for the first) [paper §4.2].

    Linear from ``warmup_lr`` at step 0 to ``lr`` at the end of the warm-up,
    then ``lr`` times ``lr_decay`` for every step epoch already reached.

    Args:
        step: Steps taken before this one.
        steps_per_epoch: Steps in one epoch.
        train_cfg: Gives ``lr``, ``warmup_lr``, ``lr_decay`` and the schedule (:func:`schedule_epochs`).

    Returns:
        The learning rate.
    """
    warmup, steps = schedule_epochs(train_cfg)
    epoch = step / steps_per_epoch
    if epoch < warmup:
        return train_cfg.warmup_lr + (train_cfg.lr - train_cfg.warmup_lr) * epoch / warmup
    return train_cfg.lr * train_cfg.lr_decay ** sum(epoch >= mark for mark in steps)


# ---------------------------------------------------------------- data


KEEP_RENDERED_BYTES = 4_000_000_000
"""Synthetic training images are rendered once and kept when they fit in this many bytes (500 images of
640 x 640 take 0.6 GB); larger sets are rendered again each epoch."""


def build_dataset(train_cfg: TrainConfig, cfg: RetinaFaceConfig) -> Dataset:
    """The training images of ``train_cfg.data``, augmented to squares of ``cfg.train_size``.

    Synthetic images are rendered once, before the first step, when they fit in
    :data:`KEEP_RENDERED_BYTES` (:meth:`~rfcore.data.synthetic.SyntheticFaces.keep_rendered`).

    Raises:
        FileNotFoundError: If the label file or images folder does not exist.
        ImportError: For ``"synthetic"`` when :mod:`rfcore.data.synthetic` is missing.
    """
    size = cfg.train_size
    transform = TrainTransform(size=size)
    if train_cfg.data != "synthetic":
        return WiderFace(train_cfg.data, transform, images=train_cfg.images, seed=train_cfg.seed)
    try:
        from rfcore.data.synthetic import SyntheticFaces
    except ImportError as err:
        raise ImportError(
            f"--data synthetic needs rfcore.data.synthetic.SyntheticFaces, which is missing: {err}"
        ) from None
    dataset = SyntheticFaces(train_cfg.num_images or SYNTHETIC_IMAGES, size, seed=train_cfg.seed, transform=transform,
                             variety=Variety.from_names(train_cfg.variety))
    if len(dataset) * size * size * 3 <= KEEP_RENDERED_BYTES:
        with torch_threads(1):
            dataset.keep_rendered(progress=not train_cfg.quiet)
    return dataset


@contextlib.contextmanager
def torch_threads(count: int):
    """Run the block with ``count`` torch threads, then restore the number.

    Rendering a synthetic face is many small tensor operations: with two threads on
    two busy cores they wait for each other, and rendering took 12x longer (0.81 s
    instead of 0.07 s per 160-pixel image, measured while other processes ran).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def epoch_batches(dataset: Dataset, num_samples: int, train_cfg: TrainConfig, cfg: RetinaFaceConfig, epoch: int,
                  skip: int, ranks: Ranks):
    """The batches of one rank in one epoch, after skipping the first ``skip`` (already trained on).

    Args:
        dataset: Training images.
        num_samples: Use its first this many.
        train_cfg: Batch size, seed and workers.
        cfg: Preprocessing of the images.
        epoch: Epoch number, from 0.
        skip: Batches of this epoch already trained on.
        ranks: This process's rank and the number of ranks.

    Returns:
        A :class:`~torch.utils.data.DataLoader` of :class:`~rfcore.data.TrainBatch` es.
    """
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    order = epoch_indices(num_samples, train_cfg.seed, epoch, ranks.rank, ranks.world_size)
    # seed= gives the loader its own generator, so it never draws from torch's global one
    return face_loader(dataset, cfg, train_cfg.batch_size, sampler=order[skip * train_cfg.batch_size :],
                       num_workers=train_cfg.workers, seed=train_cfg.seed, pin_memory=ranks.device.type == "cuda")


# ---------------------------------------------------------------- model and step


def build_model(train_cfg: TrainConfig, cfg: RetinaFaceConfig, device: torch.device) -> TrainingModel:
    """The network (and mesh decoder), seeded by ``train_cfg.seed``, ``train_cfg.init_weights`` loaded, in train mode.

    Starting from weights, batch norm is frozen unless ``train_cfg.train_bn`` (:attr:`TrainConfig.frozen_bn`).
    """
    torch.manual_seed(train_cfg.seed)
    detector = RetinaFace.from_config(cfg, mesh_head=train_cfg.mesh)
    model = TrainingModel.build(detector, train_cfg.mesh, cfg.pixel_mean_bgr, train_cfg.mesh_anchors)
    if train_cfg.init_weights is not None:
        load_detector_weights(detector, init_weights_path(train_cfg.init_weights), train_cfg.preset)
    if train_cfg.mesh and train_cfg.mesh_decoder is not None:
        model.decoder.load_state_dict(load_mesh_decoder(mesh_decoder_path(train_cfg.mesh_decoder)).state_dict())
        model.decoder.requires_grad_(False)  # pre-trained and kept, as the paper's [§4.2]
    model = model.to(device).train()
    if train_cfg.frozen_bn:
        freeze_for_fine_tuning(detector)
    return model


def mesh_decoder_path(mesh_decoder: str) -> Path:
    """``"shipped"`` -> the repository's pre-trained mesh decoder; anything else is a path.

    Raises:
        FileNotFoundError, IsADirectoryError: If it is not a file.
    """
    from rfcore.files import check_file
    from rfcore.weights import DEFAULT_WEIGHTS, MESH_DECODER_FILE

    path = DEFAULT_WEIGHTS.with_name(MESH_DECODER_FILE) if mesh_decoder == "shipped" else Path(mesh_decoder)
    return check_file(path, "a mesh decoder (--mesh-decoder)")


def init_weights_path(init_weights: str) -> Path:
    """``"shipped"`` -> the repository's MobileNet-0.25 weights; anything else is a path.

    Raises:
        FileNotFoundError, IsADirectoryError: If it is not a file
            (:func:`rfcore.weights.resolve_weights`).
    """
    from rfcore.weights import resolve_weights

    return resolve_weights(None if init_weights == "shipped" else init_weights, "--init-weights")


def make_optimizer(model: nn.Module, train_cfg: TrainConfig) -> torch.optim.SGD:
    """SGD with the config's momentum and weight decay; the learning rate is set every step."""
    return torch.optim.SGD(model.parameters(), lr=train_cfg.warmup_lr, momentum=train_cfg.momentum,
                           weight_decay=train_cfg.weight_decay)


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


# ---------------------------------------------------------------- resume and log


def check_resumable(state: dict, train_cfg: TrainConfig, world_size: int, folder: Path) -> None:
    """Refuse to resume a checkpoint whose run had other settings.

    Raises:
        ValueError: Listing the settings that differ, or a different number of ranks.
    """
    saved, now = state["config"], train_cfg.to_dict()
    differ = [f"{name}: {saved.get(name)!r} then, {now[name]!r} now"
              for name in now if name not in RUN_FIELDS and saved.get(name) != now[name]]
    if differ:
        raise ValueError(f"cannot resume {folder}: it was trained with other settings ({'; '.join(differ)})")
    if state["world_size"] != world_size:
        raise ValueError(f"cannot resume {folder}: it was trained on {state['world_size']} ranks, now {world_size}")


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
            file that is an input, a finished run in ``out`` (:func:`check_run_folder`),
            or a checkpoint that does not fit the config.
        rfcore.files.FolderBusy: If another process trains into ``out``.
    """
    check_outputs(train_cfg)
    ranks = setup_ranks(train_cfg.device)
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


OUTPUT_FILES = ("log.jsonl", "weights.safetensors", "mesh_decoder.safetensors")
"""Files a run writes (or rewrites) in ``out``, besides ``checkpoints/``."""


def check_outputs(train_cfg: TrainConfig) -> None:
    """Refuse a run whose output files would overwrite its data or initial weights (:func:`rfcore.files.check_not_inputs`)."""
    labels = None if train_cfg.data == "synthetic" else Path(train_cfg.data)
    inputs = [labels / "label.txt" if labels is not None and labels.is_dir() else labels]
    if train_cfg.init_weights is not None:
        inputs.append(init_weights_path(train_cfg.init_weights))
    if train_cfg.mesh and train_cfg.mesh_decoder is not None:
        inputs.append(mesh_decoder_path(train_cfg.mesh_decoder))
    if train_cfg.val not in (None, *NAMED_SETS):
        inputs.append(Path(train_cfg.val))
    out = Path(train_cfg.out)
    check_not_inputs(inputs, [out / name for name in OUTPUT_FILES], folders=[out / "checkpoints"])


def check_run_folder(train_cfg: TrainConfig) -> None:
    """Refuse to start over a run: ``out`` with checkpoints needs ``resume``, a finished run a new ``out``.

    A run whose checkpoints were pruned, or that stopped before its first, keeps its log and weights: a new
    run never empties the folder. ``resume`` with no checkpoint to resume is refused too.

    Raises:
        ValueError: Saying which of ``--resume`` or a new ``--out`` applies.
    """
    out = Path(train_cfg.out)
    found = checkpoint_dirs(out)
    results = [name for name in OUTPUT_FILES if (out / name).exists()]
    if train_cfg.resume and not found:
        what = (f" (only a finished run: {', '.join(results)}): choose a new --out" if results
                else ": drop --resume to start a new run there")
        raise ValueError(f"--resume: {out} holds no checkpoint to continue from{what}")
    if not train_cfg.resume and found:
        raise ValueError(f"{out} already holds checkpoints (newest {found[-1].name}); "
                         "pass --resume to continue that run, or choose another --out")
    if not train_cfg.resume and results:
        raise ValueError(f"{out} holds a finished run ({', '.join(results)}) without a checkpoint to resume: "
                         "choose a new --out (rfcore never empties a run folder)")


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
    # a batch without positives leaves the mesh decoder unused
    net = DistributedDataParallel(model, find_unused_parameters=train_cfg.mesh) if ranks.world_size > 1 else model
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
                if run.validator is not None and (step % train_cfg.val_every == 0 or step == last_step):
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
    """Score the network on the validation set (rank 0, the only one with a validator); a log line, the bar."""
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
        save_checkpoint(run.train_cfg.out, run.model.saved_modules(), run.optimizer, state, run.train_cfg.keep_checkpoints)
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
    metadata = {"preset": train_cfg.preset, "step": str(step), "source": "rfcore.train", **run.model.metadata()}
    for name, module in run.model.saved_modules().items():
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

