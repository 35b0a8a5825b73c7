"""``rfcore bench capstone``: the wall time of the capstone with the solutions, and its step against rfcore's.

The capstone (:func:`rfcore.exercises.capstone.capstone`) is run once from the start, as notebook 08 runs
it: the parts' checks, rendering the training images, training and validating. Its goal is five minutes on
two CPU cores with AP >= 0.9 on the held-out synthetic set; the machine's load average is reported beside
the time, since a shared machine stretches it. Then one training step with the learner's parts (the
solutions: a loop over the images of a batch, dense IoU matrices) is timed against rfcore's own step
(:func:`rfcore.train.loop.train_step`: batched target assignment, :func:`rfcore.loss.multitask_loss`) on the
same batch, in turns.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import time

import torch

from rfcore.bench.timing import interleaved_medians
from rfcore.config import get_config
from rfcore.data import SyntheticFaces, TrainTransform, face_loader
from rfcore.exercises import capstone as cap
from rfcore.matching import TargetAssigner
from rfcore.model import RetinaFace
from rfcore.train.data import torch_threads
from rfcore.train.loop import train_step
from rfcore.train.model import TrainingModel
from rfcore.train.schedule import make_optimizer


def bench_capstone(run_cfg: cap.CapstoneConfig | None = None, repeats: int = 20) -> dict:
    """Time one capstone run and, in turns, its training step against rfcore's.

    Args:
        run_cfg: The recipe; ``None`` for the default one.
        repeats: Timed steps of each kind.

    Returns:
        JSON-ready figures: ``wall_seconds``, ``cpu_seconds``, ``training_seconds``, ``ap``, ``goal_met``, the
        load averages before and after, and the median step of each kind with their ratio.
    """
    run_cfg = run_cfg or cap.CapstoneConfig()
    load_before = os.getloadavg()[0]
    started, cpu_started = time.perf_counter(), cpu_seconds()
    result = cap.capstone(cap.solution_parts(), run_cfg, progress=True)
    wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu_started
    load_after = os.getloadavg()[0]
    steps = time_steps(run_cfg, repeats)
    return {"wall_seconds": wall, "cpu_seconds": cpu, "training_seconds": result.seconds, "ap": result.ap, "steps": run_cfg.steps,
            "goal_met": result.ap >= 0.9 and wall <= 300, "load_before": load_before, "load_after": load_after,
            "cores": os.cpu_count(), "threads": run_cfg.threads, "workers": run_cfg.workers,
            "step_seconds": steps, "step_ratio": steps["learner's parts"] / steps["rfcore"]}


def cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (the loader processes), user and system."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def time_steps(run_cfg: cap.CapstoneConfig, repeats: int) -> dict[str, float]:
    """Median seconds of a training step with the solutions' parts and with rfcore's, on one batch."""
    cfg = get_config(run_cfg.preset)
    dataset = SyntheticFaces(run_cfg.batch_size, run_cfg.image_size, seed=run_cfg.seed,
                             transform=TrainTransform(size=run_cfg.image_size))
    batch = next(iter(face_loader(dataset, cfg, run_cfg.batch_size, seed=run_cfg.seed)))
    detector = cap.LearnerDetector(cap.solution_parts(), cfg, run_cfg.pos_iou, run_cfg.neg_iou)
    anchors = detector.anchors(run_cfg.image_size)
    matching = dataclasses.replace(cfg, pos_iou=run_cfg.pos_iou, neg_iou=run_cfg.neg_iou)
    assigner = TargetAssigner(matching, (run_cfg.image_size, run_cfg.image_size))
    train_cfg = run_cfg.train_config()
    torch.manual_seed(run_cfg.seed)
    learner_net = RetinaFace.from_config(cfg).train()
    rfcore_net = TrainingModel.build(RetinaFace.from_config(cfg), False, cfg.pixel_mean_bgr, 1).train()
    learner_opt, rfcore_opt = make_optimizer(learner_net, train_cfg), make_optimizer(rfcore_net, train_cfg)
    lr = run_cfg.lr / 100  # small steps: the timing, not the weights, matters
    with torch_threads(run_cfg.threads):
        return interleaved_medians({
            "learner's parts": lambda: cap.train_step(learner_net, learner_opt, detector, batch, anchors, lr),
            "rfcore": lambda: train_step(rfcore_net, batch, assigner, matching, rfcore_opt, lr),
        }, repeats, rounds=min(repeats, 10))


def format_capstone_report(result: dict) -> str:
    """The figures of :func:`bench_capstone` as lines of text."""
    learner, peer = (result["step_seconds"][name] * 1000 for name in ("learner's parts", "rfcore"))
    return "\n".join([
        (f"capstone with the solutions: {result['wall_seconds']:.0f} s wall ({result['wall_seconds'] / 60:.1f} min) "
         f"for {result['steps']} steps, {result['cpu_seconds']:.0f} s of CPU time (training process and loaders); "
         f"AP {result['ap']:.3f} on the held-out synthetic set"),
        f"goal (AP >= 0.9 within 5 min): {'met' if result['goal_met'] else 'NOT met'}",
        (f"machine: {result['cores']} cores, {result['threads']} torch thread(s) + {result['workers']} loader "
         f"process(es); load average (1 min) {result['load_before']:.1f} before, {result['load_after']:.1f} after"),
        (f"one training step on the same batch: learner's parts {learner:.0f} ms, rfcore's {peer:.0f} ms "
         f"(medians; ratio {result['step_ratio']:.2f})"),
    ])
