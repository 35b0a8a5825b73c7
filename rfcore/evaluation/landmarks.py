"""Five-landmark accuracy: the normalised mean error (NME), its cumulative distribution and the failure rate.

For a face with ground-truth box size ``w x h`` and points ``g_k``, and the
points ``p_k`` of the detection that finds it [paper §4.5]:

    NME = (1/5) sum_k ||p_k - g_k||_2 / sqrt(w h)

A face is measured if it has a landmark annotation and a detection finds it
in the sense of the WIDER FACE protocol (:func:`rfcore.evaluation.protocol.match_image`
with every face counting): its true positive, the highest-scoring detection
whose best face it is at IoU >= 0.5. The cumulative error distribution (CED)
is the share of measured faces with NME at most ``x``; the failure rate is the
share with NME above 10%. The paper reports 9.37% failures for RetinaFace on
WIDER FACE val, 26.31% for MTCNN.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from rfcore.boxes import has_landmarks
from rfcore.evaluation.predictions import ImagePredictions
from rfcore.evaluation.protocol import IOU_THRESHOLD, in_truth_order, match_image, wider_iou
from rfcore.evaluation.truth import GroundTruth

FAILURE_NME = 0.10
"""A face whose NME is above this is a failure [paper §4.5]."""


@dataclass(frozen=True, eq=False)
class LandmarkResult:
    """Landmark errors of the measured faces of a set.

    Attributes:
        errors: ``(M,)`` NME of each measured face (annotated and found).
        annotated: Faces with a landmark annotation (measured or not).
    """

    errors: np.ndarray
    annotated: int

    @property
    def mean_nme(self) -> float:
        """Mean NME over the measured faces (NaN if none)."""
        return float(self.errors.mean()) if len(self.errors) else float("nan")

    @property
    def failure_rate(self) -> float:
        """Share of measured faces with NME above :data:`FAILURE_NME` (NaN if none)."""
        return failure_rate(self.errors)


def landmark_nme(points: np.ndarray, truth_points: np.ndarray, truth_boxes: np.ndarray) -> np.ndarray:
    """NME of each face, normalised by its ground-truth box size ``sqrt(w h)``.

    Args:
        points: ``(F, 5, 2)`` predicted landmarks.
        truth_points: ``(F, 5, 2)`` annotated landmarks.
        truth_boxes: ``(F, 4)`` ground-truth boxes ``x y w h``.

    Returns:
        ``(F,)`` NME.
    """
    distances = np.linalg.norm(points - truth_points, axis=2)  # (F, 5)
    return distances.mean(axis=1) / np.sqrt(truth_boxes[:, 2] * truth_boxes[:, 3])


def image_landmark_errors(
    predictions: ImagePredictions, boxes: np.ndarray, landmarks: np.ndarray, iou_threshold: float = IOU_THRESHOLD
) -> np.ndarray:
    """NME of the annotated faces of one image that a detection finds.

    Args:
        predictions: The image's detections, with landmarks.
        boxes: ``(G, 4)`` faces ``x y w h``.
        landmarks: ``(G, 5, 2)`` their points, ``-1`` where not annotated.
        iou_threshold: Least IoU to find a face.

    Returns:
        ``(M,)`` NME, faces in the order of their true positives.
    """
    if len(boxes) == 0 or len(predictions) == 0:
        return np.zeros(0)
    order = np.argsort(-predictions.scores, kind="stable")
    iou = wider_iou(predictions.boxes[order], boxes)  # (D, G)
    match = match_image(iou, np.ones(len(boxes), dtype=bool), iou_threshold)
    found = np.flatnonzero(match.true_positive)
    faces = match.face[found]
    measured = has_landmarks(landmarks[faces])
    detections, faces = order[found[measured]], faces[measured]
    return landmark_nme(predictions.landmarks[detections], landmarks[faces], boxes[faces])


def evaluate_landmarks(
    truth: GroundTruth, predictions: Mapping[str, ImagePredictions], iou_threshold: float = IOU_THRESHOLD
) -> LandmarkResult:
    """NME of every annotated face of ``truth`` that a detection finds (the module docstring).

    Raises:
        KeyError: If an image has no predictions.
        ValueError: If the predictions of an image with annotated faces carry no landmarks.
    """
    errors = []
    for name, image_predictions, boxes, points in zip(truth.names, in_truth_order(truth, predictions), truth.boxes,
                                                      truth.landmarks):
        if not has_landmarks(points).any():
            continue
        if image_predictions.landmarks is None:
            raise ValueError(f"the predictions of {name!r} have no landmarks to compare with its annotated faces")
        errors.append(image_landmark_errors(image_predictions, boxes, points, iou_threshold))
    count = sum(int(has_landmarks(points).sum()) for points in truth.landmarks)
    return LandmarkResult(np.concatenate([np.zeros(0), *errors]), count)


def ced_curve(errors: np.ndarray, max_error: float = 0.2, points: int = 201) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: the share of faces with NME at most ``x``.

    Args:
        errors: ``(M,)`` NME values.
        max_error: Largest ``x``.
        points: Number of ``x`` values from 0 to ``max_error``.

    Returns:
        ``(P,)`` ``x`` and ``(P,)`` share in ``[0, 1]`` (all zero without faces).
    """
    x = np.linspace(0.0, max_error, points)
    if len(errors) == 0:
        return x, np.zeros(points)
    return x, np.searchsorted(np.sort(errors), x, side="right") / len(errors)


def failure_rate(errors: np.ndarray, limit: float = FAILURE_NME) -> float:
    """Share of faces with NME above ``limit`` (NaN without faces)."""
    return float((errors > limit).mean()) if len(errors) else float("nan")
