"""The settings of detection, in one place and without torch: :class:`DetectConfig` and :class:`TTAConfig`.

:class:`~rfcore.detector.Detector` takes its defaults from here, and so do
``rfcore detect``, ``rfcore align`` and ``rfcore eval``, the way ``rfcore
train`` reads :class:`~rfcore.train.config.TrainConfig`. The defaults are
biubug6's evaluation settings apart from the threshold (0.5; its demo uses
0.6): top-k 5000 before NMS at IoU 0.4, at most 750 faces per image.
:data:`EVAL_THRESHOLD` is the low threshold of WIDER FACE evaluation, where
low-scoring faces still add to the AP; :class:`TTAConfig` is the paper's
flip, multi-scale test and box voting [paper §4.2]. :data:`DEFAULT_MAX_SIZE`
and :data:`MAX_DECODE_PIXELS` bound the memory one image may take.
"""

from __future__ import annotations

from dataclasses import dataclass

PAPER_TEST_SCALES = (500, 800, 1100, 1400, 1700)
"""Short-edge sizes of the paper's multi-scale test [paper §4.2]."""

DEFAULT_MAX_SIZE = 4096
"""Default cap on the long edge of the network input (``--max-size``, ``Detector(max_size=...)``; 0 lifts it).

Detection costs about 44 bytes per pixel of network input, on top of the
decoded image and the ~0.7 GB of the loaded libraries: at most 4096x4096
keeps one image under about 1.6 GB whatever the file's size."""

MAX_DECODE_PIXELS = 100_000_000
"""Most pixels an image file may decode to (300 MB of RGB) unless raised (``--max-pixels``; 0 lifts it)."""

OPENCV_MAX_PIXELS = 1 << 30
"""The most pixels OpenCV decodes in one image (its ``CV_IO_MAX_IMAGE_PIXELS``); a limit of 0 means this one."""

EVAL_THRESHOLD = 0.02
"""Lowest score kept when evaluating (biubug6's setting, ``rfcore eval`` and ``rfcore train --val``)."""


def is_positive_int(value) -> bool:
    """True for an ``int`` of at least 1."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@dataclass(frozen=True)
class TTAConfig:
    """Test-time augmentation [paper §4.2]: flip, several scales, box voting.

    Attributes:
        flip: Also run on the horizontally flipped image.
        scales: Short-edge sizes to run at; ``None`` stands for the
            detector's own input size (the original size by default).
            ``(None,)`` with ``flip=True`` is flip-only.
        vote_iou: IoU above which a candidate votes for a kept face.
    """

    flip: bool = True
    scales: tuple[int | None, ...] = PAPER_TEST_SCALES
    vote_iou: float = 0.4

    def __post_init__(self) -> None:
        object.__setattr__(self, "scales", tuple(self.scales))  # hashable, so detectors can be cached
        if not self.scales or not all(s is None or is_positive_int(s) for s in self.scales):
            raise ValueError(f"scales must be positive ints or None, at least one, got {self.scales!r}")
        if not 0.0 < self.vote_iou < 1.0:
            raise ValueError(f"vote_iou must be in (0, 1), got {self.vote_iou}")

    def passes(self) -> list[tuple[int | None, bool]]:
        """``(short_edge, flipped)`` of every network run."""
        return [(scale, flipped) for scale in self.scales for flipped in ((False, True) if self.flip else (False,))]


@dataclass(frozen=True)
class DetectConfig:
    """Which detections a :class:`~rfcore.detector.Detector` keeps.

    Attributes:
        threshold: Face probability a detection must exceed, in ``[0, 1)``.
        nms_iou: IoU threshold of non-maximum suppression, in ``(0, 1]``.
        top_k: Candidates per image kept before NMS.
        max_faces: Faces per image kept after NMS.
        tta: Test-time augmentation, or ``None`` for one pass.

    Raises:
        ValueError: Naming the first option out of range.
    """

    threshold: float = 0.5
    nms_iou: float = 0.4
    top_k: int = 5000
    max_faces: int = 750
    tta: TTAConfig | None = None

    def __post_init__(self) -> None:
        checks = (
            ("threshold", self.threshold, 0.0 <= self.threshold < 1.0, "in [0, 1)"),
            ("nms_iou", self.nms_iou, 0.0 < self.nms_iou <= 1.0, "in (0, 1]"),
            ("top_k", self.top_k, is_positive_int(self.top_k), "a positive int"),
            ("max_faces", self.max_faces, is_positive_int(self.max_faces), "a positive int"),
            ("tta", self.tta, self.tta is None or isinstance(self.tta, TTAConfig), "None or a TTAConfig"),
        )
        for name, value, ok, expected in checks:
            if not ok:
                raise ValueError(f"{name} must be {expected}, got {value!r}")
