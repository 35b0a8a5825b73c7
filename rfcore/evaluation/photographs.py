"""The bundled photographs as an evaluation set: how a detector trained on synthetic faces fares on real ones.

``assets/images`` holds annotated photographs (:mod:`rfcore.assets` describes the
format): two public-domain portraits and a group picture pasted from them at face
widths of 18 to 180 pixels, twelve faces in all. :func:`photograph_samples` reads
them as :class:`~rfcore.data.sample.FaceSample` (``rfcore train --val photographs``
validates on them), :func:`score_weights` scores a weights file on any samples
with the AP and landmark NME per face-size band of the synthetic validation, and
:func:`face_scores` gives the score each true face got, to see which faces a detector misses.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from torchvision.ops import box_iou

from rfcore.assets import IMAGES, load_annotation, load_image
from rfcore.data.sample import FaceSample
from rfcore.detect_config import TTAConfig
from rfcore.detector import Detector
from rfcore.evaluation.run import detect_images, size_band_summary
from rfcore.evaluation.truth import truth_from_samples

SCORE_THRESHOLD = 0.02
"""Lowest score a detection keeps when scoring: low-scoring faces still add to the AP (as on WIDER FACE)."""

MATCH_IOU = 0.5
"""Overlap at which a detection is on a true face (the AP's own threshold)."""


class FaceScore(NamedTuple):
    """One true face: its image, its box width in pixels, and the best score of a detection on it (0 if none)."""

    image: str
    width: float
    score: float


def photograph_samples(folder=IMAGES) -> list[FaceSample]:
    """Every annotated image of ``folder`` (the bundled photographs by default), in file-name order.

    Raises:
        FileNotFoundError: If ``folder`` holds no annotation, or an image is missing.
        ValueError: If an annotation is malformed (naming the file).
    """
    paths = sorted(Path(folder).glob("*.json"))
    if not paths:
        raise FileNotFoundError(f"{folder}: no annotation (*.json) to evaluate on")
    samples = []
    for path in paths:
        annotation = load_annotation(path)
        samples.append(FaceSample(load_image(annotation.image_path), annotation.boxes.numpy(),
                                  annotation.landmarks.numpy(), annotation.image_path.name))
    return samples


def scoring_detector(weights, preset: str, tta: TTAConfig | None = None) -> Detector:
    """The detector both scorers run: every detection from :data:`SCORE_THRESHOLD` up, each image at its own size,
    in one pass unless ``tta`` asks for more."""
    return Detector(weights=weights, preset=preset, threshold=SCORE_THRESHOLD, max_size=None, tta=tta)


def score_weights(weights, samples: list[FaceSample], preset: str = "mobilenet0.25",
                  tta: TTAConfig | None = None) -> dict:
    """AP and landmark NME per face-size band of a weights file on ``samples``, at their original size.

    Args:
        weights: safetensors file.
        samples: Images and faces, e.g. :func:`photograph_samples`.
        preset: Preset of the weights.
        tta: Test-time augmentation (:class:`~rfcore.detect_config.TTAConfig`: flip, several sizes, box voting
            [paper §4.2]); ``None``: one pass at the original size.

    Returns:
        :func:`rfcore.evaluation.run.size_band_summary`: ``ap``, ``nme`` and ``faces`` per band, ``detections``.
    """
    detector = scoring_detector(weights, preset, tta=tta)
    truth = truth_from_samples(samples)
    predictions = detect_images(detector, [sample.image for sample in samples], truth.names, progress=False)
    return size_band_summary(truth, predictions)


def face_scores(weights, samples: list[FaceSample], preset: str = "mobilenet0.25") -> list[FaceScore]:
    """The score each true face of ``samples`` got from a weights file, detected as :func:`score_weights` does.

    A face's score is the highest of the detections that overlap it by IoU >= :data:`MATCH_IOU`, or 0 when none
    does (no detection scored :data:`SCORE_THRESHOLD` or more on it).

    Args:
        weights: safetensors file.
        samples: Images and faces, e.g. :func:`photograph_samples`.
        preset: Preset of the weights.

    Returns:
        One :class:`FaceScore` per true face, in the samples' order.
    """
    detector = scoring_detector(weights, preset)
    result = []
    for sample in samples:
        faces = detector.detect(sample.image, color="RGB")
        truth = torch.as_tensor(sample.boxes, dtype=torch.float32).reshape(-1, 4)  # (T, 4) x1 y1 x2 y2
        boxes = torch.tensor([face.box for face in faces], dtype=torch.float32).reshape(-1, 4)  # (D, 4)
        scores = torch.tensor([face.score for face in faces], dtype=torch.float32)  # (D,)
        on_face = box_iou(truth, boxes) >= MATCH_IOU  # (T, D)
        # (T, D) -> (T,): a column of zeros stands for "no detection on it"
        best = torch.cat([torch.where(on_face, scores, 0.0), torch.zeros(len(truth), 1)], dim=1).amax(dim=1)
        widths = truth[:, 2] - truth[:, 0]
        result += [FaceScore(sample.path, float(w), float(b)) for w, b in zip(widths, best)]
    return result
