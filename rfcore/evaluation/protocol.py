"""The WIDER FACE protocol: average precision at IoU 0.5, computed as the official toolbox computes it.

1. Scores are min-max normalised over every detection of the set (:func:`normalise_scores`).
2. In each image the detections, by descending score, each take the face they overlap most
   (:func:`wider_iou`); at IoU 0.5 or more a face ignored in the subset makes it neither true nor false,
   a counted face not yet taken a true positive, a face already taken a false positive (no fall-back to
   the second-best face); every other detection is false, and images without faces are skipped
   (:func:`match_image`).
3. At each of 1,000 thresholds ``t_k = 1 - k / 1000`` the detections scoring at least ``t_k`` give
   precision and recall over the subset's faces in all images (:func:`pr_curve`); the matching does not
   depend on the threshold, so all counts come from one sorted array (:func:`count_at_least`).
4. AP is the area under the precision envelope, VOC's all-points interpolation (:func:`voc_ap`).

Reference: the MATLAB toolbox of the WIDER FACE website and its Python port
``widerface_evaluate/evaluation.py`` in biubug6/Pytorch_Retinaface; ``rfcore bench eval`` checks the numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from rfcore.evaluation.predictions import ImagePredictions
from rfcore.evaluation.truth import GroundTruth

IOU_THRESHOLD = 0.5
"""A detection finds a face if their IoU is at least this."""

THRESHOLDS = 1 - np.arange(1, 1001) / 1000
"""``(1000,)`` score thresholds ``t_k = 1 - k / 1000``: 0.999, 0.998, ..., 0.0."""


@dataclass(frozen=True, eq=False)
class PRCurve:
    """Precision and recall of one subset over the score thresholds.

    Attributes:
        subset: The subset's name (``"easy"``, ``"all"``, ...).
        ap: Average precision (:func:`voc_ap`); NaN for a subset without faces.
        precision: ``(T,)`` precision at each threshold (0 where no detection
            scores that high).
        recall: ``(T,)`` recall at each threshold (NaN without faces).
        thresholds: ``(T,)`` the thresholds, descending.
        faces: Faces that count in the subset.
    """

    subset: str
    ap: float
    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray
    faces: int


class ImageMatch(NamedTuple):
    """How the detections of one image fare in one subset (detections by descending score).

    Attributes:
        counted: ``(D,)`` bool: a true or false positive (not on an ignored face).
        true_positive: ``(D,)`` bool: the first detection of a counted face.
        face: ``(D,)`` int64 the face taken, ``-1`` for an IoU below the threshold.
    """

    counted: np.ndarray
    true_positive: np.ndarray
    face: np.ndarray


def wider_iou(boxes: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """IoU of ``x y w h`` boxes in the toolbox's inclusive pixel convention.

    The toolbox turns ``x y w h`` into corners ``(x, y)`` and ``(x + w, y + h)``
    and, as Fast R-CNN's ``bbox_overlaps`` does, counts both corners as pixels:
    a box spans ``w + 1`` by ``h + 1``. This raises the IoU of small faces a
    little compared with continuous coordinates (a 10-pixel face shifted by
    5 pixels: 0.375 instead of 0.333).

    Args:
        boxes: ``(D, 4)`` detections ``x y w h``.
        faces: ``(G, 4)`` faces ``x y w h``.

    Returns:
        ``(D, G)`` IoU.
    """
    x1, y1, w1, h1 = (boxes[:, k, None] for k in range(4))  # each (D, 1)
    x2, y2, w2, h2 = (faces[None, :, k] for k in range(4))  # each (1, G)
    inter_w = np.minimum(x1 + w1, x2 + w2) - np.maximum(x1, x2) + 1  # (D, G)
    inter_h = np.minimum(y1 + h1, y2 + h2) - np.maximum(y1, y2) + 1
    inter = np.clip(inter_w, 0, None) * np.clip(inter_h, 0, None)
    union = (w1 + 1) * (h1 + 1) + (w2 + 1) * (h2 + 1) - inter
    return inter / union


def normalise_scores(scores: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Min-max normalise scores over the whole set, to ``[0, 1]``.

    Args:
        scores: Per image ``(D_i,)`` scores.

    Returns:
        Per image ``(D_i,)`` float64 ``(s - min) / (max - min)``, with min and
        max over all images. If all scores are equal they all become 1 (the
        toolbox divides by zero there).
    """
    nonempty = [s for s in scores if len(s)]
    if not nonempty:
        return [np.asarray(s, np.float64) for s in scores]
    low = min(float(s.min()) for s in nonempty)
    high = max(float(s.max()) for s in nonempty)
    if high == low:
        return [np.ones(len(s)) for s in scores]
    return [(np.asarray(s, np.float64) - low) / (high - low) for s in scores]


def match_image(iou: np.ndarray, counts: np.ndarray, iou_threshold: float = IOU_THRESHOLD) -> ImageMatch:
    """Step 2 of the protocol for one image, all detections at once.

    Args:
        iou: ``(D, G)`` IoU of the detections, by descending score, with the
            ``G >= 1`` faces.
        counts: ``(G,)`` bool: the face counts in this subset.
        iou_threshold: Least IoU to find a face.

    Returns:
        The :class:`ImageMatch` of the ``D`` detections.
    """
    best = iou.argmax(axis=1)  # (D,) the face each detection takes
    found = iou[np.arange(len(best)), best] >= iou_threshold
    on_counted = found & counts[best]
    taken = np.flatnonzero(on_counted)
    _, first = np.unique(best[taken], return_index=True)  # earliest detection of each counted face
    true_positive = np.zeros(len(best), dtype=bool)
    true_positive[taken[first]] = True
    return ImageMatch(counted=~found | on_counted, true_positive=true_positive, face=np.where(found, best, -1))


def count_at_least(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """``(T,)`` how many of ``values`` are ``>= threshold``, for each threshold."""
    return len(values) - np.searchsorted(np.sort(values), thresholds, side="left")


def pr_curve(
    counted_scores: np.ndarray, true_positive_scores: np.ndarray, faces: int, thresholds: np.ndarray = THRESHOLDS
) -> tuple[np.ndarray, np.ndarray]:
    """Step 3: precision and recall at each threshold.

    Args:
        counted_scores: Normalised scores of all true and false positives of the set.
        true_positive_scores: Normalised scores of the true positives.
        faces: Faces that count.
        thresholds: ``(T,)`` score thresholds.

    Returns:
        ``(T,)`` precision (0 where no detection reaches the threshold) and
        ``(T,)`` recall (NaN if ``faces`` is 0).
    """
    proposals = count_at_least(counted_scores, thresholds)
    hits = count_at_least(true_positive_scores, thresholds)
    precision = np.divide(hits, proposals, out=np.zeros(len(thresholds)), where=proposals > 0)
    recall = hits / faces if faces else np.full(len(thresholds), np.nan)
    return precision, recall


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Step 4: area under the precision envelope, VOC all-points interpolation.

    With sentinels recall 0 and 1 (precision 0) at the ends, each precision
    becomes the largest precision at any equal or higher recall, and the area
    is the sum of those precisions times the recall steps.

    Args:
        recall: ``(T,)`` non-decreasing recall.
        precision: ``(T,)`` precision at the same thresholds.

    Returns:
        AP in ``[0, 1]``, NaN if the recall is NaN (no faces).
    """
    if np.isnan(recall).any():
        return float("nan")
    recall = np.concatenate([[0.0], recall, [1.0]])
    envelope = np.maximum.accumulate(np.concatenate([[0.0], precision, [0.0]])[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * envelope[steps + 1]))


def sorted_image(predictions: ImagePredictions, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and scores by descending score; equal scores keep their order, as the toolbox's sort does."""
    order = np.argsort(-scores, kind="stable")
    return predictions.boxes[order], scores[order]


def in_truth_order(truth: GroundTruth, predictions: Mapping[str, ImagePredictions]) -> list[ImagePredictions]:
    """The predictions of every image of ``truth``, in its order.

    Raises:
        KeyError: Naming how many images have no predictions and the first of them.
    """
    missing = [name for name in truth.names if name not in predictions]
    if missing:
        raise KeyError(f"no predictions for {len(missing)} of {len(truth)} images, e.g. {missing[0]!r}")
    return [predictions[name] for name in truth.names]


def evaluate(
    truth: GroundTruth,
    predictions: Mapping[str, ImagePredictions],
    iou_threshold: float = IOU_THRESHOLD,
    thresholds: np.ndarray = THRESHOLDS,
) -> dict[str, PRCurve]:
    """Average precision of every subset of ``truth`` (steps 1-4 of the module docstring).

    Args:
        truth: The faces (:mod:`rfcore.evaluation.truth`).
        predictions: Image key -> detections, for every image of ``truth``.
        iou_threshold: Least IoU to find a face.
        thresholds: ``(T,)`` descending score thresholds.

    Returns:
        Subset name -> :class:`PRCurve`, in the order of ``truth.subsets``.

    Raises:
        KeyError: If an image has no predictions.
    """
    per_image = in_truth_order(truth, predictions)
    normalised = normalise_scores([p.scores for p in per_image])
    counted = {name: [] for name in truth.subsets}
    true_positives = {name: [] for name in truth.subsets}
    for i, (image_predictions, scores) in enumerate(zip(per_image, normalised)):
        if len(truth.boxes[i]) == 0 or len(scores) == 0:
            continue
        boxes, scores = sorted_image(image_predictions, scores)
        iou = wider_iou(boxes, truth.boxes[i])  # (D, G)
        for name, masks in truth.subsets.items():
            match = match_image(iou, masks[i], iou_threshold)
            counted[name].append(scores[match.counted])
            true_positives[name].append(scores[match.true_positive])
    curves = {}
    for name in truth.subsets:
        faces = truth.face_count(name)
        precision, recall = pr_curve(
            np.concatenate([[], *counted[name]]), np.concatenate([[], *true_positives[name]]), faces, thresholds
        )
        curves[name] = PRCurve(name, voc_ap(recall, precision), precision, recall, thresholds, faces)
    return curves
