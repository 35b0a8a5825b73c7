"""``rfcore bench eval``: the WIDER FACE protocol on a generated set the size of WIDER FACE val, against a loop.

The set (:func:`generated_set`) has 3,226 images, as WIDER FACE val, with 40
faces and 200 detections each: three in five detections are jittered copies
of faces (some faces get several, which makes duplicates), the rest random
boxes; scores are rounded to 1e-4 so that ties occur. Each face is easy,
medium, hard or in no list, the lists nested as the official ones are.

The peer, :func:`loop_evaluate`, is the slow reference: the protocol written
the straightforward way, as the toolbox does it, with a loop over the
detections of each image and then, per image, a loop over the 1,000 score
thresholds. :func:`rfcore.evaluation.protocol.evaluate` classifies each
detection once and counts all thresholds with one sorted array. Both must
give the same APs; the goal is at least 10x.
"""

from __future__ import annotations

import time

import numpy as np

from rfcore.evaluation.predictions import ImagePredictions
from rfcore.evaluation.protocol import IOU_THRESHOLD, THRESHOLDS, evaluate, wider_iou
from rfcore.evaluation.truth import WIDER_SUBSETS, GroundTruth, no_landmarks

SPEEDUP_GOAL = 10.0
"""Least ratio of the loop's time to the vectorised protocol's."""

DIFFICULTY_SHARES = (0.3, 0.3, 0.3, 0.1)
"""Share of generated faces that are easy, medium, hard, and in no list."""

IMAGE_SIZE = (768, 1024)
"""``(height, width)`` the generated faces lie in."""


def generated_set(images: int = 3226, faces: int = 40, detections: int = 200,
                  seed: int = 0) -> tuple[GroundTruth, dict[str, ImagePredictions]]:
    """A WIDER-like evaluation set with predictions (see the module docstring).

    Args:
        images: Number of images.
        faces: Faces per image.
        detections: Detections per image.
        seed: Seed of the generator.

    Returns:
        The ground truth, subsets ``easy``, ``medium`` and ``hard``, and the
        predictions of every image.
    """
    rng = np.random.default_rng(seed)
    names, boxes, predictions = [], [], {}
    masks = {name: [] for name in WIDER_SUBSETS}
    for i in range(images):
        names.append(f"{i % 61}--event/image_{i:05d}")
        boxes.append(random_boxes(rng, faces))
        difficulty = rng.choice(len(DIFFICULTY_SHARES), size=faces, p=DIFFICULTY_SHARES)  # 0 easy .. 3 none
        for level, name in enumerate(WIDER_SUBSETS):
            masks[name].append(difficulty <= level)  # easy faces are also medium and hard ones
        predictions[names[-1]] = random_detections(rng, boxes[-1], detections)
    subsets = {name: tuple(m) for name, m in masks.items()}
    image_files = tuple(f"{name}.jpg" for name in names)
    truth = GroundTruth(tuple(names), image_files, tuple(boxes), subsets, tuple(map(no_landmarks, boxes)))
    return truth, predictions


def random_boxes(rng: np.random.Generator, count: int) -> np.ndarray:
    """``(count, 4)`` boxes ``x y w h``: widths log-uniform in 6..300 px, heights 1.0-1.4 times that."""
    width = np.exp(rng.uniform(np.log(6), np.log(300), count))
    height = width * rng.uniform(1.0, 1.4, count)
    x = rng.uniform(0, IMAGE_SIZE[1] - width)
    y = rng.uniform(0, IMAGE_SIZE[0] - height)
    return np.stack([x, y, width, height], axis=1)


def random_detections(rng: np.random.Generator, faces: np.ndarray, count: int) -> ImagePredictions:
    """``count`` detections: 60% jittered copies of random faces (high scores), the rest random (low)."""
    on_faces = round(0.6 * count)
    source = faces[rng.integers(len(faces), size=on_faces)]  # (on_faces, 4), repeats make duplicates
    jitter = rng.normal(0, 0.15, (on_faces, 4)) * source[:, [2, 3, 2, 3]]
    copies = source + jitter
    copies[:, 2:] = np.abs(copies[:, 2:])
    boxes = np.concatenate([copies, random_boxes(rng, count - on_faces)])
    scores = np.concatenate([rng.beta(5, 2, on_faces), rng.beta(2, 5, count - on_faces)])
    order = rng.permutation(count)  # files need not be sorted by score
    return ImagePredictions(boxes[order], np.round(scores[order], 4))


# ---------------------------------------------------------------- the slow reference (the peer)


def loop_evaluate(truth: GroundTruth, predictions: dict[str, ImagePredictions],
                  iou_threshold: float = IOU_THRESHOLD) -> dict[str, float]:
    """THE SLOW REFERENCE: the protocol with a loop over detections and a loop over thresholds per image.

    Written as plainly as the rules read, to check and time the vectorised
    :func:`rfcore.evaluation.protocol.evaluate` against; do not use it for
    real work.

    Args:
        truth: The faces and subsets.
        predictions: Image key -> detections.
        iou_threshold: Least IoU to find a face.

    Returns:
        Subset name -> AP.
    """
    per_image = [predictions[name] for name in truth.names]
    low = min(p.scores.min() for p in per_image if len(p))
    high = max(p.scores.max() for p in per_image if len(p))
    aps = {}
    for subset, masks in truth.subsets.items():
        totals = np.zeros((len(THRESHOLDS), 2))  # per threshold: detections counted, faces found
        faces = 0
        for i, image_predictions in enumerate(per_image):
            faces += int(masks[i].sum())
            if len(truth.boxes[i]) == 0 or len(image_predictions) == 0:
                continue
            scores = (image_predictions.scores - low) / (high - low)
            order = np.argsort(-scores, kind="stable")
            totals += loop_image_counts(wider_iou(image_predictions.boxes[order], truth.boxes[i]), scores[order],
                                        masks[i], iou_threshold)
        precision = [found / counted if counted else 0.0 for counted, found in totals]
        recall = [found / faces for _, found in totals]
        aps[subset] = loop_voc_ap(recall, precision)
    return aps


def loop_image_counts(iou: np.ndarray, scores: np.ndarray, counts: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Slow reference, one image: ``(T, 2)`` detections counted and faces found at each threshold."""
    state = np.zeros(iou.shape[1])  # per face: 0 not found, 1 found, -1 ignored
    counted = np.ones(len(scores), dtype=bool)
    found_so_far = np.zeros(len(scores))
    for d in range(len(scores)):
        face = iou[d].argmax()
        if iou[d, face] >= iou_threshold:
            if not counts[face]:
                state[face] = -1
                counted[d] = False
            elif state[face] == 0:
                state[face] = 1
        found_so_far[d] = np.count_nonzero(state == 1)
    result = np.zeros((len(THRESHOLDS), 2))
    for t, threshold in enumerate(THRESHOLDS):
        above = np.flatnonzero(scores >= threshold)
        if len(above):
            last = above[-1]
            result[t] = np.count_nonzero(counted[: last + 1]), found_so_far[last]
    return result


def loop_voc_ap(recall: list[float], precision: list[float]) -> float:
    """Slow reference: VOC all-points AP with an explicit envelope loop."""
    recall = [0.0, *recall, 1.0]
    precision = [0.0, *precision, 0.0]
    for i in range(len(precision) - 2, -1, -1):
        precision[i] = max(precision[i], precision[i + 1])
    return float(sum((recall[i + 1] - recall[i]) * precision[i + 1]
                     for i in range(len(recall) - 1) if recall[i + 1] != recall[i]))


# ---------------------------------------------------------------- timing


def timed(fn, repeats: int) -> tuple[list[float], object]:
    """Wall times of ``repeats`` calls of ``fn()`` and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def bench_eval(images: int = 3226, faces: int = 40, detections: int = 200, repeats: int = 5,
               peer_repeats: int = 1, seed: int = 0) -> dict:
    """Time the vectorised protocol against the loop on a :func:`generated_set`.

    Args:
        images: Number of images.
        faces: Faces per image.
        detections: Detections per image.
        repeats: Timed runs of the vectorised protocol.
        peer_repeats: Timed runs of the loop (about a minute each at the defaults).
        seed: Seed of the set.

    Returns:
        ``images``, ``faces``, ``detections``, ``ours_s`` and ``peer_s``
        (medians), ``repeats``, ``peer_repeats``, ``speedup`` and ``aps``
        (subset -> AP).

    Raises:
        AssertionError: If the two give APs more than 1e-12 apart.
    """
    truth, predictions = generated_set(images, faces, detections, seed)
    ours_times, curves = timed(lambda: evaluate(truth, predictions), repeats)
    peer_times, peer_aps = timed(lambda: loop_evaluate(truth, predictions), peer_repeats)
    aps = {name: curve.ap for name, curve in curves.items()}
    if any(abs(aps[name] - peer_aps[name]) > 1e-12 for name in aps):
        raise AssertionError(f"the vectorised protocol and the loop disagree: APs {aps} against {peer_aps}")
    ours, peer = float(np.median(ours_times)), float(np.median(peer_times))
    return {
        "images": images, "faces": faces, "detections": detections, "repeats": repeats,
        "peer_repeats": peer_repeats, "ours_s": ours, "peer_s": peer, "speedup": peer / ours,
        "aps": aps,
    }


def runs(count: int) -> str:
    """``"1 run"``, ``"5 runs"``."""
    return f"{count} run{'' if count == 1 else 's'}"


def format_eval_report(result: dict) -> str:
    """A plain-text report of :func:`bench_eval`."""
    aps = "  ".join(f"{name} {ap:.4f}" for name, ap in result["aps"].items())
    verdict = "met" if result["speedup"] >= SPEEDUP_GOAL else "MISSED"
    return "\n".join([
        f"WIDER FACE protocol on {result['images']:,} generated images, {result['faces']} faces and "
        f"{result['detections']} detections each; medians",
        f"  vectorised (rfcore.evaluation.protocol): {result['ours_s']:8.2f} s  ({runs(result['repeats'])})",
        f"  loop over thresholds (peer):              {result['peer_s']:8.2f} s  ({runs(result['peer_repeats'])})",
        f"  speed-up {result['speedup']:.1f}x (goal: at least {SPEEDUP_GOAL:g}x, {verdict})",
        f"  AP {aps}, the same from both",
    ])
