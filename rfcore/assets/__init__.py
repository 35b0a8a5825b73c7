"""The bundled assets (sample images, default weights, recorded runs) and the annotation format with its loader.

The files ship inside this package (:data:`ASSETS`; in a clone ``assets/`` links here), with their
sources and licences in ``README.md`` beside this file.

An annotation is a JSON file next to its image::

    {
      "image": "grace_hopper.jpg",           # image file, relative to the JSON file
      "image_size": [600, 512],               # (height, width) in pixels
      "faces": [{"box": [x1, y1, x2, y2],   # pixels, x to the right, y down
                 "landmarks": [[x, y], ... 5 points]}]  # or null when not annotated
    }

Landmarks follow the order of :mod:`rfcore.boxes` ("left" is the image's left); other keys (``source``,
``landmark_order``) document the file and are not read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import torch

from rfcore.anchors import check_image_size
from rfcore.boxes import as_boxes, as_landmarks, flip_boxes, flip_landmarks
from rfcore.files import write_bytes, write_text

ASSETS = Path(resources.files(__name__))
"""The folder of this package: images, annotations, weights, recorded runs (sources and licences in its README)."""

IMAGES = ASSETS / "images"
"""The bundled images and their annotations."""

FROM_SCRATCH_RUN = ASSETS / "runs" / "synthetic-from-scratch"
"""The recorded from-scratch training run: ``command.txt``, ``log.jsonl``, ``run.json`` and, in a clone only (the
wheel leaves them out), ``weights.safetensors`` and ``snapshots/`` (recorded by ``tools/record_run.py`` with the
recipe :data:`rfcore.train.config.FROM_SCRATCH`)."""

SYNTHETIC_TO_REAL_RUN = ASSETS / "runs" / "synthetic-to-real"
"""The recorded synthetic-to-real run: the files of :data:`FROM_SCRATCH_RUN` (recipe
:data:`rfcore.train.config.SYNTHETIC_TO_REAL`, every synthetic variety option but ``closeups``), its scores
on the photographs in ``run.json``."""

VARIETY_PROBES = ASSETS / "runs" / "variety-probes"
"""What each synthetic variety option is worth: ``probes.json``, one row per short probe run of
``tools/probe_variety.py`` (its command, wall time, load, and scores on both synthetic sets and the photographs)."""

SYNTHETIC_TO_REAL_MESH_RUN = ASSETS / "runs" / "synthetic-to-real-mesh"
"""The recorded joint run, the whole RetinaFace from scratch: the files of :data:`SYNTHETIC_TO_REAL_RUN` (recipe
:data:`rfcore.train.config.SYNTHETIC_TO_REAL_MESH`, the mesh head trained with the rest), in a clone also the
``mesh_decoder.safetensors`` that ``rfcore detect --mesh`` reads beside the weights, and in ``run.json`` what
``rfcore mesh measure`` reports."""

ABLATION_RUN = ASSETS / "runs" / "ablation"
"""A recorded ``rfcore experiment ablation``: ``ablation.json`` / ``.md`` / ``.png`` and each run's log."""

CAPSTONE_RUNS = ASSETS / "runs" / "capstone"
"""Recorded capstone runs of notebook 08 (``tools/record_capstone.py``): one folder per run with its ``run.json``."""


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


GROUP_LAYOUT = (
    # portrait annotation, face width in the group (px), face centre (x, y), mirrored
    ("grace_hopper.json", 180, (150, 200), False),
    ("astronaut.json", 130, (420, 170), True),
    ("astronaut.json", 84, (640, 130), False),
    ("grace_hopper.json", 60, (800, 120), True),
    ("grace_hopper.json", 44, (600, 370), True),
    ("astronaut.json", 32, (720, 360), False),
    ("grace_hopper.json", 24, (810, 350), False),
    ("astronaut.json", 18, (880, 330), True),
    ("astronaut.json", 40, (410, 420), False),
    ("grace_hopper.json", 100, (880, 460), False),
)
"""Where :func:`make_group_picture` pastes each portrait."""


def make_group_picture(size: tuple[int, int] = (540, 960)) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """Compose a many-face picture from the annotated portraits, with exact ground truth.

    No multi-face photograph with a clear licence is available offline, so
    head-and-shoulders crops of the public-domain portraits are pasted over a
    plain gradient at face widths from 180 px down to 18 px (some mirrored),
    following :data:`GROUP_LAYOUT`. Each face's box and landmarks follow from
    its paste's scale and offset.

    Args:
        size: ``(height, width)`` of the picture.

    Returns:
        The ``(H, W, 3)`` uint8 RGB picture, ``(F, 4)`` face boxes and
        ``(F, 5, 2)`` landmarks.
    """
    height, width = size
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]  # (H, 1, 1)
    top, bottom = np.array([200, 214, 226], np.float32), np.array([96, 112, 128], np.float32)
    picture = np.broadcast_to((1 - ramp) * top + ramp * bottom, (height, width, 3)).astype(np.uint8)
    boxes, points = [], []
    for name, face_width, centre, mirrored in GROUP_LAYOUT:
        annotation = load_annotation(IMAGES / name)
        crop, box, landmarks = _portrait_crop(load_image(annotation.image_path), annotation, face_width, mirrored)
        offset = torch.tensor(centre, dtype=torch.float32) - (box[:2] + box[2:]) / 2
        offset = offset.round()
        _paste(picture, crop, int(offset[0]), int(offset[1]))
        boxes.append(box + offset.repeat(2))
        points.append(landmarks + offset)
    return picture, torch.stack(boxes), torch.stack(points)


def _portrait_crop(image: np.ndarray, annotation: Annotation, face_width: float, mirrored: bool):
    """Head and shoulders of the first face, scaled to ``face_width`` (and mirrored).

    Returns:
        The crop ``(h, w, 3)``, its face box ``(4,)`` and landmarks ``(5, 2)``
        in crop pixels.
    """
    box, landmarks = annotation.boxes[0], annotation.landmarks[0]
    w, h = float(box[2] - box[0]), float(box[3] - box[1])
    x1, y1 = max(0, int(box[0] - 0.3 * w)), max(0, int(box[1] - 0.4 * h))
    x2, y2 = min(image.shape[1], int(box[2] + 0.3 * w)), min(image.shape[0], int(box[3] + 0.5 * h))
    scale = face_width / w
    out_size = (round((x2 - x1) * scale), round((y2 - y1) * scale))
    crop = cv2.resize(image[y1:y2, x1:x2], out_size, interpolation=cv2.INTER_AREA)
    # pixel (i, j) of the crop covers [j, j + 1) * (1 / scale) + x1: points map by (p - origin) * scale
    stretch = torch.tensor([out_size[0] / (x2 - x1), out_size[1] / (y2 - y1)])
    origin = torch.tensor([x1, y1], dtype=torch.float32)
    box = torch.cat([(box[:2] - origin) * stretch, (box[2:] - origin) * stretch])
    landmarks = (landmarks - origin) * stretch
    if mirrored:
        crop = crop[:, ::-1]
        box, landmarks = flip_boxes(box, out_size[0]), flip_landmarks(landmarks, out_size[0])
    return np.ascontiguousarray(crop), box, landmarks


def _paste(picture: np.ndarray, crop: np.ndarray, x: int, y: int) -> None:
    """Copy ``crop`` into ``picture`` with its top-left corner at ``(x, y)``, clipped."""
    height, width = picture.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + crop.shape[1], width), min(y + crop.shape[0], height)
    picture[y0:y1, x0:x1] = crop[y0 - y : y1 - y, x0 - x : x1 - x]


def write_group_picture(folder=IMAGES, name: str = "group") -> Path:
    """Write :func:`make_group_picture` as ``NAME.jpg`` with its annotation ``NAME.json``.

    Args:
        folder: Destination folder.
        name: File stem.

    Returns:
        The path of the annotation file (readable by :func:`load_annotation`).
    """
    folder = Path(folder)
    picture, boxes, landmarks = make_group_picture()
    image_path = folder / f"{name}.jpg"
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise OSError(f"cannot encode {image_path}")
    write_bytes(image_path, encoded.tobytes())
    record = {
        "image": image_path.name,
        "image_size": list(picture.shape[:2]),
        "source": "made by rfcore.assets.write_group_picture from grace_hopper.jpg and astronaut.jpg",
        "landmark_order": ["left eye", "right eye", "nose tip", "left mouth corner", "right mouth corner"],
        "faces": [
            {"box": [round(v, 2) for v in box.tolist()], "landmarks": [[round(v, 2) for v in p] for p in points.tolist()]}
            for box, points in zip(boxes, landmarks)
        ],
    }
    faces = ",\n".join(f"    {json.dumps(face)}" for face in record.pop("faces"))
    head = json.dumps(record, indent=2)[:-2]  # without the closing "\n}"
    json_path = folder / f"{name}.json"
    write_text(json_path, f'{head},\n  "faces": [\n{faces}\n  ]\n}}\n')
    return json_path
