"""Exercises of notebook 06: the horizontal flip of faces and the learning-rate schedule."""

from __future__ import annotations

import torch

from rfcore.boxes import flip_boxes, flip_landmarks
from rfcore.exercises.check import Case, Verdict, random_boxes, run_check, seeded
from rfcore.exercises.encoding import random_landmarks
from rfcore.train.config import TrainConfig
from rfcore.train.loop import learning_rate


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
