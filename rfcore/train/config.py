"""The settings of a training run.

:class:`TrainConfig` is a frozen dataclass whose defaults are the paper's
recipe [§4.2]; every field is also a command-line option of ``rfcore train``
(``--batch-size`` sets ``batch_size``; :mod:`rfcore.cli.train`), and the
preset supplies what it defines (training size, loss weights, OHEM ratio).
:class:`PretrainConfig` and :class:`HeadTrainConfig` set the mesh branch's
training (``rfcore mesh``). This module imports no deep-learning code, so
building the ``rfcore`` command line stays fast.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rfcore.config import MESH_CROP_MARGIN, MESH_CROP_SIZE, RetinaFaceConfig, get_config, variety_names

if TYPE_CHECKING:
    from rfcore.data.synthetic import SyntheticFaces

PAPER_EPOCHS = 80
"""Epochs of the paper's schedule; its marks below scale with the configured epoch count."""

PAPER_WARMUP_EPOCHS = 5.0
"""Warm-up length of the paper's schedule, in epochs of 80."""

PAPER_STEP_EPOCHS = (55.0, 68.0)
"""Epochs (of 80) at which the paper divides the learning rate by 10."""

SYNTHETIC_IMAGES = 500
"""Images of ``--data synthetic`` when ``num_images`` is not given."""

ABLATION_SEEDS = (0, 1, 2)
"""Seeds of each variant of the ablation (:mod:`rfcore.train.ablation`): the initial weights, the image order
and the augmentation (the images too)."""

MESH_ANCHORS = 16
"""Positive anchors of a batch whose mesh is rendered for ``L_pixel`` (per rank), by default.

A bound on the mesh branch's share of a CPU training step (``rfcore bench train --mesh`` measures it); the
paper, on GPUs, renders every positive."""

VAL_EVERY = 500
"""Steps between two validations of ``--val``, by default."""

PAPER_LAMBDA_PIXEL = 0.01
"""λ3 of the paper [§3.1]; ``--mesh`` uses it with a preset whose own λ3 is 0."""


UPPER_BOUNDS = {"image_size": 4096, "num_images": 10_000_000, "batch_size": 4096, "epochs": 100_000,
                "mesh_anchors": 100_000, "seed": 2**32 - 1}
"""Largest accepted values: a 4096-pixel crop is 50 MB per image and its network activations many GB;
seeds are those NumPy and torch both take."""

OPTION_NAMES = {"image_size": "size"}
"""Command-line options named other than their field (``--size`` sets ``image_size``)."""


RUN_FIELDS = frozenset(
    {"out", "resume", "max_steps", "workers", "threads", "device", "quiet", "log_every",
     "checkpoint_every", "keep_checkpoints", "save_all_ranks", "val", "val_every", "val_images"}
)
"""Settings that steer a run without changing its result; a resumed run may change them."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; the defaults are the paper's recipe [§4.2].

    Attributes:
        preset: Network and loss preset (:func:`rfcore.config.get_config`).
        data: ``label.txt`` of a WIDER FACE style folder (or the folder), or
            ``"synthetic"`` for :class:`rfcore.data.synthetic.SyntheticFaces`.
        images: Images folder, if not ``images/`` beside ``label.txt``.
        num_images: Train on the first this many images only; for synthetic
            data the number of images (default :data:`SYNTHETIC_IMAGES`).
        image_size: Side of the square training crops; ``None`` for the
            preset's ``train_size`` (640).
        variety: Options that widen the synthetic faces' distribution
            (:mod:`rfcore.data.variety`; ``("all",)`` for every one).
        epochs: Passes over the data.
        batch_size: Images per step on each rank.
        lr: Learning rate after the warm-up.
        warmup_lr: Learning rate at the first step.
        momentum: SGD momentum.
        weight_decay: SGD weight decay (L2), on every parameter.
        warmup_epochs: Length of the linear warm-up; ``None`` for the paper's
            5 of 80 epochs scaled to ``epochs``.
        step_epochs: Epochs at which the learning rate is multiplied by
            ``lr_decay``; ``None`` for the paper's 55 and 68 of 80 scaled.
        lr_decay: Factor applied at each of ``step_epochs``.
        workers: DataLoader worker processes per rank.
        processes: Ranks of the run on this machine, each a process with ``batch_size`` images a step and
            its own ``mesh_anchors``, their gradients averaged (DistributedDataParallel over gloo):
            ``rfcore train --processes N`` starts them itself (:mod:`rfcore.cli.train`); under ``torchrun``
            it must equal the number torchrun started. ``None``: one, or what torchrun started.
        threads: Torch threads per process; ``None`` leaves torch's choice.
        seed: Seed of the initial weights, the image order and the augmentation.
        out: Output folder (log, checkpoints, final weights).
        resume: Continue from the newest checkpoint in ``out`` (refused if
            there is none).
        init_weights: Start from these safetensors weights (fine-tuning);
            ``"shipped"`` for the repository's MobileNet-0.25 weights;
            ``None`` trains from scratch. A mesh head missing from the file
            starts untrained.
        train_bn: With ``init_weights``, train batch norm (and the stem) too. By
            default both are frozen (batch norm in eval mode, statistics and
            affine fixed) when starting from weights
            (:func:`rfcore.train.model.freeze_for_fine_tuning`); from scratch
            they always train.
        mesh: Also train the dense regression branch (mesh head, mesh
            decoder and ``λ3 L_pixel``; :mod:`rfcore.train.model`).
        mesh_decoder: With ``mesh``, a pre-trained mesh decoder to use, frozen, as the
            paper does [§4.2]: a safetensors file, or ``"shipped"`` for the repository's
            (``rfcore mesh pretrain``); ``None`` trains a fresh decoder with the network.
        lambda_box, lambda_pts: Weights of ``L_box`` and ``L_pts`` in Eq. 1;
            ``None`` for the preset's.
        lambda_pixel: λ3; ``None`` for the preset's, or with ``mesh`` on a
            preset whose λ3 is 0 (the public layouts) the paper's 0.01.
        mesh_anchors: Positive anchors rendered for ``L_pixel`` per step and rank.
        mesh_landmarks: With ``mesh``, add this times a term tying each rendered face's five landmark
            vertices to its five landmarks to its ``L_pixel`` (:func:`rfcore.train.model.landmark_term`; not in
            the paper, whose mesh branch learns from the pixels alone); 0: Eq. 3 alone. The log's ``pixel``
            is the sum.
        log_every: Write a log line every this many steps.
        checkpoint_every: Also checkpoint every this many steps (0: only at
            epoch ends).
        keep_checkpoints: Newest checkpoints kept on disk.
        max_steps: Stop (with a checkpoint) after this many steps in total.
        device: ``"auto"`` (a GPU if there is one), ``"cpu"`` or ``"cuda"``.
        quiet: No progress bar.
        save_all_ranks: Every rank also writes its final weights to
            ``weights.rank<R>.safetensors``, to check that the ranks agree.
        val: Validate on ``"synthetic"`` (:data:`rfcore.data.synthetic.VALIDATION`),
            ``"synthetic-varied"`` (:data:`rfcore.data.synthetic.VALIDATION_VARIED`),
            ``"photographs"`` (the bundled ones, :mod:`rfcore.evaluation.photographs`)
            or a ``label.txt`` (or its folder) during training; ``None``: no validation.
        val_every: Validate every this many steps, and after the last.
        val_images: Validate on the first this many images of ``val`` only.
    """

    preset: str = "mobilenet0.25"
    data: str = "synthetic"
    images: str | None = None
    num_images: int | None = None
    image_size: int | None = None
    variety: tuple[str, ...] = ()
    epochs: int = PAPER_EPOCHS
    batch_size: int = 8
    lr: float = 1e-2
    warmup_lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float | None = None
    step_epochs: tuple[float, ...] | None = None
    lr_decay: float = 0.1
    workers: int = 0
    processes: int | None = None
    threads: int | None = None
    seed: int = 0
    out: str = "runs/train"
    resume: bool = False
    init_weights: str | None = None
    train_bn: bool = False
    mesh: bool = False
    mesh_decoder: str | None = None
    lambda_box: float | None = None
    lambda_pts: float | None = None
    lambda_pixel: float | None = None
    mesh_anchors: int = MESH_ANCHORS
    mesh_landmarks: float = 0.0
    log_every: int = 1
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    max_steps: int | None = None
    device: str = "auto"
    quiet: bool = False
    save_all_ranks: bool = False
    val: str | None = None
    val_every: int = VAL_EVERY
    val_images: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "variety", variety_names(self.variety))  # raises for an unknown name
        if self.step_epochs is not None:
            object.__setattr__(self, "step_epochs", tuple(float(e) for e in self.step_epochs))
        get_config(self.preset)  # raises for an unknown preset
        rules = {
            "must be positive": (lambda v: v > 0, ("epochs", "batch_size", "lr", "warmup_lr", "log_every",
                                                    "keep_checkpoints", "mesh_anchors", "num_images",
                                                    "image_size", "max_steps", "threads", "val_every",
                                                    "val_images", "processes")),
            "must not be negative": (lambda v: v >= 0, ("weight_decay", "workers", "checkpoint_every", "lr_decay",
                                                        "lambda_pixel", "warmup_epochs", "lambda_box",
                                                        "lambda_pts", "mesh_landmarks", "seed")),
            "must be in [0, 1)": (lambda v: 0 <= v < 1, ("momentum",)),
            "must be 'auto', 'cpu' or 'cuda'": (lambda v: v in ("auto", "cpu", "cuda"), ("device",)),
        }
        for field in dataclasses.fields(self):
            values = getattr(self, field.name)
            for value in values if isinstance(values, tuple) else (values,):
                if isinstance(value, float) and not math.isfinite(value):
                    raise ValueError(f"train config: {_named(field.name)} must be a finite number, got {value!r}")
        for problem, (ok, names) in rules.items():
            for name in names:
                value = getattr(self, name)
                if value is not None and not ok(value):  # None: the default of an optional setting
                    raise ValueError(f"train config: {_named(name)} {problem}, got {value!r}")
        for name, bound in UPPER_BOUNDS.items():
            if getattr(self, name) is not None and getattr(self, name) > bound:
                raise ValueError(f"train config: {_named(name)} must be at most {bound:,}, got {getattr(self, name)!r}")
        if any(epoch < 0 for epoch in self.step_epochs or ()):
            raise ValueError(f"train config: {_named('step_epochs')} must not be negative, got {self.step_epochs}")
        coarsest = max(get_config(self.preset).strides)
        if self.image_size is not None and self.image_size < coarsest:
            raise ValueError(f"train config: {_named('image_size')} must be at least {coarsest}, the coarsest stride of "
                             f"preset {self.preset!r}, got {self.image_size}")

    @classmethod
    def from_args(cls, args) -> TrainConfig:
        """The config from parsed command-line options (an ``argparse.Namespace``; :mod:`rfcore.cli.train`)."""
        return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)})

    def loss_preset(self) -> RetinaFaceConfig:
        """The preset with the training size and loss weights of this run."""
        preset = get_config(self.preset)
        lambda_pixel = self.lambda_pixel
        if lambda_pixel is None:
            lambda_pixel = PAPER_LAMBDA_PIXEL if self.mesh and preset.lambda_pixel == 0 else preset.lambda_pixel
        weights = {name: getattr(self, name) for name in ("lambda_box", "lambda_pts") if getattr(self, name) is not None}
        return dataclasses.replace(preset, train_size=self.image_size or preset.train_size, lambda_pixel=lambda_pixel,
                                   **weights)

    @property
    def frozen_bn(self) -> bool:
        """Batch norm stays as loaded: fine-tuning (``init_weights``) without ``train_bn``."""
        return self.init_weights is not None and not self.train_bn

    def to_dict(self) -> dict:
        """Plain JSON-ready values of every field."""
        record = dataclasses.asdict(self)
        record["step_epochs"] = None if self.step_epochs is None else list(self.step_epochs)
        record["variety"] = list(self.variety)
        return record


def _named(name: str) -> str:
    """``"image_size (--size)"``: a field and its command-line option, for messages."""
    return f"{name} (--{OPTION_NAMES.get(name, name).replace('_', '-')})"


FROM_SCRATCH = TrainConfig(
    data="synthetic", num_images=1000, image_size=160, batch_size=16, threads=1, workers=1, val="synthetic",
    out="runs/synthetic-from-scratch", log_every=10, checkpoint_every=500, keep_checkpoints=11,
)
"""The recipe of the recorded from-scratch run (``assets/runs/synthetic-from-scratch/``), sized for two CPU cores.

The paper's schedule of 80 epochs (5,040 steps of 16 images) over 1,000 synthetic images of 160 x 160,
rendered once; one core trains (one torch thread), the other crops, flips and colours the next batch
(one loader process), validating on the held-out set and keeping a checkpoint every 500 steps (notebook 06
shows the detector at some of them).

:func:`rfcore.cli.train.command_line` gives its ``rfcore train`` command; ``rfcore bench train`` measures its
speed."""


SYNTHETIC_TO_REAL = dataclasses.replace(
    FROM_SCRATCH, variety=("backgrounds", "distractors", "attire", "details", "occluders", "degrade"), image_size=224,
    processes=2, batch_size=8, workers=0, out="runs/synthetic-to-real",
)
"""The recipe of the recorded synthetic-to-real run (``assets/runs/synthetic-to-real/``): :data:`FROM_SCRATCH`
with every option of :mod:`rfcore.data.variety` but ``closeups``, so that a detector that never saw a
photograph of a face finds faces in photographs. Chosen with the probes of ``assets/runs/variety-probes/``
on the synthetic validation sets and the bundled photographs only (a run with ``closeups`` as well scored
AP 0.70 on the synthetic validation set and 0.09 on the photographs at step 2,000).

On 224 x 224 images rather than 160: a face is drawn at most half as wide as its image, and on 160 the run missed
the photographed faces wider than 160 pixels. Twice the work per step is shared by two processes, one per core,
each with 8 images a step (16 together, as before; each batch norm normalises its own 8)."""

SYNTHETIC_TO_REAL_MESH = dataclasses.replace(
    SYNTHETIC_TO_REAL, image_size=160, mesh=True, mesh_decoder="shipped", lambda_pixel=3.0, mesh_anchors=8,
    mesh_landmarks=2.0, out="runs/synthetic-to-real-mesh",
)
"""The recipe of the recorded joint run (``assets/runs/synthetic-to-real-mesh/``), the whole RetinaFace from
scratch: :data:`SYNTHETIC_TO_REAL` on 160 x 160 images with the mesh head trained together with the rest, all four
terms of Eq. 1, ``L_pixel`` through the shipped pre-trained decoder, frozen [§4.2]. Its weights carry the mesh head
(``rfcore detect --mesh``). A recipe of its own, so that the detection-only run stays as it was.

λ3 is 3, not the paper's 0.01: ``L_pixel`` here compares RGB in [0, 1], and at 0.01 the head's steps (λ3 times
the learning rate) are too small for it to learn within the schedule, while at 3 detection trains as well as
without the branch (the README gives the runs). The meshes of 16 positive anchors a step are rendered (8 in each
process); 32 met the mesh goals in one run and missed them far in the next (the README gives the runs).

``mesh_landmarks=2`` is not the paper's: it adds to each rendered face's ``L_pixel`` twice the distance of its
mesh's five landmark vertices from the face's five landmarks (:func:`rfcore.train.model.landmark_term`). A rendering
can match the crop's pixels with the wrong pose and size; five points pin both down (median yaw error 8.0 degrees
against 10.5 with ``L_pixel`` alone, the README gives the runs).

Like :data:`SYNTHETIC_TO_REAL` it trains as two processes, each with half of the batch (8 images, 8 rendered faces):
16 images and 16 rendered faces a step, as the one-process recipe recorded before. 224-pixel images with the mesh
branch took 36.9 min in one process (not tried as two)."""


# ---------------------------------------------------------------- the mesh branch


def require_positive(config, counts: tuple[str, ...], values: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming the ``counts`` of ``config`` that are not integers >= 1 and the ``values`` not > 0."""
    bad = {name: getattr(config, name) for name in counts
           if not (isinstance(getattr(config, name), int) and getattr(config, name) >= 1)}
    bad |= {name: getattr(config, name) for name in values if not getattr(config, name) > 0}
    if bad:
        rules = " and ".join(f"{name} > 0" for name in values)
        raise ValueError(f"need positive integer counts and {rules}, got {bad}")


@dataclass(frozen=True)
class PretrainConfig:
    """What :func:`rfcore.train.mesh_decoder.pretrain_decoder` does (``rfcore mesh pretrain``).

    Attributes:
        steps: Adam steps.
        batch_size: Faces per step.
        train_faces: Faces drawn once for training.
        held_out_faces: Faces drawn from another stream, for the errors.
        lr: Peak learning rate of the one-cycle schedule.
        seed: Seed of the faces, the initial weights and the batches.
    """

    steps: int = 4000
    batch_size: int = 128
    train_faces: int = 20000
    held_out_faces: int = 1000
    lr: float = 2e-3
    seed: int = 0

    def __post_init__(self) -> None:
        require_positive(self, counts=("steps", "batch_size", "train_faces", "held_out_faces"), values=("lr",))


@dataclass(frozen=True)
class HeadTrainConfig:
    """What :func:`rfcore.train.mesh_head.train_mesh_head` does, and on which synthetic faces (``rfcore mesh
    train-head``).

    Attributes:
        images: Synthetic training images (rendered once).
        image_size: Their side in pixels.
        faces: ``(low, high)`` faces per image.
        min_face, max_face: Face sizes in pixels (longer box side).
        max_angle: Largest pitch, yaw and roll in degrees.
        epochs: Passes over the images.
        batch_size: Images per step.
        lr: Peak learning rate of Adam's one-cycle schedule.
        mesh_anchors: Positive anchors rendered per step.
        crop_margin: ``I*`` is the detected box grown by this factor about its centre.
        crop_size: Side of ``I*`` and of the renderings in pixels (detection does not depend on it).
        seed: Seed of the images (held-out images use ``seed + 1``) and of the order.
    """

    images: int = 1200
    image_size: int = 320
    faces: tuple[int, int] = (1, 4)
    min_face: float = 40.0
    max_face: float = 160.0
    max_angle: float = 40.0
    epochs: int = 12
    batch_size: int = 8
    lr: float = 1e-3
    mesh_anchors: int = 32
    crop_margin: float = MESH_CROP_MARGIN
    crop_size: int = MESH_CROP_SIZE
    seed: int = 0

    def __post_init__(self) -> None:
        require_positive(self, counts=("images", "epochs", "batch_size", "mesh_anchors", "crop_size"),
                         values=("lr", "crop_margin"))

    def dataset(self, held_out: bool = False, length: int | None = None) -> SyntheticFaces:
        """The synthetic training images, or ``length`` held-out ones (another seed)."""
        from rfcore.data.synthetic import SyntheticFaces

        return SyntheticFaces(self.images if length is None else length, self.image_size, self.faces,
                              self.min_face, self.max_face, self.max_angle, seed=self.seed + held_out)
