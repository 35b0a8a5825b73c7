"""Training RetinaFace [paper §4.2]: SGD, warm-up and step schedule, exact resume, torchrun DDP.

::

    rfcore train --data path/to/widerface/train/label.txt --out runs/wider
    rfcore train --data synthetic --num-images 2000 --epochs 20 --init-weights shipped
    torchrun --nproc_per_node 4 -m rfcore train --data path/to/label.txt --batch-size 8

The settings of a run are a :class:`~rfcore.train_config.TrainConfig`
(command-line options of the same names). One step (:func:`train_step`):
target assignment (:class:`rfcore.matching.TargetAssigner`), network
forward, the multi-task loss of Eq. 1 (:func:`rfcore.loss.multitask_loss`),
backward, SGD step. With ``--mesh`` the network also has the mesh head and
the step adds ``λ3 L_pixel`` through the mesh decoder (:mod:`rfcore.train_model`).

**Schedule.** SGD with momentum 0.9 and weight decay 5e-4 (on every
parameter, as the public recipe does). The learning rate rises linearly from
1e-3 to 1e-2 over the first 5 of 80 epochs and is divided by 10 at epochs 55
and 68; training stops at 80. For another epoch count the three marks scale
with it (:func:`schedule_epochs`, :func:`learning_rate`).

**Exact resume.** Everything a step depends on is either in a checkpoint or
a function of ``(seed, epoch)``:

* the order of the images in epoch ``e`` is a permutation drawn from
  ``numpy.random.default_rng([seed, e])`` (:func:`epoch_indices`);
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
                               state) and state.json (step, epoch, config); see rfcore.checkpoint

Checkpoints are written at every epoch end, every ``checkpoint_every`` steps
and when ``max_steps`` stops the run, each atomically (:mod:`rfcore.checkpoint`);
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

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from rfcore.checkpoint import checkpoint_dirs, load_checkpoint, read_state, remove_stale, save_checkpoint
from rfcore.config import RetinaFaceConfig
from rfcore.data import TrainBatch, TrainTransform, WiderFace, face_loader
from rfcore.files import DiskFull, append_line, check_not_inputs, format_bytes, write_text
from rfcore.loss import LossTerms, multitask_loss
from rfcore.matching import TargetAssigner
from rfcore.model import RetinaFace
from rfcore.progress import progress_bar
from rfcore.train_config import (
    PAPER_EPOCHS,
    PAPER_STEP_EPOCHS,
    PAPER_WARMUP_EPOCHS,
    RUN_FIELDS,
    SYNTHETIC_IMAGES,
    TrainConfig,
    main,
)
from rfcore.train_model import TrainingModel
from rfcore.weights import check_weights, load_weights, save_weights

TERMS = LossTerms._fields
"""Names of the logged loss terms: ``total``, ``cls``, ``box``, ``pts``, ``pixel``."""

# ---------------------------------------------------------------- schedule


def schedule_epochs(cfg: TrainConfig) -> tuple[float, tuple[float, ...]]:
    """Warm-up length and learning-rate steps in epochs: the paper's 5 and (55, 68) of 80, scaled.

    Returns:
        ``(warmup_epochs, step_epochs)``; explicit values of ``cfg`` are used as they are.
    """
    def scaled(mark: float) -> float:
        return mark * cfg.epochs / PAPER_EPOCHS

    warmup = scaled(PAPER_WARMUP_EPOCHS) if cfg.warmup_epochs is None else cfg.warmup_epochs
    steps = tuple(map(scaled, PAPER_STEP_EPOCHS)) if cfg.step_epochs is None else cfg.step_epochs
    return warmup, steps


def learning_rate(step: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """The learning rate of optimizer step ``step`` (0 for the first) [paper §4.2].

    Linear from ``warmup_lr`` at step 0 to ``lr`` at the end of the warm-up,
    then ``lr`` times ``lr_decay`` for every step epoch already reached.

    Args:
        step: Steps taken before this one.
        steps_per_epoch: Steps in one epoch.
        cfg: Gives ``lr``, ``warmup_lr``, ``lr_decay`` and the schedule (:func:`schedule_epochs`).

    Returns:
        The learning rate.
    """
    warmup, steps = schedule_epochs(cfg)
    epoch = step / steps_per_epoch
    if epoch < warmup:
        return cfg.warmup_lr + (cfg.lr - cfg.warmup_lr) * epoch / warmup
    return cfg.lr * cfg.lr_decay ** sum(epoch >= mark for mark in steps)


# ---------------------------------------------------------------- distributed


class Ranks(NamedTuple):
    """Where this process stands in a (possibly one-process) run.

    Attributes:
        rank: Global rank, 0 for the process that writes files.
        world_size: Number of processes.
        device: This process's device.
    """

    rank: int
    world_size: int
    device: torch.device


def setup_ranks(device: str) -> Ranks:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    Args:
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``; a GPU rank uses ``cuda:LOCAL_RANK``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    where = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if world_size == 1:
        return Ranks(0, 1, where)
    if use_cuda:
        torch.cuda.set_device(where)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return Ranks(dist.get_rank(), world_size, where)


def average_batchnorm_stats(model: nn.Module, world_size: int) -> None:
    """Average the running means and variances of every batch norm over the ranks (in place)."""
    if world_size == 1:
        return
    stats = [buffer for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)
             for buffer in (module.running_mean, module.running_var) if buffer is not None]
    flat = torch.cat([s.reshape(-1) for s in stats])
    dist.all_reduce(flat)
    flat /= world_size
    for s, part in zip(stats, flat.split([s.numel() for s in stats])):
        s.copy_(part.view_as(s))


# ---------------------------------------------------------------- data


def epoch_indices(num_samples: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """The images one rank visits in one epoch, in order.

    The epoch's order is a permutation drawn from
    ``numpy.random.default_rng([seed, epoch])``, padded by wrapping around
    to a multiple of ``world_size``; rank ``r`` takes every
    ``world_size``-th image starting at ``r``, so all ranks get the same
    number of images and together see every image.

    Args:
        num_samples: Images in the dataset (``N``).
        seed: Training seed.
        epoch: Epoch number, from 0.
        rank: This process's rank.
        world_size: Number of ranks.

    Returns:
        ``ceil(N / world_size)`` dataset indices.
    """
    order = np.random.default_rng([seed, epoch]).permutation(num_samples)
    padded = math.ceil(num_samples / world_size) * world_size
    order = np.resize(order, padded)  # repeats the start of the order to fill the padding
    return order[rank::world_size].tolist()


def build_dataset(cfg: TrainConfig, preset: RetinaFaceConfig) -> Dataset:
    """The training images of ``cfg.data``, augmented to squares of ``preset.train_size``.

    Raises:
        FileNotFoundError: If the label file or images folder does not exist.
        ImportError: For ``"synthetic"`` when :mod:`rfcore.data.synthetic` is missing.
    """
    size = preset.train_size
    transform = TrainTransform(size=size)
    if cfg.data != "synthetic":
        return WiderFace(cfg.data, transform, images=cfg.images, seed=cfg.seed)
    try:
        from rfcore.data.synthetic import SyntheticFaces
    except ImportError as err:
        raise ImportError(
            f"--data synthetic needs rfcore.data.synthetic.SyntheticFaces, which is missing: {err}"
        ) from None
    return SyntheticFaces(cfg.num_images or SYNTHETIC_IMAGES, size, seed=cfg.seed, transform=transform)


def epoch_batches(dataset: Dataset, num_samples: int, cfg: TrainConfig, preset: RetinaFaceConfig, epoch: int,
                  skip: int, ranks: Ranks):
    """The batches of one rank in one epoch, after skipping the first ``skip`` (already trained on).

    Args:
        dataset: Training images.
        num_samples: Use its first this many.
        cfg: Batch size, seed and workers.
        preset: Preprocessing of the images.
        epoch: Epoch number, from 0.
        skip: Batches of this epoch already trained on.
        ranks: This process's rank and the number of ranks.

    Returns:
        A :class:`~torch.utils.data.DataLoader` of :class:`~rfcore.data.TrainBatch` es.
    """
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    order = epoch_indices(num_samples, cfg.seed, epoch, ranks.rank, ranks.world_size)
    # seed= gives the loader its own generator, so it never draws from torch's global one
    return face_loader(dataset, preset, cfg.batch_size, sampler=order[skip * cfg.batch_size :],
                       num_workers=cfg.workers, seed=cfg.seed, pin_memory=ranks.device.type == "cuda")


# ---------------------------------------------------------------- model and step


def build_model(cfg: TrainConfig, preset: RetinaFaceConfig, device: torch.device) -> TrainingModel:
    """The network (and mesh decoder), seeded by ``cfg.seed``, ``cfg.init_weights`` loaded, in train mode."""
    torch.manual_seed(cfg.seed)
    detector = RetinaFace.from_config(preset, mesh_head=cfg.mesh)
    model = TrainingModel.build(detector, cfg.mesh, preset.pixel_mean_bgr, cfg.mesh_anchors)
    if cfg.init_weights is not None:
        load_detector_weights(detector, init_weights_path(cfg.init_weights), cfg.preset)
    return model.to(device).train()


def load_detector_weights(detector: RetinaFace, path, preset: str | None = None) -> None:
    """Load a safetensors file into ``detector`` (of ``preset``, if given); a mesh head the file lacks keeps its initial weights.

    Raises:
        ValueError: If the file is of another preset, any other key or shape
            differs, or a tensor is not finite (:func:`rfcore.weights.check_weights`).
    """
    state = load_weights(None, path)
    if detector.MeshHead is not None and not any(key.startswith("MeshHead.") for key in state):
        state = {**detector.MeshHead.state_dict(prefix="MeshHead."), **state}
    check_weights(detector, state, path, preset)
    detector.load_state_dict(state)


def init_weights_path(init_weights: str) -> Path:
    """``"shipped"`` -> the repository's MobileNet-0.25 weights; anything else is a path.

    Raises:
        FileNotFoundError, IsADirectoryError: If it is not a file
            (:func:`rfcore.detect.resolve_weights`).
    """
    from rfcore.detect import resolve_weights

    return resolve_weights(None if init_weights == "shipped" else init_weights, "--init-weights")


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD with the config's momentum and weight decay; the learning rate is set every step."""
    return torch.optim.SGD(model.parameters(), lr=cfg.warmup_lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay)


class TrainingDiverged(RuntimeError):
    """A loss term or the weights stopped being finite; the message names the step and the last good checkpoint."""


class TrainingDiskFull(OSError):
    """The device of ``--out`` filled up; the message names the file, the space needed and the last good checkpoint."""


def train_step(
    net: TrainingModel | DistributedDataParallel,
    batch: TrainBatch,
    assigner: TargetAssigner,
    preset: RetinaFaceConfig,
    optimizer: torch.optim.Optimizer,
    lr: float,
    world_size: int = 1,
) -> torch.Tensor:
    """One SGD step on a batch: targets, forward, Eq. 1, backward, update.

    Args:
        net: The :class:`~rfcore.train_model.TrainingModel` (possibly wrapped in DDP), in train mode.
        batch: Images and faces, on any device.
        assigner: Targets for the batch's image size, on the network's device.
        preset: Loss weights and OHEM ratio (:meth:`TrainConfig.loss_preset`).
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
    terms = multitask_loss(output, targets, preset, pixel)
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


def check_resumable(state: dict, cfg: TrainConfig, world_size: int, folder: Path) -> None:
    """Refuse to resume a checkpoint whose run had other settings.

    Raises:
        ValueError: Listing the settings that differ, or a different number of ranks.
    """
    saved, now = state["config"], cfg.to_dict()
    differ = [f"{name}: {saved.get(name)!r} then, {now[name]!r} now"
              for name in now if name not in RUN_FIELDS and saved.get(name) != now[name]]
    if differ:
        raise ValueError(f"cannot resume {folder}: it was trained with other settings ({'; '.join(differ)})")
    if state["world_size"] != world_size:
        raise ValueError(f"cannot resume {folder}: it was trained on {state['world_size']} ranks, now {world_size}")


def read_log(path: Path) -> tuple[list[dict], str | None]:
    """The records of a ``log.jsonl``, and a note if its last line was torn (and dropped).

    A crash or a full disk can cut the last line short; that line is
    dropped with a note. Any other line that is not a JSON record is an error.

    Returns:
        ``(records, note)``; ``note`` is ``None`` when every line was whole.

    Raises:
        ValueError: Naming the file and the line that cannot be read.
    """
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True) if path.is_file() else []
    records, note = [], None
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("step"), int) or not line.endswith("\n"):
                raise ValueError("not a whole log record")
        except ValueError as err:
            if number < len(lines):
                raise ValueError(f"{path} line {number} is not a log record ({err}): remove that line, "
                                 "or the file, and resume again") from None
            note = f"{path} line {number} was cut short (a crash or a full disk); dropped it"
            continue
        records.append(record)
    return records, note


def trim_log(path: Path, step: int) -> str | None:
    """Keep the log lines of steps up to ``step``: later ones are about to be trained again, a torn one is dropped.

    Returns:
        A note if the last line was torn (see :func:`read_log`), else ``None``.
    """
    if not path.is_file():
        return None
    records, note = read_log(path)
    write_text(path, "".join(json.dumps(record) + "\n" for record in records if record["step"] <= step))
    return note


def log_record(step: int, epoch: int, lr: float, values: torch.Tensor, seconds: float) -> dict:
    """One log line: the step's number (from 1), epoch, learning rate, images, time and loss terms."""
    terms = dict(zip(TERMS, values.tolist()))
    return {"step": step, "epoch": epoch, "lr": lr, "images": int(values[len(TERMS)]),
            "seconds": round(seconds, 4), **terms}


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


def train(cfg: TrainConfig) -> TrainResult:
    """Train a RetinaFace as ``cfg`` says, alone or as one rank under ``torchrun``.

    Returns:
        The :class:`TrainResult` (the same on every rank).

    Raises:
        TrainingDiverged: If the loss or the weights stop being finite.
        TrainingDiskFull: If the device of ``out`` fills up; the last good
            checkpoint is kept.
        FileNotFoundError, ValueError: For missing data or weights, an output
            file that is an input, or a checkpoint that does not fit the config.
    """
    check_outputs(cfg)
    ranks = setup_ranks(cfg.device)
    try:
        return _run(cfg, ranks)
    except DiskFull as err:
        raise _disk_full(err, Path(cfg.out)) from None
    finally:
        if ranks.world_size > 1:
            dist.destroy_process_group()


OUTPUT_FILES = ("log.jsonl", "weights.safetensors", "mesh_decoder.safetensors")
"""Files a run writes (or rewrites) in ``out``, besides ``checkpoints/``."""


def check_outputs(cfg: TrainConfig) -> None:
    """Refuse a run whose output files would overwrite its data or initial weights (:func:`rfcore.files.check_not_inputs`)."""
    labels = None if cfg.data == "synthetic" else Path(cfg.data)
    inputs = [labels / "label.txt" if labels is not None and labels.is_dir() else labels]
    if cfg.init_weights is not None:
        inputs.append(init_weights_path(cfg.init_weights))
    check_not_inputs(inputs, [Path(cfg.out) / name for name in OUTPUT_FILES])


def _disk_full(err: DiskFull, out: Path) -> TrainingDiskFull:
    last = checkpoint_dirs(out)
    kept = f"the last good checkpoint is {last[-1]}" if last else "no checkpoint was written yet"
    needed = "" if err.needed is None else f" (needed {format_bytes(err.needed)})"
    return TrainingDiskFull(f"no space left on the device while writing {err.path}{needed}; training stopped, "
                            f"{kept}: free some space and continue with --resume")


class _Run(NamedTuple):
    """What the loop of :func:`_run` works on."""

    cfg: TrainConfig
    ranks: Ranks
    preset: RetinaFaceConfig
    model: TrainingModel
    optimizer: torch.optim.SGD
    steps_per_epoch: int


def _run(cfg: TrainConfig, ranks: Ranks) -> TrainResult:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    preset = cfg.loss_preset()
    dataset = build_dataset(cfg, preset)
    num_samples = min(len(dataset), cfg.num_images or len(dataset))
    if num_samples == 0:
        raise ValueError(f"no training images in {cfg.data}")
    steps_per_epoch = math.ceil(math.ceil(num_samples / ranks.world_size) / cfg.batch_size)
    model = build_model(cfg, preset, ranks.device)
    optimizer = make_optimizer(model, cfg)
    run = _Run(cfg, ranks, preset, model, optimizer, steps_per_epoch)
    step, checkpoint = _start(run)
    # a batch without positives leaves the mesh decoder unused
    net = DistributedDataParallel(model, find_unused_parameters=cfg.mesh) if ranks.world_size > 1 else model
    assigner = TargetAssigner(preset, (preset.train_size, preset.train_size), ranks.device)
    last_step = min(cfg.epochs * steps_per_epoch, cfg.max_steps or math.inf)
    bar = progress_bar(total=last_step, initial=step, unit="step", disable=True if cfg.quiet or ranks.rank else None)
    values, log = None, Path(cfg.out) / "log.jsonl"
    with bar:
        while step < last_step:
            epoch = step // steps_per_epoch
            batches = epoch_batches(dataset, num_samples, cfg, preset, epoch, step - epoch * steps_per_epoch, ranks)
            for batch in batches:
                started, lr = time.perf_counter(), learning_rate(step, steps_per_epoch, cfg)
                try:
                    values = train_step(net, batch, assigner, preset, optimizer, lr, ranks.world_size)
                except TrainingDiverged as err:
                    raise _diverged(step + 1, str(err), checkpoint) from None
                step += 1
                record = log_record(step, epoch, lr, values, time.perf_counter() - started)
                _report(run, bar, log, record)
                if _checkpoint_due(cfg, step, steps_per_epoch, last_step):
                    checkpoint = _checkpoint(run, step, record)
                if step == last_step:
                    break
    return _finish(run, step, checkpoint, values)


def _checkpoint_due(cfg: TrainConfig, step: int, steps_per_epoch: int, last_step: int) -> bool:
    """At the last step, at every epoch end and every ``checkpoint_every`` steps."""
    every = cfg.checkpoint_every
    return step == last_step or step % steps_per_epoch == 0 or (every > 0 and step % every == 0)


def _start(run: _Run) -> tuple[int, Path | None]:
    """Step and checkpoint to start from: the newest checkpoint with ``resume``, else step 0."""
    cfg, out = run.cfg, Path(run.cfg.out)
    found = checkpoint_dirs(out)
    if found and not cfg.resume:
        raise ValueError(f"{out} already holds checkpoints (newest {found[-1].name}); "
                         "pass --resume to continue that run, or choose another --out")
    if run.ranks.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        for folder in remove_stale(out):
            _message(run, f"removed {folder}, a checkpoint an interrupted run left half-written", warning=True)
    if not found:
        if run.ranks.rank == 0:
            (out / "log.jsonl").unlink(missing_ok=True)
        return 0, None
    state = read_state(found[-1])
    check_resumable(state, cfg, run.ranks.world_size, found[-1])
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
    bar.set_postfix_str(f"epoch {record['epoch']} lr {record['lr']:.2e} "
                        + " ".join(f"{name} {record[name]:.3f}" for name in TERMS), refresh=False)
    if record["step"] % run.cfg.log_every == 0:
        append_line(log, json.dumps(record))


def _checkpoint(run: _Run, step: int, record: dict) -> Path:
    """Average batch-norm statistics, check the weights and (rank 0) write a checkpoint."""
    _sync_and_check(run, step)
    folder = Path(run.cfg.out) / "checkpoints" / f"step-{step:08d}"
    if run.ranks.rank == 0:
        state = {
            "step": step,
            "epoch": step // run.steps_per_epoch,
            "batch_in_epoch": step % run.steps_per_epoch,
            "steps_per_epoch": run.steps_per_epoch,
            "world_size": run.ranks.world_size,
            "rng": {"torch": "optimizer.safetensors rng/torch",
                    "numpy": "order default_rng([seed, epoch]), augmentation default_rng([seed, epoch, index])",
                    "seed": run.cfg.seed},
            "last_step": record,
            "config": run.cfg.to_dict(),
        }
        save_checkpoint(run.cfg.out, run.model.saved_modules(), run.optimizer, state, run.cfg.keep_checkpoints)
    if run.ranks.world_size > 1:
        dist.barrier()  # the checkpoint exists before any rank moves on
    return folder


def _sync_and_check(run: _Run, step: int) -> None:
    average_batchnorm_stats(run.model, run.ranks.world_size)
    bad = [name for name, tensor in run.model.state_dict().items()
           if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        last = checkpoint_dirs(Path(run.cfg.out))
        raise _diverged(step, f"weights {bad[:3]} are no longer finite", last[-1] if last else None)


def _diverged(step: int, what: str, checkpoint: Path | None) -> TrainingDiverged:
    kept = f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint was written yet"
    return TrainingDiverged(f"step {step}: {what}; stopped without saving, {kept} (lower --lr and resume)")


def _finish(run: _Run, step: int, checkpoint: Path | None, values: torch.Tensor | None) -> TrainResult:
    """Write the final weights (and, with ``save_all_ranks``, every rank's): ``weights`` and ``mesh_decoder``."""
    cfg, out = run.cfg, Path(run.cfg.out)
    _sync_and_check(run, step)
    metadata = {"preset": cfg.preset, "step": str(step), "source": "rfcore.train"}
    for name, module in run.model.saved_modules().items():
        if run.ranks.rank == 0:
            save_weights(module.state_dict(), out / f"{name}.safetensors", metadata)
        if cfg.save_all_ranks:
            save_weights(module.state_dict(), out / f"{name}.rank{run.ranks.rank}.safetensors", metadata)
    finished = step >= cfg.epochs * run.steps_per_epoch
    _message(run, f"{'finished' if finished else 'stopped'} at step {step}: weights in {out / 'weights.safetensors'}")
    terms = {} if values is None else dict(zip(TERMS, values.tolist()))
    return TrainResult(out / "weights.safetensors", checkpoint, step, finished, terms)


def _message(run: _Run, text: str, warning: bool = False) -> None:
    """Print ``text`` on rank 0 unless ``quiet``; a ``warning`` (a file repaired on the way) even then."""
    if run.ranks.rank == 0 and (warning or not run.cfg.quiet):
        print(f"rfcore train: {text}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
