"""Find faces in images with a trained RetinaFace.

One image goes through these steps (the test protocol of [paper §4.2] and
biubug6/Pytorch_Retinaface, detect.py):

1. read it as ``(H, W, 3)`` uint8 RGB (:meth:`Detector.load`; a file within a
   memory budget, :mod:`rfcore.imread`);
2. resize it: optionally to a ``short_edge``, and down to a long edge of
   ``max_size`` (:data:`rfcore.config.DEFAULT_MAX_SIZE` by default, ``0`` or ``None`` for
   no cap);
3. preprocess as the weights expect: BGR, minus ``cfg.pixel_mean_bgr``, no
   scaling (:func:`preprocess`);
4. run the network: per anchor two logits, box and landmark deltas;
5. keep anchors whose face probability ``softmax(logits)[1]`` exceeds the
   threshold, at most ``top_k`` per image, and decode only those
   (:func:`candidates`);
6. map them back to the original image's pixels;
7. non-maximum suppression at IoU ``nms_iou`` with
   :func:`torchvision.ops.batched_nms`, keeping at most ``max_faces`` per
   image (:func:`suppress`).

With test-time augmentation (:class:`TTAConfig`) steps 2-6 run once per
scale and per flip, all candidates are pooled before step 7, and each kept
face becomes the score-weighted mean of the pooled candidates that overlap
it (:func:`box_vote`).

With ``mesh=True`` (weights of an ``rfcore train --mesh`` run) each kept
face also gets its dense mesh [paper §3.2]: the 144 mesh parameters of its
anchor are decoded and projected into the face crop exactly as training
renders them, then mapped through the box to image pixels
(:meth:`Detector.mesh_vertices`). Test-time augmentation is not supported
with the mesh: a voted box is an average of boxes, and no single anchor's
mesh belongs to it.

Defaults: threshold 0.5 (biubug6 uses 0.6 in its demo and 0.02 to evaluate
on WIDER FACE, where low-scoring faces still add to the AP), top-k 5000
before NMS, NMS IoU 0.4 and at most 750 faces per image (biubug6's
evaluation settings). Boxes and landmarks are not clipped to the image: a
face cut by the border keeps its full predicted extent.

Memory. Detection costs about 44 bytes per pixel of network input on top
of the decoded image (3 bytes per pixel) and the ~0.7 GB of the loaded
libraries, so the default long-edge cap of 4096 keeps one image under about
1.6 GB whatever its size; a JPEG above the cap is decoded at reduced size,
and files that would decode to more than
:data:`rfcore.config.MAX_DECODE_PIXELS` pixels are refused before decoding
(``max_pixels`` raises the limit). Running out of memory anyway raises a
``MemoryError`` naming the image and what to lower.

The default weights ship in the repository's ``assets/weights/`` folder (see
``assets/README.md``); pass ``weights=`` (``--weights`` on the command line)
to use another file.

``from rfcore import detect`` gives this module, and calling it calls
:func:`detect`: ``rfcore.detect("photo.jpg")``.
"""

from __future__ import annotations

import functools
import os
import sys
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch
from torch import nn
from torchvision.ops import batched_nms, box_iou

from rfcore.anchors import make_anchors
from rfcore.boxes import decode_boxes, decode_landmarks
from rfcore.config import DEFAULT_MAX_SIZE, MAX_DECODE_PIXELS, RetinaFaceConfig, get_config
from rfcore.imread import is_out_of_memory, read_rgb
from rfcore.mesh import MeshDecoder, build_hierarchy, project_mesh_params, uncrop_points
from rfcore.model import RetinaFace, RetinaFaceOutput
from rfcore.model.fuse import fuse_for_inference
from rfcore.weights import check_weights, load_weights

ASSETS = Path(__file__).resolve().parents[1] / "assets"
"""The repository's ``assets/`` folder (images, annotations, weights)."""

DEFAULT_WEIGHTS = ASSETS / "weights" / "retinaface_mobilenet0.25.safetensors"
"""Weights used when none are given: MobileNet-0.25 trained on WIDER FACE."""

PAPER_TEST_SCALES = (500, 800, 1100, 1400, 1700)
"""Short-edge sizes of the paper's multi-scale test [paper §4.2]."""

FLIPPED_LANDMARKS = (1, 0, 2, 4, 3)
"""Landmark order after a horizontal flip: the eyes and the mouth corners swap."""

MESH_DECODER_FILE = "mesh_decoder.safetensors"
"""The decoder file an ``rfcore train --mesh`` run writes beside ``weights.safetensors``."""

MESH_CROP = (32, 32)
"""Crop size training renders meshes at (``rfcore.train_model.CROP_SIZE``); pixel positions do not depend on it."""

ImageLike = str | os.PathLike | np.ndarray


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class Face:
    """One detected face, in the pixels of the original image.

    Plain tuples of Python floats, so a face is immutable, hashable and
    ready for JSON; ``np.array(face.box)`` gives an array.

    Attributes:
        box: ``(x1, y1, x2, y2)``.
        score: Face probability in ``[0, 1]``.
        landmarks: Five ``(x, y)`` points: left eye, right eye, nose tip,
            left mouth corner, right mouth corner ("left" is the image's
            left, as in :mod:`rfcore.boxes`).
        mesh: ``V`` projected ``(x, y)`` mesh vertices, or ``None`` when the
            detector was built without ``mesh=True``.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: tuple[tuple[float, float], ...]
    mesh: tuple[tuple[float, float], ...] | None = None

    def scaled(self, scale_x: float, scale_y: float) -> Face:
        """The face in the image resized by ``scale_x`` horizontally and ``scale_y`` vertically."""
        def points(xy):
            return None if xy is None else tuple((x * scale_x, y * scale_y) for x, y in xy)

        x1, y1, x2, y2 = self.box
        box = (x1 * scale_x, y1 * scale_y, x2 * scale_x, y2 * scale_y)
        return Face(box, self.score, points(self.landmarks), points(self.mesh))

    def to_dict(self) -> dict:
        """``{"box": [x1, y1, x2, y2], "score": s, "landmarks": [[x, y] x 5]}``, plus ``"mesh": [[x, y] x V]`` if set."""
        record = {"box": list(self.box), "score": self.score, "landmarks": [list(p) for p in self.landmarks]}
        if self.mesh is not None:
            record["mesh"] = [list(p) for p in self.mesh]
        return record


class Detections(NamedTuple):
    """Detections of a batch as tensors, one row per face.

    Attributes:
        boxes: ``(F, 4)`` ``(x1, y1, x2, y2)``.
        scores: ``(F,)`` face probabilities.
        landmarks: ``(F, 5, 2)`` points.
        image_index: ``(F,)`` int64 index of the image in the batch.
        mesh_params: ``(F, 144)`` raw mesh-head outputs of the faces'
            anchors, or ``None`` for a model without a mesh head.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    landmarks: torch.Tensor
    image_index: torch.Tensor
    mesh_params: torch.Tensor | None = None

    def select(self, index) -> Detections:
        """The rows ``index`` (a mask, indices or a slice) of every field."""
        return Detections(*(None if field is None else field[index] for field in self))

    def to_faces(self, meshes: torch.Tensor | None = None) -> list[Face]:
        """The rows as :class:`Face` objects, with ``(F, V, 2)`` ``meshes`` if given."""
        boxes, scores, points = self.boxes.tolist(), self.scores.tolist(), self.landmarks.tolist()
        vertices = [None] * len(boxes) if meshes is None else [tuple(map(tuple, m)) for m in meshes.tolist()]
        return [
            Face(tuple(box), score, tuple(tuple(p) for p in face), mesh)
            for box, score, face, mesh in zip(boxes, scores, points, vertices)
        ]


def concat(parts: Sequence[Detections]) -> Detections:
    """Rows of several :class:`Detections` in one."""
    return Detections(*(None if fields[0] is None else torch.cat(fields) for fields in zip(*parts)))


# ---------------------------------------------------------------- input


def read_image(path, max_pixels: int | None = MAX_DECODE_PIXELS) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB at full size (:func:`rfcore.imread.read_rgb`).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        IsADirectoryError: If it is a directory.
        ValueError: If OpenCV cannot decode it as an image, it is a truncated
            JPEG, or it has more than ``max_pixels`` pixels.
    """
    return read_rgb(path, max_pixels=max_pixels)[0]


def to_rgb(image: np.ndarray, color: str | None) -> np.ndarray:
    """Validate an image array and return it as ``(H, W, 3)`` uint8 RGB.

    Args:
        image: uint8 ``(H, W)`` greyscale (replicated to three channels),
            ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` (alpha dropped).
        color: ``"RGB"`` or ``"BGR"``: the order of the first three channels.
            Required for colour arrays; ignored for greyscale.

    Raises:
        ValueError: Wrong dtype, shape, an empty image, or a missing or
            unknown ``color``.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 with values 0..255, got dtype {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ValueError(f"image must have shape (H, W), (H, W, 3) or (H, W, 4), got {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty: shape {image.shape}")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    order = color.upper() if isinstance(color, str) else color
    if order not in ("RGB", "BGR"):
        raise ValueError(f"color must be 'RGB' or 'BGR' for a {image.shape[2]}-channel array, got {color!r}")
    rgb = image[:, :, :3] if order == "RGB" else image[:, :, 2::-1]
    return np.ascontiguousarray(rgb)


def as_batch(images) -> tuple[list, bool]:
    """``(list of images, was_single)``: a list, a tuple or an ``(N, H, W, C)`` array is a batch."""
    if isinstance(images, (list, tuple)):
        return list(images), False
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images), False
    return [images], True


def input_size(height: int, width: int, short_edge: int | None, max_size: int | None) -> tuple[int, int]:
    """Network input size: short edge scaled to ``short_edge``, long edge capped at ``max_size``.

    ``None`` (or a ``max_size`` of 0) leaves that constraint out; with both left out the size is unchanged.
    """
    factor = 1.0 if short_edge is None else short_edge / min(height, width)
    if max_size and factor * max(height, width) > max_size:
        factor = max_size / max(height, width)
    return max(1, round(height * factor)), max(1, round(width * factor))


def preprocess(images: Sequence[np.ndarray], mean_bgr: Sequence[float]) -> torch.Tensor:
    """Network input from same-size RGB images: BGR, minus the mean, no scaling.

    Args:
        images: ``N`` arrays ``(H, W, 3)`` uint8 RGB.
        mean_bgr: Per-channel mean subtracted, BGR order (``cfg.pixel_mean_bgr``).

    Returns:
        ``(N, 3, H, W)`` float32 in channels_last memory layout (the layout
        the fused model runs fastest on, and free to get from HWC images).
    """
    mean = tuple(float(m) for m in mean_bgr)  # an OpenCV scalar: one value per channel
    # OpenCV swaps the channels and subtracts into float32 in one pass each (5x faster than torch's flip)
    bgr = [cv2.subtract(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), mean, dtype=cv2.CV_32F) for image in images]
    return torch.from_numpy(np.stack(bgr)).permute(0, 3, 1, 2)  # (N, H, W, 3) -> (N, 3, H, W), channels_last


# ---------------------------------------------------------------- decoding and suppression


def candidates(
    output: RetinaFaceOutput, anchors: torch.Tensor, variances: Sequence[float], threshold: float, top_k: int
) -> Detections:
    """Decode the anchors whose face probability exceeds ``threshold``, at most ``top_k`` per image.

    Only the chosen anchors are decoded, so the cost follows the number of
    candidates rather than the number of anchors.

    Args:
        output: Network output for ``N`` images of one size.
        anchors: ``(A, 4)`` anchors ``(cx, cy, w, h)`` of that size.
        variances: Encoding variances of the preset.
        threshold: Keep probabilities ``> threshold``.
        top_k: Most candidates per image, highest scores first.

    Returns:
        :class:`Detections` in network-input pixels, grouped by image and
        sorted by descending score within each.
    """
    # softmax(logits)[..., 1] == sigmoid(l_face - l_background), and 40x faster over a last axis of 2
    scores = torch.sigmoid(output.logits[..., 1] - output.logits[..., 0])  # (N, A)
    k = min(top_k, int((scores > threshold).sum(dim=1).max()))
    top, anchor_index = scores.topk(k, dim=1)  # (N, k) each, descending
    image_index, rank = (top > threshold).nonzero(as_tuple=True)
    anchor_index = anchor_index[image_index, rank]
    chosen = anchors[anchor_index]
    boxes = decode_boxes(output.box_deltas[image_index, anchor_index], chosen, variances)
    landmarks = decode_landmarks(output.landmark_deltas[image_index, anchor_index], chosen, variances)
    mesh_params = None if output.mesh_params is None else output.mesh_params[image_index, anchor_index]
    return Detections(boxes, top[image_index, rank], landmarks, image_index, mesh_params)


def flip_detections(dets: Detections, width: int) -> Detections:
    """Detections made on a horizontally flipped image, mapped onto the unflipped one.

    ``x -> width - x`` (pixel ``i`` spans ``[i, i + 1]``); box corners swap,
    and so do the left/right landmarks (:data:`FLIPPED_LANDMARKS`).
    """
    x1, y1, x2, y2 = dets.boxes.unbind(dim=1)
    boxes = torch.stack([width - x2, y1, width - x1, y2], dim=1)
    landmarks = dets.landmarks[:, FLIPPED_LANDMARKS]
    landmarks = torch.stack([width - landmarks[..., 0], landmarks[..., 1]], dim=-1)
    return dets._replace(boxes=boxes, landmarks=landmarks)


def rescale(dets: Detections, scale_x: float, scale_y: float) -> Detections:
    """Multiply x coordinates by ``scale_x`` and y coordinates by ``scale_y``."""
    xy = torch.tensor([scale_x, scale_y], dtype=dets.boxes.dtype)
    return dets._replace(boxes=dets.boxes * xy.repeat(2), landmarks=dets.landmarks * xy)


def suppress(dets: Detections, num_images: int, nms_iou: float, max_faces: int) -> list[Detections]:
    """Non-maximum suppression per image, then at most ``max_faces`` per image.

    Args:
        dets: Candidates of a batch (``image_index`` says whose).
        num_images: Batch size ``N``.
        nms_iou: A candidate is dropped if its IoU with a higher-scoring
            kept one of the same image is above this.
        max_faces: Most faces kept per image.

    Returns:
        ``N`` :class:`Detections`, each sorted by descending score.
    """
    keep = batched_nms(dets.boxes, dets.scores, dets.image_index, nms_iou)  # descending score
    kept = dets.select(keep)
    kept = kept.select(torch.sort(kept.image_index, stable=True).indices)  # by image, score order kept
    counts = torch.bincount(kept.image_index, minlength=num_images)
    starts = (torch.cumsum(counts, 0) - counts).tolist()
    return [kept.select(slice(start, start + min(count, max_faces))) for start, count in zip(starts, counts.tolist())]


def box_vote(kept: Detections, pool: Detections, iou_threshold: float) -> Detections:
    """Box voting [paper §4.2]: each kept face becomes the score-weighted mean of the faces it stands for.

    A pool face stands for the highest-scoring kept face it overlaps with
    IoU above ``iou_threshold``: the face that suppressed it in NMS (or
    itself, if kept). Each pool face thus votes once, so the voted faces
    stay as distinct as NMS left them. This is the greedy merge of the
    RetinaFace authors' test code (insightface, RetinaFace ``bbox_vote``)
    done with one IoU matrix. Boxes and landmarks are averaged with the
    same weights; scores stay those of the kept faces.

    Args:
        kept: ``K`` faces of one image after NMS, by descending score.
        pool: ``M`` candidates of the same image NMS chose from.
        iou_threshold: The voting IoU (0.4 in the paper).

    Returns:
        ``K`` voted faces.
    """
    overlap = box_iou(kept.boxes, pool.boxes) > iou_threshold  # (K, M)
    owner = overlap.int().argmax(dim=0)  # (M,) first overlapping kept face = highest score
    votes = overlap & (torch.arange(len(kept.scores))[:, None] == owner)  # (K, M), one True per column at most
    weights = votes * pool.scores  # (K, M)
    weights = weights / weights.sum(dim=1, keepdim=True)
    boxes = weights @ pool.boxes
    # (K, M) @ (M, 10) -> (K, 10) -> (K, 5, 2)
    landmarks = (weights @ pool.landmarks.flatten(1)).unflatten(1, (5, 2))
    return kept._replace(boxes=boxes, landmarks=landmarks)


# ---------------------------------------------------------------- the detector


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


def resolve_weights(weights, option: str = "--weights") -> Path:
    """The weights file to load: ``weights`` or :data:`DEFAULT_WEIGHTS`; ``option`` is named in errors.

    Raises:
        IsADirectoryError: For a folder, naming the weights files in it.
        FileNotFoundError: Naming the missing file and how to pass another.
    """
    path = DEFAULT_WEIGHTS if weights is None else Path(weights)
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.safetensors"))
        inside = f"it holds {', '.join(found[:5])}" if found else "it holds no .safetensors file"
        raise IsADirectoryError(f"weights {path} is a folder, not a file ({inside}): pass the file itself, "
                                f"e.g. {option} {path / (found[0] if found else 'weights.safetensors')}")
    if not path.is_file():
        what = "default weights file" if weights is None else "weights file"
        raise FileNotFoundError(
            f"{what} {path} not found; pass another with weights=... (command line: --weights PATH). "
            "The default ships in the repository's assets/weights/ folder."
        )
    return path


def load_model(weights, cfg: RetinaFaceConfig) -> RetinaFace:
    """A RetinaFace of preset ``cfg`` with weights from a safetensors file, in eval mode.

    The mesh head of a network trained with the mesh branch (``MeshHead.*``)
    is left out: detection without ``mesh=True`` does not need it.

    Args:
        weights: Path of the file, or ``None`` for :data:`DEFAULT_WEIGHTS`.
        cfg: The preset the weights belong to.

    Raises:
        ValueError: If the other tensors do not fit the preset's network
            (naming the preset the file says it holds), or are not finite.
    """
    path = resolve_weights(weights)
    state = {key: value for key, value in load_weights(None, path).items() if not key.startswith("MeshHead.")}
    model = RetinaFace.from_config(cfg)
    check_weights(model, state, path, cfg.name)
    model.load_state_dict(state)
    return model.eval()


def load_mesh_model(weights, cfg: RetinaFaceConfig) -> tuple[RetinaFace, MeshDecoder]:
    """A RetinaFace with its mesh head and the mesh decoder, as an ``rfcore train --mesh`` run saves them.

    The network comes from ``weights`` (it must hold ``MeshHead.*``), the
    decoder from :data:`MESH_DECODER_FILE` in the same folder.

    Args:
        weights: Path of the network's file, or ``None`` for :data:`DEFAULT_WEIGHTS`.
        cfg: The preset the weights belong to.

    Returns:
        ``(model, decoder)``, both in eval mode.

    Raises:
        ValueError: If the file has no mesh head, or a file does not fit its module.
        FileNotFoundError: If a file is missing.
    """
    path = resolve_weights(weights)
    state = load_weights(None, path)
    if not any(key.startswith("MeshHead.") for key in state):
        raise ValueError(
            f"{path} has no mesh head (no MeshHead.* tensors); mesh=True (--mesh) needs the weights.safetensors "
            f"and {MESH_DECODER_FILE} of an `rfcore train --mesh` run"
        )
    model = RetinaFace.from_config(cfg, mesh_head=True)
    check_weights(model, state, path, cfg.name)
    model.load_state_dict(state)
    decoder_path = path.with_name(MESH_DECODER_FILE)
    if not decoder_path.is_file():
        raise FileNotFoundError(f"mesh decoder {decoder_path} not found; `rfcore train --mesh` writes it beside {path}")
    decoder = MeshDecoder(build_hierarchy())
    load_weights(decoder, decoder_path)
    return model.eval(), decoder.eval()


@functools.lru_cache(maxsize=8)
def cached_anchors(cfg: RetinaFaceConfig, size: tuple[int, int]) -> torch.Tensor:
    """:func:`rfcore.anchors.make_anchors`, remembered for the last few input sizes."""
    return make_anchors(cfg, size)


class Detector:
    """A RetinaFace with its pre- and post-processing, ready to find faces.

    Args:
        weights: safetensors file; ``None`` for :data:`DEFAULT_WEIGHTS`.
        preset: Preset the weights belong to.
        model: An already built RetinaFace (one you trained, say) instead of
            ``weights``; its preset is still ``preset``.
        threshold: Face probability a detection must exceed.
        nms_iou: IoU threshold of non-maximum suppression.
        top_k: Candidates per image kept before NMS.
        max_faces: Faces per image kept after NMS.
        short_edge: Resize so the short edge has this many pixels (``None``:
            original size).
        max_size: Cap on the long edge after that (:data:`rfcore.config.DEFAULT_MAX_SIZE`;
            ``0`` or ``None``: no cap).
        max_pixels: Refuse image files that would decode to more pixels
            (:data:`rfcore.config.MAX_DECODE_PIXELS`; ``0`` or ``None``: no limit).
        tta: Test-time augmentation, or ``None`` for one pass.
        fuse: Run the inference form of the network
            (:func:`rfcore.model.fuse.fuse_for_inference`), same outputs up
            to float rounding, faster on CPU.
        mesh: Also give each face its projected mesh (:attr:`Face.mesh`);
            needs ``weights`` of an ``rfcore train --mesh`` run
            (:func:`load_mesh_model`), not ``model``, and no ``tta``.

    Raises:
        FileNotFoundError: If the weights file (or, with ``mesh``, the
            decoder file) is missing.
        ValueError: For out-of-range options, an unknown preset, weights
            that do not fit the preset, or ``mesh`` with weights that have no
            mesh head, with ``model`` or with ``tta``.
    """

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        preset: str = "mobilenet0.25",
        *,
        model: nn.Module | None = None,
        threshold: float = 0.5,
        nms_iou: float = 0.4,
        top_k: int = 5000,
        max_faces: int = 750,
        short_edge: int | None = None,
        max_size: int | None = DEFAULT_MAX_SIZE,
        max_pixels: int | None = MAX_DECODE_PIXELS,
        tta: TTAConfig | None = None,
        fuse: bool = True,
        mesh: bool = False,
    ) -> None:
        check_options(threshold, nms_iou, top_k, max_faces, short_edge, max_size, max_pixels)
        if model is not None and weights is not None:
            raise ValueError("pass either weights or model, not both")
        check_mesh_options(mesh, model, tta)
        self.cfg = get_config(preset)
        self.decoder = None
        if mesh:
            model, self.decoder = load_mesh_model(weights, self.cfg)
        model = load_model(weights, self.cfg) if model is None else model.eval()
        self.model = fuse_for_inference(model) if fuse else model
        self.threshold, self.nms_iou, self.top_k, self.max_faces = threshold, nms_iou, top_k, max_faces
        self.short_edge, self.max_size, self.max_pixels, self.tta = short_edge, max_size, max_pixels, tta

    def detect(self, images, color: str | None = None) -> list[Face] | list[list[Face]]:
        """Find the faces in one image or a batch.

        Args:
            images: A path, an array (see :func:`to_rgb`), or a batch: a list
                of paths and arrays of any sizes, or an ``(N, H, W, C)``
                array. Same-size images run through the network together.
            color: ``"RGB"`` or ``"BGR"`` for colour arrays; ignored for
                paths and greyscale arrays.

        Returns:
            For one image a list of :class:`Face`, highest score first; for
            a batch one such list per image.

        Raises:
            FileNotFoundError, IsADirectoryError, ValueError: For an input
                that is not a readable image (see :func:`rfcore.imread.read_rgb`,
                :func:`to_rgb`).
            MemoryError: If an image does not fit in memory, naming it and
                what to lower.
        """
        batch, single = as_batch(images)
        results = self.detect_loaded([self.load(image, color) for image in batch])
        return results[0] if single else results

    def load(self, image: ImageLike, color: str | None = None) -> tuple[np.ndarray, tuple[int, int]]:
        """An image as RGB and the ``(height, width)`` its faces are reported in.

        A file is read with :func:`rfcore.imread.read_rgb`: a JPEG larger than
        every network input it will give is decoded at reduced size, and
        files over ``max_pixels`` are refused. An array is checked by
        :func:`to_rgb` and kept as it is.
        """
        if isinstance(image, (str, os.PathLike)):
            return read_rgb(image, self.largest_input_edge, self.max_pixels)
        rgb = to_rgb(image, color)
        return rgb, rgb.shape[:2]

    def largest_input_edge(self, size: tuple[int, int]) -> int:
        """The longest network-input edge any pass gives an image of ``size = (height, width)``."""
        passes = [(self.short_edge, False)] if self.tta is None else self.tta.passes()
        return max(max(input_size(*size, short_edge, self.max_size)) for short_edge, _ in passes)

    def detect_loaded(self, loaded: Sequence[tuple[np.ndarray, tuple[int, int]]]) -> list[list[Face]]:
        """Faces of images from :meth:`load`, in the pixels of each ``(height, width)``.

        Raises:
            MemoryError: If a group of same-size images does not fit in memory.
        """
        results: list[list[Face]] = [[] for _ in loaded]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (image, _) in enumerate(loaded):
            groups.setdefault(image.shape[:2], []).append(i)
        for (height, width), indices in groups.items():
            try:
                found = self.detect_same_size([loaded[i][0] for i in indices])
            except (MemoryError, RuntimeError, cv2.error) as err:
                if not is_out_of_memory(err):
                    raise
                raise MemoryError(self.out_of_memory(height, width, len(indices))) from None
            for i, dets in zip(indices, found):
                size = loaded[i][1]
                dets = rescale(dets, size[1] / width, size[0] / height)
                results[i] = dets.to_faces(self.mesh_vertices(dets))
        return results

    def out_of_memory(self, height: int, width: int, count: int) -> str:
        """What to say when detection on ``count`` images of ``height x width`` runs out of memory."""
        input_edge = self.largest_input_edge((height, width))
        what = f"{count} images of" if count > 1 else "an image of"
        return (f"out of memory detecting faces on {what} {width}x{height} pixels (network input long edge "
                f"{input_edge}); lower max_size (command line: --max-size, default {DEFAULT_MAX_SIZE})")

    @torch.inference_mode()
    def mesh_vertices(self, dets: Detections) -> torch.Tensor | None:
        """Projected mesh vertices of detected faces in image pixels, or ``None`` without ``mesh=True``.

        Decoded and projected into the face crop as training renders them
        (:func:`rfcore.mesh.project_mesh_params`), then mapped through each
        face's box (:func:`rfcore.mesh.uncrop_points`, the inverse of
        :func:`rfcore.mesh.crop_faces`).

        Args:
            dets: ``F`` detections with their ``mesh_params``, in image pixels.

        Returns:
            ``(F, V, 2)`` pixel coordinates ``(x, y)``.
        """
        if self.decoder is None:
            return None
        crop_points = project_mesh_params(self.decoder, dets.mesh_params, MESH_CROP)
        return uncrop_points(crop_points, dets.boxes, MESH_CROP)

    @torch.inference_mode()
    def detect_same_size(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detections for same-size RGB images, in their pixels.

        Args:
            images: ``N`` arrays ``(H, W, 3)`` uint8 RGB of one size.

        Returns:
            ``N`` :class:`Detections`, highest score first.
        """
        passes = [(self.short_edge, False)] if self.tta is None else self.tta.passes()
        pool = concat([self.run_pass(images, short_edge, flipped) for short_edge, flipped in passes])
        kept = suppress(pool, len(images), self.nms_iou, self.max_faces)
        if self.tta is None:
            return kept
        return [box_vote(faces, pool.select(pool.image_index == i), self.tta.vote_iou) for i, faces in enumerate(kept)]

    def run_pass(self, images: Sequence[np.ndarray], short_edge: int | None, flipped: bool) -> Detections:
        """Candidates from one network run, in the original images' pixels.

        Args:
            images: Same-size RGB images.
            short_edge: Short-edge size to resize to (``None``: keep).
            flipped: Run on the horizontally flipped images.
        """
        height, width = images[0].shape[:2]
        size = input_size(height, width, short_edge, self.max_size)
        if size != (height, width):
            images = [cv2.resize(image, size[::-1], interpolation=cv2.INTER_LINEAR) for image in images]
        if flipped:
            images = [image[:, ::-1] for image in images]
        output = self.model(preprocess(images, self.cfg.pixel_mean_bgr))
        dets = candidates(output, cached_anchors(self.cfg, size), self.cfg.variances, self.threshold, self.top_k)
        if flipped:
            dets = flip_detections(dets, size[1])
        return rescale(dets, width / size[1], height / size[0])

    def postprocess(
        self, output: RetinaFaceOutput, size: tuple[int, int], threshold: float | None = None
    ) -> list[Detections]:
        """Decoding and NMS alone, on the network output for inputs of ``size = (H, W)``.

        What :meth:`detect` does after the network, without TTA; results are
        in network-input pixels. ``threshold`` overrides the detector's.
        """
        threshold = self.threshold if threshold is None else threshold
        dets = candidates(output, cached_anchors(self.cfg, size), self.cfg.variances, threshold, self.top_k)
        return suppress(dets, output.logits.shape[0], self.nms_iou, self.max_faces)


def check_options(threshold, nms_iou, top_k, max_faces, short_edge, max_size, max_pixels=None) -> None:
    """Raise ``ValueError`` naming the first out-of-range detector option."""
    checks = (
        ("threshold", threshold, 0.0 <= threshold < 1.0, "in [0, 1)"),
        ("nms_iou", nms_iou, 0.0 < nms_iou <= 1.0, "in (0, 1]"),
        ("top_k", top_k, is_positive_int(top_k), "a positive int"),
        ("max_faces", max_faces, is_positive_int(max_faces), "a positive int"),
        ("short_edge", short_edge, short_edge is None or is_positive_int(short_edge), "None or a positive int"),
        ("max_size", max_size, max_size in (None, 0) or is_positive_int(max_size), "None, 0 or a positive int"),
        ("max_pixels", max_pixels, max_pixels in (None, 0) or is_positive_int(max_pixels), "None, 0 or a positive int"),
    )
    for name, value, ok, expected in checks:
        if not ok:
            raise ValueError(f"{name} must be {expected}, got {value!r}")


def check_mesh_options(mesh: bool, model, tta) -> None:
    """Raise ``ValueError`` if ``mesh=True`` comes with an option it cannot work with."""
    if mesh and model is not None:
        raise ValueError("mesh=True loads the network and its decoder from weights=...; it cannot use model=...")
    if mesh and tta is not None:
        raise ValueError("mesh=True does not support test-time augmentation: pass tta=None")


def is_positive_int(value) -> bool:
    """True for an ``int`` of at least 1."""
    return isinstance(value, int) and value >= 1


@functools.lru_cache(maxsize=4)
def cached_detector(**options) -> Detector:
    """One :class:`Detector` per set of options, built on first use."""
    return Detector(**options)


def detect(images, color: str | None = None, **options) -> list[Face] | list[list[Face]]:
    """Find faces with a detector built (once) from ``options``.

    ``rfcore.detect(images, ...)`` calls this function.

    Args:
        images: One image or a batch (see :meth:`Detector.detect`).
        color: ``"RGB"`` or ``"BGR"`` for colour arrays.
        **options: :class:`Detector` arguments (hashable values, e.g.
            ``threshold=0.6``, ``tta=TTAConfig()``).

    Returns:
        A list of :class:`Face` per image (a single list for one image).
    """
    return cached_detector(**options).detect(images, color)


class _CallableModule(types.ModuleType):
    """Lets ``from rfcore import detect; detect(image)`` work, although ``rfcore.detect`` is this module."""

    def __call__(self, images, color: str | None = None, **options):
        return detect(images, color, **options)


sys.modules[__name__].__class__ = _CallableModule
