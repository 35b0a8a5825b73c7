"""Validation during training: detect on a held-out set and score it, every few steps and at the end.

``rfcore train --val synthetic`` (the held-out set :data:`rfcore.data.synthetic.VALIDATION`),
``--val synthetic-varied`` (:data:`~rfcore.data.synthetic.VALIDATION_VARIED`), ``--val photographs`` (the
bundled ones) or ``--val path/to/label.txt`` runs the network being trained as a :class:`~rfcore.detector.Detector`
(a copy in eval mode, so the training state is untouched) on the set every ``val_every`` steps and after
the last step, and scores it with :func:`rfcore.evaluation.run.size_band_summary`: AP over all faces and
per face-size band, and the mean landmark NME. Each result is a line of ``log.jsonl``::

    {"step": 500, "validation": {"ap": {"all": 0.97, "small": ...}, "nme": {...}, "faces": {...}, ...}}
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

from torch import nn

from rfcore.data.sample import FaceSample
from rfcore.data.synthetic import validation_set
from rfcore.data.widerface import WiderFace
from rfcore.detect_config import EVAL_THRESHOLD
from rfcore.detector import Detector
from rfcore.evaluation.photographs import photograph_samples
from rfcore.evaluation.run import detect_images, size_band_summary
from rfcore.evaluation.truth import truth_from_samples
from rfcore.progress import progress_bar

NAMED_SETS = ("synthetic", "synthetic-varied", "photographs")
"""Validation sets named instead of given as a ``label.txt``: the two held-out synthetic sets, the bundled photographs."""


def validation_samples(val: str, limit: int | None = None, progress: bool = False) -> list[FaceSample]:
    """The images of a validation set, the first ``limit``.

    ``val`` is one of :data:`NAMED_SETS` or a ``label.txt`` (or its folder).

    Raises:
        FileNotFoundError: If the label file or an image is missing (naming it).
        ValueError: If the set has no face.
    """
    if val == "photographs":
        return photograph_samples()[:limit]
    dataset = validation_set(limit, varied=val == "synthetic-varied") if val.startswith("synthetic") else WiderFace(val)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    samples = [dataset[i] for i in progress_bar(range(count), desc="validation images", unit="image",
                                                 disable=not progress)]
    if not any(len(sample.boxes) for sample in samples):
        where = "the synthetic validation set" if val == "synthetic" else Path(val)
        raise ValueError(f"--val {where}: its {count} images have no face to validate on")
    return samples


class Validator:
    """Scores a network on fixed validation images.

    Args:
        samples: The validation images and faces (:func:`validation_samples`).
        preset: Preset name of the networks it will score.
    """

    def __init__(self, samples: list[FaceSample], preset: str) -> None:
        self.images = [sample.image for sample in samples]
        self.truth = truth_from_samples(samples)
        self.preset = preset

    def __call__(self, network: nn.Module) -> dict:
        """AP per size band and NME of ``network`` (not modified), with the seconds it took."""
        started = time.perf_counter()
        detector = Detector(model=copy.deepcopy(network), preset=self.preset, threshold=EVAL_THRESHOLD, max_size=None)
        predictions = detect_images(detector, self.images, self.truth.names, progress=False)
        return {**size_band_summary(self.truth, predictions), "seconds": round(time.perf_counter() - started, 2)}
