"""``rfcore bench train``: images per second of a full training step, and what the loss side costs.

A step is :func:`rfcore.train.train_step` itself: forward, target assignment,
multi-task loss, backward and SGD update, on a batch already in memory (so no
loading or augmentation is timed). Target assignment and the loss (its forward
computation, recording the graph as in training) are then timed on their own
on the same batch to give their share of the step. The goal of issue 5
is a share under 10%: the network, not the bookkeeping, should dominate.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from rfcore.bench import random_faces
from rfcore.config import get_config
from rfcore.data import TrainBatch
from rfcore.detect import preprocess
from rfcore.loss import multitask_loss
from rfcore.matching import FaceBatch, TargetAssigner
from rfcore.model import RetinaFace, RetinaFaceOutput
from rfcore.train import TrainConfig, make_optimizer, train_step
from rfcore.train_model import TrainingModel

SHARE_GOAL = 0.10
"""Largest share of a step that target assignment and the loss should take."""


def memory_batch(preset_name: str, batch: int, faces: int, size: int, seed: int = 0) -> TrainBatch:
    """A training batch of noise images with WIDER-like faces (:func:`rfcore.bench.random_faces`) clipped to them."""
    cfg = get_config(preset_name)
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(batch)]
    boxes, points = random_faces(batch, faces, (size, size), seed)
    boxes = [b.clamp(0, size) for b in boxes]
    return TrainBatch(preprocess(images, cfg.pixel_mean_bgr), FaceBatch.from_list(boxes, points), [""] * batch)


def bench_train(
    preset_name: str = "mobilenet0.25",
    batch: int = 8,
    faces: int = 20,
    size: int = 640,
    threads: int = 2,
    repeats: int = 5,
) -> dict:
    """Time full training steps and, separately, target assignment plus loss.

    Args:
        preset_name: Network and loss preset.
        batch: Images per step.
        faces: Faces per image.
        size: Side of the square images.
        threads: Torch threads during the measurement (restored afterwards).
        repeats: Timed steps, after one untimed warm-up step; medians are reported.

    Returns:
        ``{"images_per_second", "step_ms", "assign_ms", "loss_ms", "share", ...}``
        with the settings; ``share`` is ``(assign_ms + loss_ms) / step_ms``.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        preset = get_config(preset_name)
        torch.manual_seed(0)
        model = TrainingModel(RetinaFace.from_config(preset)).train()
        optimizer = make_optimizer(model, TrainConfig())
        data = memory_batch(preset_name, batch, faces, size)
        assigner = TargetAssigner(preset, (size, size))
        with torch.no_grad():
            # leaves that require grad: the loss records its graph as it does in training
            output = RetinaFaceOutput(*(t.detach().requires_grad_() for t in model.detector(data.images)[:3]))
        steps, assign, loss = [], [], []
        for _ in range(repeats + 1):
            start = time.perf_counter()
            train_step(model, data, assigner, preset, optimizer, lr=1e-3)
            steps.append(time.perf_counter() - start)
            start = time.perf_counter()
            targets = assigner(data.faces)
            middle = time.perf_counter()
            multitask_loss(output, targets, preset)
            assign.append(middle - start)
            loss.append(time.perf_counter() - middle)
    finally:
        torch.set_num_threads(previous)
    step_s, assign_s, loss_s = (statistics.median(t[1:]) for t in (steps, assign, loss))
    return {
        "preset": preset_name, "batch": batch, "faces": faces, "size": size, "threads": threads, "repeats": repeats,
        "images_per_second": batch / step_s, "step_ms": 1000 * step_s, "assign_ms": 1000 * assign_s,
        "loss_ms": 1000 * loss_s, "share": (assign_s + loss_s) / step_s,
    }


def format_train_report(result: dict) -> str:
    """A few lines of text for :func:`bench_train` results, with the goal met or missed."""
    r = result
    verdict = "met" if r["share"] < SHARE_GOAL else "MISSED"
    return "\n".join([
        f"training step, {r['preset']} at {r['size']}x{r['size']}, batch {r['batch']}, {r['faces']} faces per image, "
        f"{r['threads']} threads; torch {torch.__version__}; medians of {r['repeats']} steps",
        f"  full step (forward, targets, loss, backward, SGD): {r['step_ms']:8.1f} ms  "
        f"= {r['images_per_second']:.2f} images/s",
        f"  target assignment:                                 {r['assign_ms']:8.1f} ms",
        f"  multi-task loss (with OHEM):                       {r['loss_ms']:8.1f} ms",
        f"goal: target assignment + loss < {SHARE_GOAL:.0%} of the step: {r['share']:.1%}, {verdict}",
    ])

