"""Exercises of notebook 06: the faces a random crop keeps, the horizontal flip of faces, the learning-rate schedule."""

from __future__ import annotations

import numpy as np
import torch

from rfcore.boxes import flip_boxes, flip_landmarks
from rfcore.data.augment import CropWindow, crop
from rfcore.data.sample import MISSING, FaceSample
from rfcore.exercises.check import Case, Verdict, random_boxes, run_check, seeded
from rfcore.exercises.encoding import random_landmarks
from rfcore.train.config import TrainConfig
from rfcore.train.loop import learning_rate


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
    """:func:`rfcore.train.loop.learning_rate` with the schedule given as arguments instead of a ``TrainConfig``."""
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
