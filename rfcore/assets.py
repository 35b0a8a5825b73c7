"""Small hand-annotated sample images: the annotation format and its loader.

An annotation is a JSON file next to its image::

    {
      "image": "grace_hopper.jpg",           # image file, relative to the JSON file
      "image_size": [600, 512],               # (height, width) in pixels
      "faces": [
        {
          "box": [x1, y1, x2, y2],            # pixels, x to the right, y down
          "landmarks": [[x, y], ... 5 points] # or null when not annotated
        }
      ]
    }

Landmarks follow the WIDER FACE / RetinaFace order (see :mod:`rfcore.boxes`):
left eye, right eye, nose tip, left mouth corner, right mouth corner, where
"left" is the side on the image's left (the subject's right). Other keys
(``source``, ``landmark_order``) document the file and are not read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from rfcore.anchors import check_image_size
from rfcore.boxes import as_boxes, as_landmarks


@dataclass(frozen=True)
class Annotation:
    """The faces annotated on one image.

    Attributes:
        image_path: Absolute path of the image file.
        image_size: ``(height, width)`` in pixels.
        boxes: ``(F, 4)`` float32 faces ``(x1, y1, x2, y2)``.
        landmarks: ``(F, 5, 2)`` float32 points, all ``-1`` for a face without
            landmark annotation.
    """

    image_path: Path
    image_size: tuple[int, int]
    boxes: torch.Tensor
    landmarks: torch.Tensor


def load_annotation(path) -> Annotation:
    """Read an annotation file in the format of this module's docstring.

    Args:
        path: Path of the ``.json`` file.

    Returns:
        The :class:`Annotation`; the image itself is not read.

    Raises:
        FileNotFoundError: If the JSON file or the image it names is missing.
        ValueError: If a key is missing, a box or landmark list is malformed,
            or a box lies outside ``image_size``.
    """
    path = Path(path).resolve()
    record = json.loads(path.read_text())
    try:
        image_path = path.parent / record["image"]
        image_size = check_image_size(record["image_size"])
        faces = record["faces"]
    except KeyError as exc:
        raise ValueError(f"{path}: missing key {exc}") from None
    if not image_path.is_file():
        raise FileNotFoundError(f"{path}: image {image_path} does not exist")
    parsed = [_parse_face(face, i, path) for i, face in enumerate(faces)]
    boxes = as_boxes(torch.stack([box for box, _ in parsed]) if parsed else torch.zeros(0, 4), f"{path} boxes")
    _check_inside(boxes, image_size, path)
    points = torch.stack([p for _, p in parsed]) if parsed else torch.zeros(0, 5, 2)
    landmarks = as_landmarks(points, len(parsed), f"{path} landmarks")
    return Annotation(image_path=image_path, image_size=image_size, boxes=boxes, landmarks=landmarks)


def load_image(path) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB.

    Raises:
        FileNotFoundError: If OpenCV cannot read the file.
    """
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read an image from {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _parse_face(face: dict, index: int, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One face record -> ``(4,)`` box and ``(5, 2)`` landmarks (``-1`` when null)."""
    try:
        box = torch.tensor(face["box"], dtype=torch.float32)
        points = face.get("landmarks")
        points = torch.full((5, 2), -1.0) if points is None else torch.tensor(points, dtype=torch.float32)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: face {index} cannot be read: {exc!r}") from None
    if box.shape != (4,):
        raise ValueError(f"{path}: face {index} box must have shape (4,) as [x1, y1, x2, y2], got {face['box']!r}")
    if points.shape != (5, 2):
        raise ValueError(f"{path}: face {index} landmarks must be five [x, y] points or null, got {face['landmarks']!r}")
    return box, points


def _check_inside(boxes: torch.Tensor, image_size: tuple[int, int], path: Path) -> None:
    height, width = image_size
    outside = (boxes[:, :2] < 0).any(dim=1) | (boxes[:, 2] > width) | (boxes[:, 3] > height)
    if outside.any():
        i = int(outside.nonzero()[0])
        raise ValueError(f"{path}: face {i} box {boxes[i].tolist()} lies outside the {width}x{height} image")
