"""The optimiser of a run [paper §4.2]: SGD and its warm-up and step learning-rate schedule.

SGD with momentum 0.9 and weight decay 5e-4 (on every parameter, as the public
recipe does). The learning rate rises linearly from 1e-3 to 1e-2 over the
first 5 of 80 epochs and is divided by 10 at epochs 55 and 68; training stops
at 80. For another epoch count the three marks scale with it
(:func:`schedule_epochs`, :func:`learning_rate`); :func:`make_optimizer` builds
the SGD whose rate :func:`rfcore.train.loop.train` sets at every step.
"""

from __future__ import annotations

import torch
from torch import nn

from rfcore.train.config import PAPER_EPOCHS, PAPER_STEP_EPOCHS, PAPER_WARMUP_EPOCHS, TrainConfig


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


def make_optimizer(model: nn.Module, train_cfg: TrainConfig) -> torch.optim.SGD:
    """SGD with the config's momentum and weight decay; the learning rate is set every step."""
    return torch.optim.SGD(model.parameters(), lr=train_cfg.warmup_lr, momentum=train_cfg.momentum,
                           weight_decay=train_cfg.weight_decay)
