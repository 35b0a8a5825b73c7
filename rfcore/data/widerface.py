"""WIDER FACE in the retinaface_gt v1.1 ``label.txt`` layout, and any folder like it.

A dataset folder holds ``label.txt`` and the ``images/`` folder its paths are relative to. ``label.txt``
lists images, each a header line followed by one line per face::

    # 0--Parade/some_image.jpg
    120 84 36 44 130.2 101.5 0.0 146.8 100.9 0.0 ... 147.1 119.0 0.0 0.91

The header is ``#`` and a path inside ``images/`` (no whitespace, not absolute, no ``..``; a UTF-8
byte-order mark is allowed). A training face line has 20 numbers: the box ``x y w h``, five ``lx ly flag``
triples (left eye, right eye, nose tip, left and right mouth corner) and a score, the flags and score
unused; a face whose first landmark x is negative has no landmarks (biubug6/Pytorch_Retinaface's rule). A
validation face line has the 4 box numbers only, and all face lines of a file have the count of its
first. Malformed lines raise ``ValueError`` naming the file and line; boxes of zero size, or wholly
outside their image (:func:`outside_image`), are dropped, counted and warned about.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch.utils.data

from rfcore.data.sample import MISSING, FaceSample
from rfcore.files import name_problem
from rfcore.headers import header_size
from rfcore.image import check_image_file, read_image

VALUES_PER_FACE = {
    4: "x y w h",
    20: "x y w h, five 'lx ly flag' triples, score",
}
"""Accepted face-line lengths and what they hold."""

LARGEST_VALUE = float(np.finfo(np.float32).max)
"""Numbers of a face line are kept as float32: larger ones would become infinite."""

LANDMARK_COLUMNS = (4, 5, 7, 8, 10, 11, 13, 14, 16, 17)
"""Columns of a 20-number face line that hold the ``(lx, ly)`` of the five points."""

Transform = Callable[[FaceSample, np.random.Generator], FaceSample]
"""A training transform, ``transform(sample, rng) -> sample`` (:class:`rfcore.data.augment.TrainTransform`)."""


@dataclass(frozen=True)
class LabelEntry:
    """One image of a ``label.txt``.

    Attributes:
        image: Path relative to the images folder.
        line: Line number (1-based) of the image's header.
        boxes: ``(F, 4)`` float32 faces ``(x1, y1, x2, y2)``.
        landmarks: ``(F, 5, 2)`` float32 points, ``-1`` for faces without.
    """

    image: str
    line: int
    boxes: np.ndarray
    landmarks: np.ndarray


@dataclass(frozen=True)
class LabelFile:
    """A parsed ``label.txt``.

    Attributes:
        path: The file.
        entries: The images that parsed, in file order.
        skipped: One message per image left out for a malformed line
            (only with ``skip_bad``).
        dropped_boxes: Faces of zero width or height that were left out.
    """

    path: Path
    entries: tuple[LabelEntry, ...]
    skipped: tuple[str, ...]
    dropped_boxes: int


class _Block(NamedTuple):
    """The raw lines of one image.

    Attributes:
        line: Line number of the header (of the first line for orphan face lines).
        image: Image path from the header.
        faces: ``(line number, text)`` of each face line.
        problem: Why the block has no usable header, or ``None``.
    """

    line: int
    image: str
    faces: list[tuple[int, str]]
    problem: str | None


def read_label_file(path, skip_bad: bool = False) -> LabelFile:
    """Parse a ``label.txt`` in the layout of the module docstring.

    Args:
        path: The file.
        skip_bad: Leave out an image with a malformed line (and record why)
            instead of raising.

    Returns:
        The :class:`LabelFile`; images themselves are not checked here.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: ``"<file>:<line>: <problem>"`` for a face line with the
            wrong number of values, a value that is not a finite number, a
            negative width or height, a face line without an image header,
            or an image path that is absolute or climbs out of the images
            folder; also for a file that is not UTF-8 text.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark, as some editors write, is dropped
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    blocks = _split_blocks(text.splitlines())
    layout = _values_per_face(blocks)
    entries, skipped, dropped = [], [], 0
    for block in blocks:
        try:
            entry, num_dropped = _parse_block(block, layout, path)
        except ValueError as exc:
            if not skip_bad:
                raise
            skipped.append(str(exc))
            continue
        entries.append(entry)
        dropped += num_dropped
    return LabelFile(path, tuple(entries), tuple(skipped), dropped)


def _split_blocks(lines: list[str]) -> list[_Block]:
    """Group the lines by image header; face lines before any header form a block of their own."""
    blocks: list[_Block] = []
    for number, text in enumerate(lines, start=1):
        text = text.strip()
        if not text:
            continue
        if text.startswith("#"):
            fields = text[1:].split()
            problem = name_problem(fields[0]) if fields else "a '#' header without an image path"
            blocks.append(_Block(number, fields[0] if fields else "", [], problem))
        elif not blocks:
            blocks.append(_Block(number, "", [(number, text)], "a face line before any image header"))
        else:
            blocks[-1].faces.append((number, text))
    return blocks


def _values_per_face(blocks: list[_Block]) -> tuple[int, int] | None:
    """``(count, line)`` of the first face line with an accepted count, or ``None``."""
    for block in blocks:
        for number, text in block.faces if block.problem is None else ():
            count = len(text.split())
            if count in VALUES_PER_FACE:
                return count, number
    return None


def _parse_block(block: _Block, layout: tuple[int, int] | None, path: Path) -> tuple[LabelEntry, int]:
    """One image's lines -> its :class:`LabelEntry` and the number of degenerate boxes dropped."""
    if block.problem is not None:
        raise ValueError(f"{path}:{block.line}: {block.problem}; expected '# relative/path.jpg'")
    count = layout[0] if layout else 4  # without any face line there is nothing to parse
    rows = np.array([_parse_face_line(text, number, layout, path) for number, text in block.faces], np.float64)
    rows = rows.reshape(-1, count)  # (F, count), also for F = 0
    size = rows[:, 2:4]  # (F, 2) w, h
    negative = (size < 0).any(axis=1)
    if negative.any():
        i = int(np.flatnonzero(negative)[0])
        w, h = size[i]
        raise ValueError(f"{path}:{block.faces[i][0]}: negative box size w={w:g}, h={h:g}")
    keep = (size > 0).all(axis=1)
    rows = rows[keep]
    boxes = np.concatenate([rows[:, :2], rows[:, :2] + rows[:, 2:4]], axis=1)  # x y w h -> x1 y1 x2 y2
    entry = LabelEntry(block.image, block.line, boxes.astype(np.float32), _landmarks(rows))
    return entry, int((~keep).sum())


def _parse_face_line(text: str, number: int, layout: tuple[int, int] | None, path: Path) -> list[float]:
    """One face line -> its numbers, checking their count and that each is finite."""
    fields = text.split()
    if layout is None:
        options = " or ".join(f"{n} ({what})" for n, what in VALUES_PER_FACE.items())
        raise ValueError(f"{path}:{number}: expected {options} numbers per face, got {len(fields)}")
    count, first_line = layout
    if len(fields) != count:
        raise ValueError(
            f"{path}:{number}: expected {count} numbers per face ({VALUES_PER_FACE[count]}) "
            f"like line {first_line}, got {len(fields)}"
        )
    return parse_numbers(fields, number, path)


def parse_numbers(fields: list[str], number: int, path: Path) -> list[float]:
    """The fields of line ``number`` of ``path`` as floats.

    Raises:
        ValueError: Naming the file, line and field that is not a finite number.
    """
    values = []
    for k, field in enumerate(fields, start=1):
        try:
            value = float(field)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ValueError(f"{path}:{number}: value {k} is not a finite number: {field!r}")
        if abs(value) > LARGEST_VALUE:
            raise ValueError(f"{path}:{number}: value {k} is too large to be a coordinate: {field!r}")
        values.append(value)
    return values


def _landmarks(rows: np.ndarray) -> np.ndarray:
    """``(F, 4 or 20)`` face rows -> ``(F, 5, 2)`` float32 points, ``-1`` where missing."""
    if rows.shape[1] != 20:
        return np.full((len(rows), 5, 2), MISSING, np.float32)
    points = rows[:, LANDMARK_COLUMNS].reshape(-1, 5, 2)  # (F, 10) -> (F, 5, 2)
    missing = points[:, 0, 0] < 0
    points[missing] = MISSING
    return points.astype(np.float32)


class WiderFace(torch.utils.data.Dataset):
    """Images and faces of a ``label.txt`` + ``images/`` folder.

    Args:
        root: The folder holding ``label.txt``, or the ``label.txt`` itself.
        transform: Optional ``transform(sample, rng) -> sample``, e.g.
            :class:`rfcore.data.augment.TrainTransform`.
        images: Images folder; defaults to ``images/`` beside ``label.txt``.
        skip_bad: Leave out images with a malformed annotation line or an
            image file that is missing or not an image, count them in
            :attr:`skipped` and warn once, instead of raising.
        seed: Seed of the augmentation. Sample ``i`` of epoch ``e`` draws
            from ``numpy.random.default_rng([seed, e, i])``, so the result
            does not depend on worker processes or loading order; ``None``
            draws fresh randomness every time.

    Attributes:
        entries: The usable images, in file order.
        skipped: One message per image left out (``len(dataset.skipped)`` counts them).
        dropped_boxes: Faces of zero width or height left out.
        epoch: Augmentation epoch, set by :meth:`set_epoch`.

    Raises:
        FileNotFoundError: If ``label.txt`` or the images folder is missing,
            or (without ``skip_bad``) an image file is, naming the path.
        ValueError: For a malformed line (see :func:`read_label_file`) or an
            image file OpenCV cannot read, without ``skip_bad``.
    """

    def __init__(
        self,
        root,
        transform: Transform | None = None,
        *,
        images=None,
        skip_bad: bool = False,
        seed: int | None = None,
    ) -> None:
        root = Path(root)
        label_path = root / "label.txt" if root.is_dir() else root
        self.images = Path(images) if images is not None else label_path.parent / "images"
        labels = read_label_file(label_path, skip_bad)
        if not self.images.is_dir():
            raise FileNotFoundError(f"images folder {self.images} does not exist (for {label_path})")
        self.label_path = label_path
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        self.entries, bad_images = self._usable_entries(labels.entries, skip_bad)
        self.skipped = [*labels.skipped, *bad_images]
        self.dropped_boxes = labels.dropped_boxes
        self.entries, self.outside_boxes = self._drop_outside(self.entries)
        self._warn()

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> FaceSample:
        """Load image ``index`` and its faces, then apply the transform.

        Raises:
            ValueError: If the image cannot be decoded, naming its path.
        """
        index = range(len(self))[index]
        entry = self.entries[index]
        path = self.images / entry.image
        sample = FaceSample(read_image(path), entry.boxes.copy(), entry.landmarks.copy(), str(path))
        if self.transform is None:
            return sample
        return self.transform(sample, self.rng(index))

    def rng(self, index: int) -> np.random.Generator:
        """The augmentation generator of sample ``index`` in the current epoch."""
        if self.seed is None:
            return np.random.default_rng()
        return np.random.default_rng([self.seed, self.epoch, index])

    def set_epoch(self, epoch: int) -> None:
        """Draw new augmentations: call before iterating over each epoch.

        DataLoader workers copy the dataset when iteration starts, so this
        reaches them unless the loader uses ``persistent_workers``.
        """
        self.epoch = epoch

    def _usable_entries(self, entries, skip_bad: bool) -> tuple[list[LabelEntry], list[str]]:
        """Check every image file exists and looks like an image OpenCV reads."""
        usable, problems = [], []
        for entry in entries:
            error = _image_error(self.images / entry.image, f"{self.label_path}:{entry.line}")
            if error is None:
                usable.append(entry)
            elif skip_bad:
                problems.append(str(error))
            else:
                raise error
        return usable, problems

    def _drop_outside(self, entries: list[LabelEntry]) -> tuple[list[LabelEntry], list[str]]:
        """The entries without their boxes that lie wholly outside the image, and a note per such box."""
        kept, notes = [], []
        for entry in entries:
            size = header_size(self.images / entry.image)[1]
            outside = np.zeros(len(entry.boxes), bool) if size is None else outside_image(entry.boxes, size)
            notes += [f"{self.label_path}:{entry.line}: {entry.image} box {entry.boxes[i].tolist()} in a "
                      f"{size[1]}x{size[0]} image" for i in np.flatnonzero(outside)]
            kept.append(dataclasses.replace(entry, boxes=entry.boxes[~outside], landmarks=entry.landmarks[~outside])
                        if outside.any() else entry)
        return kept, notes

    def _warn(self) -> None:
        if self.skipped:
            warnings.warn(
                f"{self.label_path}: skipped {len(self.skipped)} bad image(s), see .skipped; "
                f"first: {self.skipped[0]}",
                stacklevel=3,
            )
        if self.dropped_boxes:
            warnings.warn(
                f"{self.label_path}: dropped {self.dropped_boxes} box(es) of zero width or height",
                stacklevel=3,
            )
        if self.outside_boxes:
            warnings.warn(
                f"{self.label_path}: dropped {len(self.outside_boxes)} box(es) lying wholly outside their image, "
                f"first: {self.outside_boxes[0]}; check the label file",
                stacklevel=3,
            )


def outside_image(boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(F,)`` mask of the ``(F, 4)`` boxes ``(x1, y1, x2, y2)`` with no area inside an image of ``size = (H, W)``."""
    height, width = size
    return (boxes[:, 0] >= width) | (boxes[:, 1] >= height) | (boxes[:, 2] <= 0) | (boxes[:, 3] <= 0)


def _image_error(path: Path, where: str) -> OSError | ValueError | None:
    """What is wrong with image file ``path`` (named in ``where``), or ``None``.

    Everything is checked that can be without decoding
    (:func:`rfcore.image.check_image_file`): the header's format and size
    within the pixel limit, and a JPEG's end marker (a truncated JPEG decodes
    without an error, grey below the cut); other truncated files fail when loaded.
    """
    if not path.exists():
        return FileNotFoundError(f"{where}: image {path} does not exist")
    try:
        check_image_file(path)
    except (OSError, ValueError) as err:
        return ValueError(f"{where}: image {err}")
    return None
