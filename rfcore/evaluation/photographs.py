"""The bundled photographs as an evaluation set: how a detector trained on synthetic faces fares on real ones.

``assets/images`` holds annotated photographs (:mod:`rfcore.assets` describes the
format): two public-domain portraits and a group picture pasted from them at face
widths of 18 to 180 pixels, twelve faces in all. :func:`photograph_samples` reads
them as :class:`~rfcore.data.sample.FaceSample` (``rfcore train --val photographs``
validates on them), and :func:`score_weights` scores a weights file on any samples
with the AP and landmark NME per face-size band of the synthetic validation.
"""

from __future__ import annotations

from pathlib import Path

from rfcore.assets import IMAGES, load_annotation, load_image
from rfcore.data.sample import FaceSample
from rfcore.detector import Detector
from rfcore.evaluation.run import detect_images, size_band_summary
from rfcore.evaluation.truth import truth_from_samples

SCORE_THRESHOLD = 0.02
"""Lowest score a detection keeps when scoring: low-scoring faces still add to the AP (as on WIDER FACE)."""


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


def score_weights(weights, samples: list[FaceSample], preset: str = "mobilenet0.25") -> dict:
    """AP and landmark NME per face-size band of a weights file on ``samples``, at their original size.

    Args:
        weights: safetensors file.
        samples: Images and faces, e.g. :func:`photograph_samples`.
        preset: Preset of the weights.

    Returns:
        :func:`rfcore.evaluation.run.size_band_summary`: ``ap``, ``nme`` and ``faces`` per band, ``detections``.
    """
    detector = Detector(weights=weights, preset=preset, threshold=SCORE_THRESHOLD, max_size=None)
    truth = truth_from_samples(samples)
    predictions = detect_images(detector, [sample.image for sample in samples], truth.names, progress=False)
    return size_band_summary(truth, predictions)
