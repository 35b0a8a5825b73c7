"""The capstone: a RetinaFace built from the learner's own functions trains from scratch and detects.

::

    parts = Parts(level_anchors=level_anchors, iou=iou, match=match, encode_boxes=encode_boxes,
                  encode_landmarks=encode_landmarks, image_loss=image_loss, decode=decode, nms=nms)
    result = capstone(parts, on_progress=live_plot)
    result.ap                      # AP on the held-out synthetic validation set

:func:`capstone` first runs each part's checker (:func:`verify_parts`) and stops before any training at the
first part that fails, naming it and its first failing case. Then it trains the MobileNet-0.25 network of
:mod:`rfcore.model` from random weights on :class:`~rfcore.data.synthetic.SyntheticFaces` with rfcore's SGD
schedule, and evaluates it on the held-out set (:data:`rfcore.data.synthetic.VALIDATION`) with rfcore's WIDER
FACE protocol. The anchors, IoU, matching, encoding, loss, decoding and NMS of both are the learner's: nothing
of rfcore's stands in for them (the harness only converts anchors to corners for the IoU and keeps the
highest-scoring candidates before NMS). ``rfcore bench capstone`` times a run with the solutions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from rfcore.boxes import POSITIVE, cxcywh_to_xyxy, has_landmarks
from rfcore.config import RetinaFaceConfig, get_config
from rfcore.data import SyntheticFaces, TrainTransform, face_loader
from rfcore.data.synthetic import validation_set
from rfcore.detect_config import EVAL_THRESHOLD, DetectConfig
from rfcore.evaluation.predictions import ImagePredictions
from rfcore.evaluation.run import size_band_summary
from rfcore.evaluation.truth import truth_from_samples
from rfcore.exercises import solutions
from rfcore.exercises.anchors import check_iou, check_level_anchors
from rfcore.exercises.detector import check_decode, check_image_loss, check_match
from rfcore.exercises.encoding import check_encode_boxes, check_encode_landmarks
from rfcore.exercises.evaluation import check_nms
from rfcore.image import preprocess
from rfcore.model import RetinaFace
from rfcore.postprocess import Face
from rfcore.progress import progress_bar
from rfcore.train.config import TrainConfig
from rfcore.train.data import torch_threads
from rfcore.train.schedule import learning_rate, make_optimizer

CHECKERS = {"level_anchors": check_level_anchors, "iou": check_iou, "match": check_match,
            "encode_boxes": check_encode_boxes, "encode_landmarks": check_encode_landmarks,
            "image_loss": check_image_loss, "decode": check_decode, "nms": check_nms}
"""The parts of a detector, in the order data flows through them, each with its checker."""


@dataclass(frozen=True)
class Parts:
    """The learner's functions, with the signatures of their exercises (notebooks 01, 03, 07 and 08)."""

    level_anchors: Callable
    iou: Callable
    match: Callable
    encode_boxes: Callable
    encode_landmarks: Callable
    image_loss: Callable
    decode: Callable
    nms: Callable


def solution_parts() -> Parts:
    """Every part from :mod:`rfcore.exercises.solutions`."""
    return Parts(**{name: getattr(solutions, name) for name in CHECKERS})


@dataclass(frozen=True)
class CapstoneConfig:
    """The recipe of a capstone run, sized for two CPU cores and five minutes.

    Attributes:
        preset: Network, anchor layout, variances and loss weights.
        pos_iou, neg_iou: Matching thresholds.
        images: Synthetic training images, rendered once.
        image_size: Side of the square training crops.
        batch_size: Images per step.
        steps: SGD steps.
        warmup_steps: Linear warm-up of the learning rate.
        decay_steps: Steps at which the learning rate is divided by 10.
        lr: Learning rate after the warm-up.
        val_every: Validate every this many steps (and after the last).
        val_images: Held-out images of the validations during training.
        final_images: Held-out images of the last validation; ``None`` for the whole set.
        nms_iou: NMS threshold of the detections.
        top_k: Candidates per image kept for NMS, highest scores first.
        threshold: Lowest face probability kept (low: low scores still add to the AP).
        workers: Loader processes that crop and flip the next batch while the network trains.
        threads: Torch threads of the training process.
        seed: Seed of the weights, the images and their order.
    """

    preset: str = "mobilenet0.25"
    pos_iou: float = 0.35
    neg_iou: float = 0.35
    images: int = 500
    image_size: int = 160
    batch_size: int = 16
    steps: int = 700
    warmup_steps: int = 50
    decay_steps: tuple[int, ...] = (560,)
    lr: float = 1e-2
    val_every: int = 100
    val_images: int = 60
    final_images: int | None = None
    nms_iou: float = DetectConfig.nms_iou
    top_k: int = 100
    threshold: float = EVAL_THRESHOLD
    workers: int = 1
    threads: int = 1
    seed: int = 0

    def train_config(self) -> TrainConfig:
        """rfcore's SGD settings for this recipe (:func:`rfcore.train.schedule.learning_rate` reads the schedule)."""
        # the schedule counts in steps: learning_rate is called with one step per "epoch"
        return TrainConfig(preset=self.preset, lr=self.lr, warmup_lr=self.lr / 10, epochs=self.steps,
                           warmup_epochs=self.warmup_steps, step_epochs=self.decay_steps,
                           batch_size=self.batch_size, seed=self.seed)


@dataclass
class CapstoneResult:
    """What a capstone run did.

    Attributes:
        checks: Part name -> checker status, in order, up to the first failure.
        failed: The first part that failed its checker, or ``None``.
        losses: One record per logged step: ``step``, ``total``, ``cls``, ``box``, ``pts``.
        validations: One record per validation: ``step``, ``images``, ``ap`` (over all faces).
        summary: The final validation on the whole held-out set (:func:`rfcore.evaluation.run.size_band_summary`).
        seconds: Wall time of the training and its validations.
        network: The trained network, ``None`` if no training ran (not recorded by :meth:`to_dict`).
        detector: The learner's parts as a detector, ``None`` if no training ran (not recorded).
    """

    checks: dict[str, str]
    failed: str | None = None
    losses: list[dict] = field(default_factory=list)
    validations: list[dict] = field(default_factory=list)
    summary: dict | None = None
    seconds: float = 0.0
    network: RetinaFace | None = field(default=None, repr=False)
    detector: LearnerDetector | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        """JSON-ready record of the run (without the network)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("network", "detector")}

    def detect(self, images: Sequence[np.ndarray], run_cfg: CapstoneConfig = CapstoneConfig()) -> list[list[Face]]:
        """The trained network and the learner's parts on same-size ``(H, W, 3)`` uint8 RGB images.

        Raises:
            ValueError: If no training ran.
        """
        if self.network is None:
            raise ValueError(f"nothing was trained: the part {self.failed!r} failed its checker")
        self.network.eval()
        with torch.no_grad():
            output = self.network(preprocess(list(images), self.detector.cfg.pixel_mean_bgr))
        found = self.detector.detect(output, self.detector.anchors(images[0].shape[0]), run_cfg.threshold,
                                     run_cfg.top_k, run_cfg.nms_iou)
        return [[Face(tuple(map(float, box[:2])) + tuple(map(float, box[:2] + box[2:])), float(score),
                      tuple(tuple(map(float, point)) for point in points))
                 for box, score, points in zip(p.boxes, p.scores, p.landmarks)] for p in found]

    @property
    def ap(self) -> float | None:
        """AP over all faces of the held-out set at the end, ``None`` if no training ran."""
        return None if self.summary is None else self.summary["ap"]["all"]


def verify_parts(parts: Parts, skip: Sequence[str] = ()) -> tuple[dict[str, str], str | None]:
    """Run each part's checker, in data-flow order, until one fails.

    Prints one line per part; for the part that fails, its checker's whole verdict (the case, the inputs,
    expected and obtained values, the hint).

    Args:
        parts: The learner's functions.
        skip: Parts not to check (to see what a wrong part does to training).

    Returns:
        ``(statuses, failed)``: part name -> status, and the first failing part or ``None``.

    Raises:
        ValueError: If ``skip`` names no part.
    """
    unknown = set(skip) - set(CHECKERS)
    if unknown:
        raise ValueError(f"skip names no part: {sorted(unknown)}; the parts are {', '.join(CHECKERS)}")
    statuses = {}
    for name, checker in CHECKERS.items():
        if name in skip:
            statuses[name] = "skipped"
            print(f"  {name:<17} skipped, as asked: training uses it unchecked")
            continue
        with contextlib.redirect_stdout(io.StringIO()):  # one line per part; the verdict only when it fails
            verdict = checker(getattr(parts, name))
        statuses[name] = verdict.status
        if not verdict.passed:
            print(f"  {name:<17} {verdict.status}\n\n{verdict.message}\n\nThe capstone stops here: fix `{name}` "
                  "and run it again. Nothing was trained.")
            return statuses, name
        print(f"  {name:<17} passed")
    return statuses, None


class LearnerDetector:
    """Anchors, targets, loss and detections, each computed by the learner's parts.

    Args:
        parts: The learner's functions.
        cfg: Preset: strides, anchor sizes, variances, OHEM ratio, loss weights.
        pos_iou, neg_iou: Matching thresholds.
    """

    def __init__(self, parts: Parts, cfg: RetinaFaceConfig, pos_iou: float, neg_iou: float) -> None:
        self.parts, self.cfg, self.thresholds = parts, cfg, (pos_iou, neg_iou)
        self.lambdas = (cfg.lambda_cls, cfg.lambda_box, cfg.lambda_pts)

    def anchors(self, size: int) -> torch.Tensor:
        """``(A, 4)`` anchors ``(cx, cy, w, h)`` of a ``size x size`` input from the learner's ``level_anchors``."""
        grids = [math.ceil(size / stride) for stride in self.cfg.strides]
        return torch.cat([self.parts.level_anchors(cells, cells, stride, tuple(sizes))
                          for cells, stride, sizes in zip(grids, self.cfg.strides, self.cfg.anchor_sizes)]).float()

    def image_loss(self, output, b: int, anchors: torch.Tensor, boxes: torch.Tensor,
                   landmarks: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Eq. 1 of image ``b`` of a batch: match, encode, then the learner's loss on its outputs."""
        labels, matched = self.parts.match(self.parts.iou(cxcywh_to_xyxy(anchors), boxes), *self.thresholds)
        positive = labels == POSITIVE
        box_targets = anchors.new_zeros(len(anchors), 4)
        landmark_targets = anchors.new_zeros(len(anchors), 10)
        landmark_valid = positive.clone()
        if positive.any():
            faces = matched[positive]
            box_targets[positive] = self.parts.encode_boxes(boxes[faces], anchors[positive], self.cfg.variances)
            landmark_valid[positive] = has_landmarks(landmarks[faces])
            valid = landmark_valid  # (A,) positive and annotated
            landmark_targets[valid] = self.parts.encode_landmarks(landmarks[matched[valid]], anchors[valid],
                                                                  self.cfg.variances)
        return self.parts.image_loss(output.logits[b], output.box_deltas[b], output.landmark_deltas[b], labels,
                                     box_targets, landmark_targets, landmark_valid, self.cfg.ohem_ratio, self.lambdas)

    def detect(self, output, anchors: torch.Tensor, threshold: float, top_k: int,
               nms_iou: float) -> list[ImagePredictions]:
        """Faces of every image of a batch: the ``top_k`` best candidates, decoded, then the learner's NMS."""
        scores = torch.softmax(output.logits, dim=-1)[..., 1]  # (N, A) face probability
        predictions = []
        for b in range(len(scores)):
            top, index = scores[b].topk(min(top_k, len(anchors)))
            index = index[top > threshold]
            boxes, points = self.parts.decode(output.box_deltas[b, index], output.landmark_deltas[b, index],
                                              anchors[index], self.cfg.variances)
            keep = self.parts.nms(boxes, scores[b, index], nms_iou)
            predictions.append(ImagePredictions.from_xyxy(boxes[keep].numpy(), scores[b, index][keep].numpy(),
                                                          points[keep].reshape(-1, 5, 2).numpy()))
        return predictions


def evaluate(network: RetinaFace, detector: LearnerDetector, samples, run_cfg: CapstoneConfig,
             batch: int = 40) -> dict:
    """AP per face-size band and landmark NME of the learner's detector on held-out samples (one size)."""
    network.eval()
    truth = truth_from_samples(samples)
    anchors = detector.anchors(samples[0].image.shape[0])
    predictions = {}
    with torch.no_grad():
        for start in range(0, len(samples), batch):
            part = samples[start:start + batch]
            output = network(preprocess([s.image for s in part], detector.cfg.pixel_mean_bgr))
            found = detector.detect(output, anchors, run_cfg.threshold, run_cfg.top_k, run_cfg.nms_iou)
            predictions.update(zip(truth.names[start:start + batch], found))
    network.train()
    return size_band_summary(truth, predictions)


def capstone(parts: Parts, run_cfg: CapstoneConfig = CapstoneConfig(), skip: Sequence[str] = (),
             on_progress: Callable[[CapstoneResult], None] | None = None, progress: bool = False) -> CapstoneResult:
    """Check the learner's parts, then train a detector with them and evaluate it on the held-out set.

    Args:
        parts: The learner's functions (:class:`Parts`).
        run_cfg: The recipe (:class:`CapstoneConfig`).
        skip: Parts whose checker is not run (to see what a wrong part does).
        on_progress: Called with the result so far after each logged step and each validation,
            e.g. a live plot (:class:`rfcore.viz.capstone.LivePlot`).
        progress: Show a progress bar of the steps on stderr.

    Returns:
        The :class:`CapstoneResult`; ``failed`` names the first part that failed its checker, in which case
        nothing was trained.
    """
    print("Checking your parts against rfcore's:")
    checks, failed = verify_parts(parts, skip)
    result = CapstoneResult(checks, failed)
    if failed is not None:
        return result
    started = time.perf_counter()
    cfg = get_config(run_cfg.preset)
    detector = LearnerDetector(parts, cfg, run_cfg.pos_iou, run_cfg.neg_iou)
    train_cfg = run_cfg.train_config()
    torch.manual_seed(run_cfg.seed)
    network = RetinaFace.from_config(cfg).train()
    optimizer = make_optimizer(network, train_cfg)
    bar = progress_bar(total=run_cfg.steps, desc="capstone", unit="step", disable=not progress)
    with torch_threads(run_cfg.threads), bar:
        train(network, optimizer, detector, run_cfg, train_cfg, result, lambda r: _advance(bar, r, on_progress))
    result.seconds = time.perf_counter() - started
    result.network, result.detector = network.eval(), detector
    if on_progress is not None:
        on_progress(result)
    return result


def _advance(bar, result: CapstoneResult, on_progress) -> None:
    """Move the progress bar to the last logged step (with the last validation's AP), then call ``on_progress``."""
    bar.update(result.losses[-1]["step"] - bar.n if result.losses else 0)
    if result.validations:
        bar.set_postfix(ap=f"{result.validations[-1]['ap']:.3f}")
    if on_progress is not None:
        on_progress(result)


def train(network: RetinaFace, optimizer, detector: LearnerDetector, run_cfg: CapstoneConfig, train_cfg: TrainConfig,
          result: CapstoneResult, on_progress) -> None:
    """The training loop of :func:`capstone`: steps, loss records and validations, appended to ``result``."""
    anchors = detector.anchors(run_cfg.image_size)
    held_out = validation_set(run_cfg.final_images)
    samples = [held_out[i] for i in range(len(held_out))]
    for step, batch in enumerate(training_batches(run_cfg, detector.cfg), start=1):
        terms = train_step(network, optimizer, detector, batch, anchors, learning_rate(step - 1, 1, train_cfg))
        if step % 10 == 0 or step == run_cfg.steps:
            result.losses.append({"step": step, **terms})
        if step % run_cfg.val_every == 0 or step == run_cfg.steps:
            subset = samples if step == run_cfg.steps else samples[:run_cfg.val_images]
            summary = evaluate(network, detector, subset, run_cfg)
            result.validations.append({"step": step, "images": len(subset), "ap": summary["ap"]["all"]})
            if step == run_cfg.steps:
                result.summary = summary
        if step % 10 == 0 or step % run_cfg.val_every == 0:
            on_progress(result)
        if step == run_cfg.steps:
            break


def training_batches(run_cfg: CapstoneConfig, cfg: RetinaFaceConfig):
    """Batches of augmented synthetic faces, epoch after epoch, the images rendered once."""
    dataset = SyntheticFaces(run_cfg.images, run_cfg.image_size, seed=run_cfg.seed,
                             transform=TrainTransform(size=run_cfg.image_size))
    with torch_threads(1):
        dataset.keep_rendered()
    epoch = 0
    while True:
        dataset.set_epoch(epoch)
        yield from face_loader(dataset, cfg, run_cfg.batch_size, num_workers=run_cfg.workers,
                               seed=run_cfg.seed + epoch, drop_last=True)
        epoch += 1


def train_step(network: RetinaFace, optimizer, detector: LearnerDetector, batch, anchors: torch.Tensor,
               lr: float) -> dict:
    """One SGD step on the mean of the images' Eq. 1; returns the batch's mean loss terms as floats."""
    output = network(batch.images)
    faces = batch.faces
    per_image = [detector.image_loss(output, b, anchors, faces.boxes[faces.image_index == b],
                                     faces.landmarks[faces.image_index == b]) for b in range(len(batch.images))]
    terms = [torch.stack([torch.as_tensor(t) for t in values]).mean() for values in zip(*per_image)]
    values = [float(t.detach()) for t in terms]
    if not all(math.isfinite(value) for value in values):
        raise FloatingPointError(f"the loss is not finite: {values}; check image_loss")
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    terms[0].backward()
    optimizer.step()
    return {name: round(value, 4) for name, value in zip(("total", "cls", "box", "pts"), values)}
