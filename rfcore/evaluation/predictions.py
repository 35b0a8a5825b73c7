"""Detections to evaluate: in memory, or in the official WIDER FACE layout of one text file per image.

The layout is ``PRED_DIR/<event>/<image name>.txt`` (in general the image's
path relative to the images folder, with ``.txt`` for its extension), and
each file reads::

    0--Parade/0_Parade_marchingband_1_20.jpg     the image
    2                                            the number of faces
    449.00 330.00 122.00 149.00 0.99871337       x y w h score, one line per face
    ...

As in the official toolbox, files are found by the ground truth's image
names and the first line is not checked. Lines may end in spaces and blank
lines after the count are skipped; anything else out of place raises
``ValueError`` naming the file and the line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rfcore.data.widerface import parse_numbers
from rfcore.evaluation.truth import GroundTruth, xyxy_to_xywh
from rfcore.files import confined, write_text

FACE_LINE = "x y w h score"
"""What each face line of a prediction file holds."""


@dataclass(frozen=True, eq=False)
class ImagePredictions:
    """The detections of one image.

    Attributes:
        boxes: ``(D, 4)`` float64 ``x y w h`` in pixels.
        scores: ``(D,)`` float64 confidences (any scale: the protocol
            normalises them over the whole set).
        landmarks: ``(D, 5, 2)`` float64 points, or ``None`` when the
            detections have none (files of the official layout).
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray | None = None

    def __post_init__(self) -> None:
        count = len(self.scores)
        if self.boxes.shape != (count, 4) or self.scores.shape != (count,):
            raise ValueError(
                f"predictions need (D, 4) boxes and (D,) scores, got {self.boxes.shape} and {self.scores.shape}"
            )
        if self.landmarks is not None and self.landmarks.shape != (count, 5, 2):
            raise ValueError(f"predictions need (D, 5, 2) landmarks or None, got {self.landmarks.shape}")

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def from_xyxy(cls, boxes, scores, landmarks=None) -> ImagePredictions:
        """From ``(D, 4)`` ``x1 y1 x2 y2`` boxes, ``(D,)`` scores and optional ``(D, 5, 2)`` landmarks."""
        points = None if landmarks is None else np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
        return cls(xyxy_to_xywh(boxes), np.asarray(scores, np.float64).reshape(-1), points)

    @classmethod
    def from_faces(cls, faces: Sequence) -> ImagePredictions:
        """From the :class:`rfcore.postprocess.Face` list of one image, landmarks included."""
        return cls.from_xyxy(
            [face.box for face in faces], [face.score for face in faces], [face.landmarks for face in faces]
        )


def prediction_path(pred_dir, name: str) -> Path:
    """Where image ``name`` (a :attr:`GroundTruth.names` key) keeps its predictions: ``PRED_DIR/<name>.txt``.

    Raises:
        ValueError: If ``name`` is absolute or climbs out of ``pred_dir`` (:func:`rfcore.files.confined`).
    """
    return confined(pred_dir, f"{name}.txt", "image name from the ground truth")


# ---------------------------------------------------------------- reading


def read_prediction_file(path) -> ImagePredictions:
    """Read one prediction file of the official layout (see the module docstring).

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: ``"<file>:<line>: <problem>"`` for a missing or bad face
            count, a face line without exactly five finite numbers or with a
            negative width or height, or fewer or more face lines than the count.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prediction file {path} does not exist")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    if len(lines) < 2:
        raise ValueError(f"{path}:{len(lines) + 1}: expected the image name on line 1 and the number of faces "
                         f"on line 2, then one '{FACE_LINE}' line per face; the file ends early")
    count = parse_count(lines[1], path)
    faces = [(number, text) for number, text in enumerate(lines[2:], start=3) if text.strip()]
    if len(faces) < count:
        raise ValueError(
            f"{path}:{len(lines) + 1}: line 2 announces {count} faces, the file has {len(faces)} face lines"
        )
    if len(faces) > count:
        raise ValueError(f"{path}:{faces[count][0]}: more face lines than the {count} announced on line 2")
    rows = np.array([parse_face_line(text, number, path) for number, text in faces], np.float64).reshape(-1, 5)
    return ImagePredictions(rows[:, :4], rows[:, 4])


def parse_count(text: str, path: Path) -> int:
    """Line 2 of a prediction file -> the number of faces."""
    try:
        count = int(text.strip())
    except ValueError:
        count = -1
    if count < 0:
        raise ValueError(f"{path}:2: expected the number of faces (a whole number >= 0), got {text.strip()!r}")
    return count


def parse_face_line(text: str, number: int, path: Path) -> list[float]:
    """One ``x y w h score`` line -> five floats."""
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(f"{path}:{number}: expected 5 numbers '{FACE_LINE}', got {len(fields)}: {text.strip()!r}")
    values = parse_numbers(fields, number, path)
    if values[2] < 0 or values[3] < 0:
        raise ValueError(f"{path}:{number}: negative box size w={values[2]:g}, h={values[3]:g}")
    return values


def read_predictions(pred_dir, truth: GroundTruth) -> dict[str, ImagePredictions]:
    """The prediction file of every image of ``truth``.

    Raises:
        FileNotFoundError: If ``pred_dir`` or any file is missing, naming
            how many are missing and the first few expected paths.
        ValueError: For a malformed file (see :func:`read_prediction_file`).
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise FileNotFoundError(f"prediction folder {pred_dir} does not exist")
    paths = [prediction_path(pred_dir, name) for name in truth.names]
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(paths)} prediction files are missing in {pred_dir}, e.g. "
            + ", ".join(map(str, missing[:3]))
        )
    return {name: read_prediction_file(path) for name, path in zip(truth.names, paths)}


# ---------------------------------------------------------------- writing


def format_prediction_file(image_file: str, predictions: ImagePredictions) -> str:
    """The text of one prediction file: coordinates to 0.01 pixel, scores to 8 decimals."""
    lines = [image_file, str(len(predictions))]
    lines += [
        f"{x:.2f} {y:.2f} {w:.2f} {h:.2f} {score:.8f}"
        for (x, y, w, h), score in zip(predictions.boxes.tolist(), predictions.scores.tolist())
    ]
    return "\n".join(lines) + "\n"


def write_predictions(pred_dir, truth: GroundTruth, predictions: Mapping[str, ImagePredictions]) -> list[Path]:
    """Write the predictions of every image of ``truth`` in the official layout.

    Args:
        pred_dir: Destination folder; event folders are created as needed.
        truth: The images, whose names place the files and whose image
            paths fill the first lines.
        predictions: Image key -> :class:`ImagePredictions`.

    Returns:
        The files written, in image order.

    Raises:
        KeyError: If an image of ``truth`` has no predictions.
    """
    written = []
    for name, image_file in zip(truth.names, truth.image_files):
        path = prediction_path(pred_dir, name)
        write_text(path, format_prediction_file(image_file, predictions[name]))
        written.append(path)
    return written
