"""Ground truth of an evaluation set: the official WIDER FACE ``.mat`` files, a ``label.txt`` folder, or samples.

The official evaluation toolbox (``eval_tools.zip``, folder ``ground_truth/``)
describes the validation set in four MATLAB files, read here with
:func:`scipy.io.loadmat`:

* ``wider_face_val.mat``: ``event_list``, an ``E x 1`` cell of event names
  (``"0--Parade"``); ``file_list``, an ``E x 1`` cell whose entries are
  ``n_e x 1`` cells of image names without extension; ``face_bbx_list``, the
  same nesting with one ``F x 4`` matrix of faces ``x y w h`` per image (its
  label lists, blur, pose and so on, are not used);
* ``wider_easy_val.mat``, ``wider_medium_val.mat``, ``wider_hard_val.mat``:
  ``gt_list``, the same nesting with one column of 1-based face indices per
  image: the faces that count at that difficulty. The other faces are
  ignored: a detection on them is neither a true nor a false positive.

A ``label.txt`` folder (:mod:`rfcore.data.widerface`) or a list of
:class:`~rfcore.data.sample.FaceSample` (synthetic faces, say) gives one
subset, ``"all"``, in which every face counts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from rfcore.boxes import has_landmarks
from rfcore.data.sample import MISSING, FaceSample
from rfcore.data.widerface import read_label_file

MAT_FILES = {
    "faces": "wider_face_val.mat",
    "easy": "wider_easy_val.mat",
    "medium": "wider_medium_val.mat",
    "hard": "wider_hard_val.mat",
}
"""The official ground-truth files: the faces, then the list of each difficulty."""

WIDER_SUBSETS = ("easy", "medium", "hard")
"""The difficulties of the official protocol, in its order."""

ALL_FACES = "all"
"""The single subset of a ``label.txt`` set or of samples: every face counts."""

SIZE_BANDS = {"small": (0.0, 24.0), "medium": (24.0, 64.0), "large": (64.0, float("inf"))}
"""Face-size bands ``[low, high)`` of the longer box side in pixels, the synthetic stand-in for WIDER FACE's
hard / medium / easy (:func:`with_size_bands`)."""


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """The faces of an evaluation set, image by image.

    Attributes:
        names: ``N`` image keys: the image path relative to the images
            folder, without extension (``"0--Parade/0_Parade_marchingband_1_20"``).
            Predictions are looked up by these keys; in the official layout
            image ``i`` has the file ``names[i] + ".txt"``.
        image_files: ``N`` image paths relative to the images folder.
        boxes: ``N`` arrays ``(G_i, 4)`` float64 faces ``x y w h`` in pixels.
        subsets: Subset name -> ``N`` bool arrays ``(G_i,)``: the faces that
            count in that subset.
        landmarks: ``N`` arrays ``(G_i, 5, 2)`` float64, all ``-1`` for a face
            without landmark annotation.
    """

    names: tuple[str, ...]
    image_files: tuple[str, ...]
    boxes: tuple[np.ndarray, ...]
    subsets: dict[str, tuple[np.ndarray, ...]]
    landmarks: tuple[np.ndarray, ...]

    def __post_init__(self) -> None:
        lengths = {len(self.image_files), len(self.boxes), len(self.landmarks), *map(len, self.subsets.values())}
        if lengths != {len(self.names)}:
            raise ValueError(f"ground truth: every field needs one entry per image ({len(self.names)}), got {lengths}")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"ground truth: image names must be unique, {first_duplicate(self.names)!r} repeats")

    def __len__(self) -> int:
        return len(self.names)

    def head(self, count: int) -> GroundTruth:
        """The first ``count`` images only."""
        keep = slice(0, count)
        subsets = {name: masks[keep] for name, masks in self.subsets.items()}
        return GroundTruth(self.names[keep], self.image_files[keep], self.boxes[keep], subsets, self.landmarks[keep])

    def face_count(self, subset: str) -> int:
        """Number of faces that count in ``subset``."""
        return int(sum(mask.sum() for mask in self.subsets[subset]))

    def only_landmarks_of(self, subset: str) -> GroundTruth:
        """The same set with the landmarks of faces outside ``subset`` removed (all :data:`MISSING`)."""
        landmarks = tuple(np.where(mask[:, None, None], points, MISSING)
                          for mask, points in zip(self.subsets[subset], self.landmarks))
        return dataclasses.replace(self, landmarks=landmarks)

    def has_landmarks(self) -> bool:
        """Whether any face has a landmark annotation."""
        return any(has_landmarks(points).any() for points in self.landmarks)


def first_duplicate(names: Sequence[str]) -> str | None:
    """The first name that occurs twice, or ``None``."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def no_landmarks(boxes: np.ndarray) -> np.ndarray:
    """All-missing ``(G, 5, 2)`` landmarks for ``G`` faces."""
    return np.full((len(boxes), 5, 2), MISSING)


# ---------------------------------------------------------------- the official .mat files


def missing_mat_files(gt_dir) -> list[Path]:
    """The official ground-truth files (:data:`MAT_FILES`) that are not in ``gt_dir``."""
    return [Path(gt_dir) / name for name in MAT_FILES.values() if not (Path(gt_dir) / name).is_file()]


def load_wider_mat(gt_dir) -> GroundTruth:
    """Read the official WIDER FACE validation ground truth (the module docstring describes the files).

    Args:
        gt_dir: Folder holding the four files of :data:`MAT_FILES`.

    Returns:
        A :class:`GroundTruth` with the subsets ``easy``, ``medium`` and
        ``hard``, images in the files' event order; no landmarks.

    Raises:
        FileNotFoundError: Naming every missing file.
        ValueError: Naming the file and the image for a file that is not a
            MATLAB file, lacks a variable, or whose structure or face indices
            do not fit ``wider_face_val.mat``.
    """
    gt_dir = Path(gt_dir)
    missing = missing_mat_files(gt_dir)
    if missing:
        raise FileNotFoundError("WIDER FACE ground truth not found: missing " + ", ".join(map(str, missing)))
    path = gt_dir / MAT_FILES["faces"]
    mat = load_mat(path, ("event_list", "file_list", "face_bbx_list"))
    events = [cell_text(cell, path, f"event_list{{{e + 1}}}") for e, cell in enumerate(cells(mat["event_list"]))]
    files = nested(mat["file_list"], len(events), path, "file_list")
    face_boxes = nested(mat["face_bbx_list"], len(events), path, "face_bbx_list")
    names, boxes = [], []
    for e, event in enumerate(events):
        if len(face_boxes[e]) != len(files[e]):
            raise ValueError(f"{path}: event {event} has {len(files[e])} files but {len(face_boxes[e])} box lists")
        for f, (file_cell, box_cell) in enumerate(zip(files[e], face_boxes[e])):
            names.append(f"{event}/{cell_text(file_cell, path, f'file_list{{{e + 1}}}{{{f + 1}}}')}")
            boxes.append(cell_boxes(box_cell, path, names[-1]))
    shape = [len(event_files) for event_files in files]
    subsets = {name: keep_masks(gt_dir / MAT_FILES[name], shape, names, boxes) for name in WIDER_SUBSETS}
    image_files = tuple(f"{name}.jpg" for name in names)
    return GroundTruth(tuple(names), image_files, tuple(boxes), subsets, tuple(map(no_landmarks, boxes)))


def load_mat(path: Path, variables: Sequence[str]) -> dict:
    """The named variables of a MATLAB file, with errors that name the file."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        mat = loadmat(path)
    except (MatReadError, OSError, ValueError, NotImplementedError, TypeError) as exc:
        raise ValueError(f"{path}: cannot be read as a MATLAB .mat file ({exc})") from None
    absent = [name for name in variables if name not in mat]
    if absent:
        found = sorted(name for name in mat if not name.startswith("__"))
        raise ValueError(f"{path}: no variable {', '.join(absent)} (found {', '.join(found) or 'none'})")
    return mat


def cells(value) -> list:
    """The entries of a MATLAB cell array (any shape) in column order."""
    array = np.asarray(value, dtype=object)
    return list(array.reshape(-1, order="F"))


def nested(value, events: int, path: Path, variable: str) -> list[list]:
    """An ``E x 1`` cell of ``n_e x 1`` cells -> ``E`` lists of entries, checking ``E``."""
    outer = cells(value)
    if len(outer) != events:
        raise ValueError(f"{path}: {variable} has {len(outer)} entries, event_list has {events}")
    return [cells(cell) for cell in outer]


def cell_text(cell, path: Path, where: str) -> str:
    """A MATLAB char array (loaded as a one-element string array) -> ``str``."""
    array = np.asarray(cell).reshape(-1)
    if array.size != 1 or not isinstance(array[0], str):
        raise ValueError(f"{path}: {where} should be a text, got {np.asarray(cell)!r}")
    return str(array[0])


def cell_boxes(cell, path: Path, image: str) -> np.ndarray:
    """An ``F x 4`` matrix of faces ``x y w h`` -> ``(F, 4)`` float64 (``F`` may be 0)."""
    array = np.asarray(cell, dtype=np.float64)
    if array.size % 4 or (array.size and array.shape[-1] != 4):
        raise ValueError(f"{path}: faces of {image} should be an F x 4 matrix (x y w h), got shape {array.shape}")
    return array.reshape(-1, 4)


def keep_masks(path: Path, shape: list[int], names: list[str], boxes: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """A difficulty file's ``gt_list`` -> per image ``(G_i,)`` bool: the faces that count.

    Args:
        path: The ``wider_<difficulty>_val.mat`` file.
        shape: Images per event in ``wider_face_val.mat``.
        names: Image keys, for error messages.
        boxes: Faces per image, to check the indices.
    """
    lists = nested(load_mat(path, ("gt_list",))["gt_list"], len(shape), path, "gt_list")
    masks: list[np.ndarray] = []
    for e, event_lists in enumerate(lists):
        if len(event_lists) != shape[e]:
            raise ValueError(f"{path}: event {e + 1} has {len(event_lists)} images in gt_list, "
                             f"{shape[e]} in {MAT_FILES['faces']}")
        for cell in event_lists:
            i = len(masks)  # the image's index over all events
            masks.append(keep_mask(cell, len(boxes[i]), path, names[i]))
    return tuple(masks)


def keep_mask(cell, faces: int, path: Path, image: str) -> np.ndarray:
    """A column of 1-based face indices -> ``(faces,)`` bool."""
    values = np.asarray(cell, dtype=np.float64).reshape(-1)
    bad = (values != np.round(values)) | (values < 1) | (values > faces)
    if bad.any():
        raise ValueError(f"{path}: gt_list of {image} holds face {values[bad][0]:g}, "
                         f"but the image has faces 1..{faces}")
    mask = np.zeros(faces, dtype=bool)
    mask[values.astype(np.int64) - 1] = True
    return mask


# ---------------------------------------------------------------- label.txt sets and samples


def load_label_file(path) -> GroundTruth:
    """Ground truth of a ``label.txt``-layout set (:mod:`rfcore.data.widerface`): every face counts.

    Faces of zero width or height are left out, as the reader does for training.

    Args:
        path: The ``label.txt``.

    Returns:
        A :class:`GroundTruth` with the one subset :data:`ALL_FACES`; image
        keys are the paths of the file without extension.

    Raises:
        FileNotFoundError: If the file is missing.
        ValueError: ``"<file>:<line>: ..."`` for a malformed line, or for two
            images that differ only in their extension.
    """
    labels = read_label_file(path)
    entries = labels.entries
    names = [str(PurePosixPath(entry.image).with_suffix("")) for entry in entries]
    duplicate = first_duplicate(names)
    if duplicate is not None:
        raise ValueError(f"{labels.path}: two images are named {duplicate!r} apart from their extension")
    boxes = [xyxy_to_xywh(entry.boxes) for entry in entries]
    masks = tuple(np.ones(len(b), dtype=bool) for b in boxes)
    landmarks = tuple(entry.landmarks.astype(np.float64) for entry in entries)
    return GroundTruth(tuple(names), tuple(e.image for e in entries), tuple(boxes), {ALL_FACES: masks}, landmarks)


def truth_from_samples(samples: Iterable[FaceSample], names: Sequence[str] | None = None) -> GroundTruth:
    """Ground truth of in-memory samples (e.g. :class:`rfcore.data.SyntheticFaces`): every face counts.

    Args:
        samples: The samples, in order.
        names: One key per sample; by default ``"000000"``, ``"000001"``, ...

    Returns:
        A :class:`GroundTruth` with the one subset :data:`ALL_FACES` and the
        samples' landmarks; ``image_files`` holds each sample's ``path``.
    """
    samples = list(samples)
    names = [f"{i:06d}" for i in range(len(samples))] if names is None else list(names)
    if len(names) != len(samples):
        raise ValueError(f"need one name per sample, got {len(names)} names for {len(samples)} samples")
    boxes = tuple(xyxy_to_xywh(sample.boxes) for sample in samples)
    masks = tuple(np.ones(len(b), dtype=bool) for b in boxes)
    landmarks = tuple(np.asarray(sample.landmarks, np.float64).reshape(-1, 5, 2) for sample in samples)
    return GroundTruth(tuple(names), tuple(s.path for s in samples), boxes, {ALL_FACES: masks}, landmarks)


def xyxy_to_xywh(boxes) -> np.ndarray:
    """``(F, 4)`` ``x1 y1 x2 y2`` -> ``(F, 4)`` float64 ``x y w h``."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def with_size_bands(truth: GroundTruth) -> GroundTruth:
    """``truth`` with one more subset per band of :data:`SIZE_BANDS`, by the longer side of each box.

    A face outside a band is ignored in it, as WIDER FACE ignores the faces of
    other difficulties: a detection of it is neither a true nor a false positive.
    """
    sizes = [boxes[:, 2:].max(axis=1) for boxes in truth.boxes]  # (G_i,) longer side of each box
    bands = {name: tuple((low <= size) & (size < high) for size in sizes) for name, (low, high) in SIZE_BANDS.items()}
    return dataclasses.replace(truth, subsets={**truth.subsets, **bands})
