"""Run a detector over an evaluation set and score it: AP per subset, and landmark NME where there are landmarks.

::

    truth = load_wider_mat("eval_tools/ground_truth")
    detector = Detector(threshold=0.02)                       # low threshold: low scores still add to the AP
    predictions = detect_images(detector, image_paths(truth, "WIDER_val/images"), truth.names)
    result = evaluate_all(truth, predictions)
    result.curves["hard"].ap

On in-memory samples, synthetic faces for instance, :func:`evaluate_samples`
does all three steps.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rfcore.data.sample import FaceSample
from rfcore.evaluation.landmarks import FAILURE_NME, LandmarkResult, evaluate_landmarks
from rfcore.evaluation.predictions import ImagePredictions
from rfcore.evaluation.protocol import IOU_THRESHOLD, THRESHOLDS, PRCurve, evaluate
from rfcore.evaluation.truth import ALL_FACES, SIZE_BANDS, GroundTruth, truth_from_samples, with_size_bands
from rfcore.progress import progress_bar


@dataclass(frozen=True, eq=False)
class Evaluation:
    """The scores of a detector on a set.

    Attributes:
        curves: Subset name -> :class:`~rfcore.evaluation.protocol.PRCurve`.
        landmarks: Landmark errors, or ``None`` when the set has no landmark
            annotation or the predictions carry no landmarks.
        images: Images evaluated.
        detections: Detections over all images.
    """

    curves: dict[str, PRCurve]
    landmarks: LandmarkResult | None
    images: int
    detections: int

    def summary(self) -> dict:
        """JSON-ready figures (NaN written as ``None``)."""
        subsets = {name: {"ap": finite(c.ap), "faces": c.faces} for name, c in self.curves.items()}
        landmarks = None
        if self.landmarks is not None:
            landmarks = {
                "annotated_faces": self.landmarks.annotated,
                "measured_faces": len(self.landmarks.errors),
                "mean_nme": finite(self.landmarks.mean_nme),
                "failure_rate": finite(self.landmarks.failure_rate),
                "failure_nme": FAILURE_NME,
            }
        return {
            "images": self.images,
            "detections": self.detections,
            "iou_threshold": IOU_THRESHOLD,
            "score_thresholds": len(THRESHOLDS),
            "subsets": subsets,
            "landmarks": landmarks,
        }


def finite(value: float) -> float | None:
    """``value``, or ``None`` for NaN (which JSON cannot hold)."""
    return None if math.isnan(value) else value


def evaluate_all(truth: GroundTruth, predictions: Mapping[str, ImagePredictions]) -> Evaluation:
    """AP of every subset, and landmark NME when both the set and the predictions have landmarks.

    Raises:
        KeyError: If an image of ``truth`` has no predictions.
    """
    curves = evaluate(truth, predictions)
    per_image = [predictions[name] for name in truth.names]
    with_points = truth.has_landmarks() and all(p.landmarks is not None for p in per_image)
    landmarks = evaluate_landmarks(truth, predictions) if with_points else None
    return Evaluation(curves, landmarks, len(truth), sum(len(p) for p in per_image))


def size_band_summary(truth: GroundTruth, predictions: Mapping[str, ImagePredictions]) -> dict:
    """AP and mean landmark NME over all faces and per face-size band (:data:`SIZE_BANDS`).

    Args:
        truth: A set with the one subset ``"all"`` (a ``label.txt`` set or samples).
        predictions: Image key -> detections with landmarks, for every image of ``truth``.

    Returns:
        JSON-ready ``{"ap": {band: AP}, "nme": {band: mean NME}, "faces": {band: count}, "detections": count}``
        for the bands ``all, small, medium, large``; NaN (no face in a band, or none found) written as ``None``.
    """
    truth = with_size_bands(truth)
    curves = evaluate(truth, predictions)
    bands = (ALL_FACES, *SIZE_BANDS)
    nme = {band: evaluate_landmarks(truth.only_landmarks_of(band), predictions).mean_nme for band in bands}
    return {
        "ap": {band: finite(curves[band].ap) for band in bands},
        "nme": {band: finite(value) for band, value in nme.items()},
        "faces": {band: curves[band].faces for band in bands},
        "detections": sum(len(predictions[name]) for name in truth.names),
    }


def image_paths(truth: GroundTruth, images_dir) -> list[Path]:
    """The image file of every image of ``truth`` under ``images_dir``."""
    return [Path(images_dir) / image_file for image_file in truth.image_files]


def detect_images(
    detector, images: Iterable, names: Sequence[str], progress: bool = True
) -> dict[str, ImagePredictions]:
    """Run a detector on each image, with a progress bar.

    Args:
        detector: A :class:`rfcore.detector.Detector` (its threshold decides the
            lowest score kept; evaluate with a low one such as 0.02).
        images: One path or ``(H, W, 3)`` uint8 RGB array per name.
        names: Image keys, in the order of ``images``.
        progress: Show a tqdm bar on stderr.

    Returns:
        Image key -> :class:`ImagePredictions` with landmarks.

    Raises:
        FileNotFoundError, ValueError: For an image that cannot be read,
            naming its path.
    """
    predictions = {}
    for name, image in progress_bar(zip(names, images), total=len(names), unit="image", disable=not progress,
                                    desc="detect"):
        predictions[name] = ImagePredictions.from_faces(detector.detect(image, color="RGB"))
    return predictions


def evaluate_samples(detector, samples: Iterable[FaceSample], progress: bool = False) -> Evaluation:
    """Detect and score on in-memory samples (e.g. :class:`rfcore.data.SyntheticFaces`); every face counts.

    Args:
        detector: A :class:`rfcore.detector.Detector`.
        samples: The samples, images in RGB.
        progress: Show a progress bar.

    Returns:
        The :class:`Evaluation` with the one subset ``"all"`` and, for samples
        with landmarks, the landmark errors.
    """
    samples = list(samples)
    truth = truth_from_samples(samples)
    predictions = detect_images(detector, (s.image for s in samples), truth.names, progress)
    return evaluate_all(truth, predictions)
