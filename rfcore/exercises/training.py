"""Exercises of notebook 06: the faces a random crop keeps, the flip of faces, the learning-rate schedule and variants."""

from __future__ import annotations

import math

import numpy as np
import torch

from rfcore.boxes import flip_boxes, flip_landmarks
from rfcore.data.augment import CropWindow, crop
from rfcore.data.sample import MISSING, FaceSample
from rfcore.exercises.check import Case, Verdict, compare_tensors, random_boxes, run_check, seeded
from rfcore.exercises.encoding import random_landmarks
from rfcore.train.config import TrainConfig
from rfcore.train.schedule import learning_rate


def reference_crop_boxes(boxes: np.ndarray, window: tuple[int, int, int]) -> np.ndarray:
    """The boxes :func:`rfcore.data.augment.crop` keeps, ``(F, 4), (x, y, side) -> (K, 4)`` in crop pixels."""
    x, y, side = window
    image = np.zeros((y + side, x + side, 3), np.uint8)  # only its size matters
    sample = FaceSample(image=image, boxes=boxes, landmarks=np.full((len(boxes), 5, 2), MISSING, np.float32))
    return crop(sample, CropWindow(x, y, side)).boxes


def check_crop_boxes(crop_boxes) -> Verdict:
    """Check ``crop_boxes(boxes (F, 4), window (x, y, side)) -> (K, 4)``: the faces a square crop keeps [§4.2]."""
    generator = seeded(10)

    def boxes(*rows):
        return np.array(rows, np.float32).reshape(-1, 4)

    cases = [
        Case("a face inside the window", (boxes([20, 20, 40, 40]), (10, 10, 50)),
             "move the kept boxes into the crop's coordinates: subtract the window's corner (x, y)"),
        Case("a face that overlaps the window, its centre outside", (boxes([0, 0, 20, 20]), (15, 15, 40)),
             "a face is kept when its box centre lies inside the window, not when it merely overlaps it"),
        Case("a face cut by the window's edge, its centre inside", (boxes([50, 10, 80, 30]), (0, 0, 70)),
             "clip the kept boxes to the crop, [0, side]"),
        Case("a centre exactly on the window's edge", (boxes([0, 0, 20, 20], [30, 30, 40, 40]), (10, 0, 40)),
             "strictly inside: a centre on the edge is out"),
        Case("twelve random faces", (random_boxes(12, generator).numpy(), (20, 30, 50))),
    ]
    return run_check("crop_boxes", crop_boxes, reference_crop_boxes, cases)


def reference_flip(boxes: torch.Tensor, landmarks: torch.Tensor, width: float) -> tuple[torch.Tensor, torch.Tensor]:
    """rfcore's flip of faces, :func:`rfcore.boxes.flip_boxes` and :func:`rfcore.boxes.flip_landmarks`."""
    return flip_boxes(boxes, width), flip_landmarks(landmarks, width)


def check_flip(flip) -> Verdict:
    """Check ``flip(boxes (F, 4), landmarks (F, 5, 2), width) -> (boxes, landmarks)`` of a mirrored image."""
    generator = seeded(7)
    boxes = random_boxes(3, generator)
    face = torch.tensor([[10.0, 20.0, 30.0, 50.0]])
    points = torch.tensor([[[15.0, 30.0], [25.0, 30.0], [20.0, 38.0], [16.0, 44.0], [24.0, 44.0]]])
    on_centre_line = torch.tensor([[[20.0, 30.0], [20.0, 30.0], [20.0, 38.0], [20.0, 44.0], [20.0, 44.0]]])
    cases = [
        Case("a face whose points lie on its centre line", (face, on_centre_line, 100.0),
             "x -> width - x; the new x1 is width minus the old x2, so that x1 < x2 still holds"),
        Case("the eyes and mouth corners swap", (face, points, 40.0),
             "after the mirror the old left eye is on the right: reorder the points with rfcore.boxes.FLIP_ORDER"),
        Case("three random faces", (boxes, random_landmarks(boxes, generator), 100.0)),
    ]
    return run_check("flip", flip, reference_flip, cases)


def reference_learning_rate(step: int, steps_per_epoch: int, lr: float, warmup_lr: float, warmup_epochs: float,
                            step_epochs: tuple[float, ...], decay: float) -> float:
    """:func:`rfcore.train.schedule.learning_rate` with the schedule given as arguments instead of a ``TrainConfig``."""
    train_cfg = TrainConfig(lr=lr, warmup_lr=warmup_lr, warmup_epochs=warmup_epochs, step_epochs=step_epochs,
                            lr_decay=decay)
    return learning_rate(step, steps_per_epoch, train_cfg)


def check_learning_rate(student_learning_rate) -> Verdict:
    """Check ``learning_rate(step, steps_per_epoch, lr, warmup_lr, warmup_epochs, step_epochs, decay) -> float``.

    The schedule of the cases is the paper's shape [§4.2] in small numbers: 10 steps per epoch, a warm-up of
    5 epochs from 0.001 to 0.01, then a tenfold decay at epochs 55 and 68.
    """
    schedule = (10, 0.01, 0.001, 5.0, (55.0, 68.0), 0.1)
    steps = [
        ("the first step", 0, "step 0 starts the warm-up at warmup_lr"),
        ("half way through the warm-up", 25, "the warm-up is linear in the epoch, step / steps_per_epoch"),
        ("the end of the warm-up", 50, "from the end of the warm-up the rate is lr"),
        ("just before the first decay", 549, ""),
        ("the first decay", 550, "each step epoch already reached multiplies lr by decay once"),
        ("after both decays", 700, ""),
    ]
    cases = [Case(name, (step, *schedule), hint) for name, step, hint in steps]
    return run_check("learning_rate", student_learning_rate, reference_learning_rate, cases)


# ---------------------------------------------------------------- variants of the schedule


def reference_cosine_learning_rate(step: int, total_steps: int, lr: float, warmup_lr: float, warmup_steps: int,
                                   final_lr: float) -> float:
    """Linear warm-up, then half a cosine from ``lr`` down to ``final_lr`` at ``total_steps``.

    The cosine is SGDR's annealing without restarts [Loshchilov & Hutter, ICLR 2017, Eq. 5]; the linear
    warm-up is Goyal et al.'s [arXiv 1706.02677, §2.2], as the paper's schedule warms up [§4.2].
    """
    if step < warmup_steps:
        return warmup_lr + (lr - warmup_lr) * step / warmup_steps
    progress = min(step - warmup_steps, total_steps - warmup_steps) / (total_steps - warmup_steps)
    return final_lr + 0.5 * (lr - final_lr) * (1 + math.cos(math.pi * progress))


def check_cosine_learning_rate(student_cosine_learning_rate) -> Verdict:
    """Check ``cosine_learning_rate(step, total_steps, lr, warmup_lr, warmup_steps, final_lr) -> float``."""
    schedule = (1000, 0.01, 0.001, 100, 0.0001)
    steps = [
        ("the first step", 0, "step 0 starts the warm-up at warmup_lr"),
        ("half way through the warm-up", 50, "the warm-up is linear in the step"),
        ("the end of the warm-up", 100, "the cosine starts at lr when the warm-up ends"),
        ("half way through the cosine", 550, ("the cosine runs over total_steps - warmup_steps steps, not "
                                              "total_steps: half way, the rate is the mean of lr and final_lr")),
        ("a quarter of the cosine", 325, "lr(t) = final_lr + (lr - final_lr) (1 + cos(pi t / T)) / 2"),
        ("the last step", 1000, "at total_steps the rate is final_lr, not 0"),
    ]
    cases = [Case(name, (step, *schedule), hint) for name, step, hint in steps]
    cases.append(Case("no warm-up", (250, 1000, 0.1, 0.1, 0, 0.0), "with warmup_steps 0 the cosine starts at step 0"))
    return run_check("cosine_learning_rate", student_cosine_learning_rate, reference_cosine_learning_rate, cases,
                     compare_rates)


def reference_warm_restart_learning_rate(step: int, lr_max: float, lr_min: float, period: int, mult: int) -> float:
    """SGDR [Loshchilov & Hutter, ICLR 2017, Eq. 5]: :class:`torch.optim.lr_scheduler.CosineAnnealingWarmRestarts`."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr_max)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=period, T_mult=mult,
                                                                     eta_min=lr_min)
    for _ in range(step):
        optimizer.step()
        scheduler.step()
    return optimizer.param_groups[0]["lr"]


def check_warm_restart_learning_rate(student_warm_restart_learning_rate) -> Verdict:
    """Check ``warm_restart_learning_rate(step, lr_max, lr_min, period, mult) -> float`` against torch's SGDR."""
    schedule = (0.1, 0.001, 10, 2)
    steps = [
        ("the first step", 0, "each cycle starts at lr_max"),
        ("the middle of the first cycle", 5, "lr = lr_min + (lr_max - lr_min) (1 + cos(pi t_cur / T_i)) / 2"),
        ("the last step of the first cycle", 9, "t_cur counts the steps since the last restart"),
        ("the first restart", 10, "after `period` steps the rate jumps back to lr_max"),
        ("inside the second cycle", 17, "each cycle is `mult` times longer than the one before: 10, then 20 steps"),
        ("the second restart", 30, "the second cycle ends after 10 + 20 steps"),
        ("the third cycle", 55, ""),
    ]
    cases = [Case(name, (step, *schedule), hint) for name, step, hint in steps]
    cases.append(Case("cycles of equal length", (25, 0.05, 0.0, 10, 1), "with mult 1 every cycle has `period` steps"))
    return run_check("warm_restart_learning_rate", student_warm_restart_learning_rate,
                     reference_warm_restart_learning_rate, cases, compare_rates)


def compare_rates(expected, got) -> str | None:
    """Learning rates agree to a millionth of their size: an absolute tolerance would pass 1e-4 for 0."""
    return compare_tensors(expected, got, atol=1e-12, rtol=1e-6)
