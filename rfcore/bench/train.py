"""``rfcore bench train``: images per second of a full training step, and what the loss side costs.

A step is :func:`rfcore.train.loop.train_step` itself: forward, target assignment,
multi-task loss, backward and SGD update, on a batch already in memory (so no
loading or augmentation is timed). Target assignment and the loss (its forward
computation, recording the graph as in training) are then timed on their own
on the same batch to give their share of the step: the network, not the
bookkeeping, should dominate.

:func:`bench_recipe` puts the recorded from-scratch run's setting
(:data:`rfcore.train.config.FROM_SCRATCH`: small synthetic images, rendered
once per run) next to the paper's 640 setting, step by step, and measures what
the synthetic data costs: rendering each image once, and cropping, flipping,
colouring and batching the kept images at every step.

With ``mesh=True`` the same steps are also timed with the mesh branch, as
``rfcore train --mesh`` trains it: mesh head, decoder and ``L_pixel`` on up to
``MESH_ANCHORS`` positives per step.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import numpy as np
import torch

from rfcore.bench.targets import random_faces
from rfcore.config import get_config
from rfcore.data import TrainBatch, face_loader
from rfcore.image import preprocess
from rfcore.loss import multitask_loss
from rfcore.matching import FaceBatch, TargetAssigner
from rfcore.model import RetinaFace, RetinaFaceOutput
from rfcore.train.config import FROM_SCRATCH, MESH_ANCHORS, TrainConfig
from rfcore.train.data import build_dataset, torch_threads
from rfcore.train.loop import train_step
from rfcore.train.model import TrainingModel
from rfcore.train.schedule import make_optimizer

SHARE_GOAL = 0.10
"""Largest share of a step that target assignment and the loss should take."""

MESH_GOAL = 0.15
"""Largest fraction the mesh branch should add to a step."""


def memory_batch(preset_name: str, batch: int, faces: int, size: int, seed: int = 0) -> TrainBatch:
    """A training batch of noise images with WIDER-like faces (:func:`rfcore.bench.targets.random_faces`) clipped
    to them."""
    cfg = get_config(preset_name)
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(batch)]
    boxes, points = random_faces(batch, faces, (size, size), seed)
    boxes = [b.clamp(0, size) for b in boxes]
    return TrainBatch(preprocess(images, cfg.pixel_mean_bgr), FaceBatch.from_list(boxes, points), [""] * batch)


def time_steps(models: list[TrainingModel], data: TrainBatch, assigner: TargetAssigner, cfg,
               repeats: int) -> list[list[float]]:
    """Seconds of ``repeats`` training steps of each model on ``data``, after one untimed warm-up each.

    The models take turns, step by step, so that all see the same load of a busy machine.

    Returns:
        Per model, ``repeats`` step times.
    """
    optimizers = [make_optimizer(model, TrainConfig()) for model in models]
    times: list[list[float]] = [[] for _ in models]
    for _ in range(repeats + 1):
        for model, optimizer, steps in zip(models, optimizers, times):
            start = time.perf_counter()
            train_step(model, data, assigner, cfg, optimizer, lr=1e-3)
            steps.append(time.perf_counter() - start)
    return [steps[1:] for steps in times]


def time_assign_and_loss(model: TrainingModel, data: TrainBatch, assigner: TargetAssigner, cfg,
                         repeats: int) -> tuple[float, float]:
    """Median seconds of target assignment and of the multi-task loss alone, on ``data``."""
    with torch.no_grad():
        # leaves that require grad: the loss records its graph as it does in training
        output = RetinaFaceOutput(*(t.detach().requires_grad_() for t in model.detector(data.images)[:3]))
    assign, loss = [], []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        targets = assigner(data.faces)
        middle = time.perf_counter()
        multitask_loss(output, targets, cfg)
        assign.append(middle - start)
        loss.append(time.perf_counter() - middle)
    return statistics.median(assign[1:]), statistics.median(loss[1:])


def mesh_model(cfg, seed: int = 0, mesh_anchors: int = MESH_ANCHORS) -> TrainingModel:
    """The model ``rfcore train --mesh`` trains: mesh head, decoder, ``L_pixel`` on ``mesh_anchors`` positives."""
    torch.manual_seed(seed)
    detector = RetinaFace.from_config(cfg, mesh_head=True)
    return TrainingModel.build(detector, True, cfg.pixel_mean_bgr, mesh_anchors).train()


def bench_train(
    preset_name: str = "mobilenet0.25",
    batch: int = 8,
    faces: int = 20,
    size: int = 640,
    threads: int = 2,
    repeats: int = 5,
    mesh: bool = False,
    mesh_anchors: int = MESH_ANCHORS,
) -> dict:
    """Time full training steps and, separately, target assignment plus loss.

    Args:
        preset_name: Network and loss preset.
        batch: Images per step.
        faces: Faces per image.
        size: Side of the square images.
        threads: Torch threads during the measurement (restored afterwards).
        repeats: Timed steps, after one untimed warm-up step; medians are reported.
        mesh: Also time steps with the mesh branch (:func:`mesh_model`).
        mesh_anchors: Positives rendered per step by the mesh branch.

    Returns:
        ``{"images_per_second", "step_ms", "assign_ms", "loss_ms", "share", ...}``
        with the settings; ``share`` is ``(assign_ms + loss_ms) / step_ms``.
        With ``mesh`` also ``"mesh_images_per_second"``, ``"mesh_step_ms"``
        and ``"mesh_overhead"``: the median over repeats of
        ``mesh step / plain step - 1``, the two steps run back to back.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        cfg = get_config(preset_name)
        torch.manual_seed(0)
        model = TrainingModel(RetinaFace.from_config(cfg)).train()
        data = memory_batch(preset_name, batch, faces, size)
        assigner = TargetAssigner(cfg, (size, size))
        models = [model, mesh_model(cfg, mesh_anchors=mesh_anchors)] if mesh else [model]
        steps = time_steps(models, data, assigner, cfg, repeats)
        assign_s, loss_s = time_assign_and_loss(model, data, assigner, cfg, repeats)
    finally:
        torch.set_num_threads(previous)
    step_s = statistics.median(steps[0])
    result = {
        "preset": preset_name, "batch": batch, "faces": faces, "size": size, "threads": threads, "repeats": repeats,
        "images_per_second": batch / step_s, "step_ms": 1000 * step_s, "assign_ms": 1000 * assign_s,
        "loss_ms": 1000 * loss_s, "share": (assign_s + loss_s) / step_s,
    }
    if mesh:
        mesh_s, ratio = statistics.median(steps[1]), statistics.median(m / p for p, m in zip(*steps))
        result.update(mesh_anchors=mesh_anchors, mesh_images_per_second=batch / mesh_s, mesh_step_ms=1000 * mesh_s,
                      mesh_overhead=ratio - 1)
    return result


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
        *([] if "mesh_overhead" not in r else mesh_lines(r)),
    ])


def mesh_lines(result: dict) -> list[str]:
    """The mesh-branch lines of :func:`format_train_report`."""
    r = result
    verdict = "met" if r["mesh_overhead"] < MESH_GOAL else "MISSED"
    return [
        f"  full step with the mesh branch ({r['mesh_anchors']} positives): {r['mesh_step_ms']:8.1f} ms  "
        f"= {r['mesh_images_per_second']:.2f} images/s",
        f"goal: the mesh branch adds < {MESH_GOAL:.0%} to the step (median of paired steps): "
        f"{r['mesh_overhead']:+.1%}, {verdict}",
    ]



def bench_recipe(recipe: TrainConfig = FROM_SCRATCH, repeats: int = 5, paper_batch: int = 8,
                 paper_faces: int = 20) -> dict:
    """Speed of the recorded run's setting next to the paper's, and the cost of its synthetic images.

    Args:
        recipe: The run to measure (:data:`FROM_SCRATCH`); its images are synthetic.
        repeats: Timed steps of each setting, taking turns, after one warm-up each.
        paper_batch, paper_faces: The paper setting: this many 640 x 640 images of this many faces.

    Returns:
        ``{"recipe_images_per_second", "paper_images_per_second", "ratio", "recipe_step_ms", "paper_step_ms",
        "render_ms_per_image", "render_s", "kept_bytes", "load_ms", "run_steps", "run_minutes", ...}``:
        ``render_s`` renders all ``recipe.num_images`` once; ``load_ms`` augments and batches one step's
        kept images; ``run_minutes`` is rendering plus every step at the measured speed (with loader
        processes, loading overlaps the step). Steps run with the recipe's torch threads (one if it
        leaves them to torch), rendering with one, as :func:`build_dataset` renders.
    """
    cfg = recipe.loss_preset()
    sample_count = recipe.batch_size * 2
    dataset = build_dataset(dataclasses.replace(recipe, num_images=sample_count, quiet=True), cfg)
    with torch_threads(1):
        render = [_seconds(lambda i=i: dataset.render(i)) for i in range(sample_count)]
    loads = [_seconds(lambda: next(iter(_loader(dataset, recipe, cfg)))) for _ in range(repeats + 1)][1:]
    data = next(iter(_loader(dataset, recipe, cfg)))
    paper_cfg = get_config(recipe.preset)
    paper_data = memory_batch(recipe.preset, paper_batch, paper_faces, paper_cfg.train_size)
    threads = recipe.threads or 1
    with torch_threads(threads):
        torch.manual_seed(0)
        models = [TrainingModel(RetinaFace.from_config(cfg)).train() for _ in range(2)]
        steps = _alternate(models, [data, paper_data], [cfg, paper_cfg], repeats)
    recipe_s, paper_s = map(statistics.median, steps)
    per_image = statistics.median(render)
    run_steps = recipe.epochs * -(-recipe.num_images // recipe.batch_size)
    load_s = statistics.median(loads)
    return {
        "preset": recipe.preset, "size": cfg.train_size, "batch": recipe.batch_size, "paper_size": paper_cfg.train_size,
        "paper_batch": paper_batch, "paper_faces": paper_faces, "threads": threads, "repeats": repeats,
        "recipe_step_ms": 1000 * recipe_s, "paper_step_ms": 1000 * paper_s,
        "recipe_images_per_second": recipe.batch_size / recipe_s, "paper_images_per_second": paper_batch / paper_s,
        "ratio": (recipe.batch_size / recipe_s) / (paper_batch / paper_s),
        "render_ms_per_image": 1000 * per_image, "num_images": recipe.num_images,
        "render_s": per_image * recipe.num_images, "kept_bytes": recipe.num_images * cfg.train_size ** 2 * 3,
        "load_ms": 1000 * load_s, "run_steps": run_steps,
        "workers": recipe.workers,
        "run_minutes": (per_image * recipe.num_images + run_steps * step_with_loading(recipe_s, load_s, recipe)) / 60,
    }


def step_with_loading(step_s: float, load_s: float, recipe: TrainConfig) -> float:
    """Seconds per step of a run: loading in loader processes overlaps the step, without them it adds to it."""
    return max(step_s, load_s) if recipe.workers else step_s + load_s


def _seconds(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def _loader(dataset, recipe: TrainConfig, cfg):
    return face_loader(dataset, cfg, recipe.batch_size, seed=0)


def _alternate(models, batches, cfgs, repeats: int) -> list[list[float]]:
    """Seconds of ``repeats`` steps of each model on its batch, taking turns, after one warm-up each."""
    assigners = [TargetAssigner(cfg, tuple(batch.images.shape[-2:])) for batch, cfg in zip(batches, cfgs)]
    optimizers = [make_optimizer(model, TrainConfig()) for model in models]
    times: list[list[float]] = [[] for _ in models]
    for _ in range(repeats + 1):
        for model, batch, assigner, cfg, optimizer, steps in zip(models, batches, assigners, cfgs, optimizers, times):
            start = time.perf_counter()
            train_step(model, batch, assigner, cfg, optimizer, lr=1e-3)
            steps.append(time.perf_counter() - start)
    return [steps[1:] for steps in times]


def format_recipe_report(result: dict) -> str:
    """A few lines of text for :func:`bench_recipe` results."""
    r = result
    return "\n".join([
        f"the recorded from-scratch run's setting next to the paper's, {r['preset']}, torch threads {r['threads']}, "
        f"medians of {r['repeats']} steps taking turns",
        f"  recorded run, {r['size']}x{r['size']} synthetic, batch {r['batch']}:    {r['recipe_step_ms']:8.1f} ms per step"
        f" = {r['recipe_images_per_second']:7.1f} images/s ({r['ratio']:.1f}x the paper setting's images/s)",
        f"  paper setting, {r['paper_size']}x{r['paper_size']}, batch {r['paper_batch']}, {r['paper_faces']} faces: "
        f"{r['paper_step_ms']:8.1f} ms per step = {r['paper_images_per_second']:7.1f} images/s",
        f"  synthetic images, rendered once per run on one thread: {r['render_ms_per_image']:.1f} ms per image, "
        f"{r['render_s']:.0f} s for {r['num_images']}, {r['kept_bytes'] / 1e6:.0f} MB kept",
        f"  then per step, crop + flip + colour + batch of the kept images: {r['load_ms']:.1f} ms "
        f"({r['load_ms'] / r['recipe_step_ms']:.0%} of a step); rendering every epoch instead would add "
        f"{r['render_ms_per_image'] * r['batch']:.0f} ms per step",
        f"  the run's {r['run_steps']} steps at this speed, with rendering (loader processes: {r['workers']}): "
        f"about {r['run_minutes']:.1f} min",
    ])
