"""From network outputs to faces: decoding, suppression, flips, rescaling and box voting [paper §4.2].

The steps :class:`rfcore.detector.Detector` runs after the network, as plain
functions on tensors (notebook 07 takes them one by one):

* :func:`candidates` keeps the anchors whose face probability
  ``softmax(logits)[1]`` exceeds the threshold, at most ``top_k`` per image,
  and decodes only those (:func:`rfcore.boxes.decode_boxes`,
  :func:`rfcore.boxes.decode_landmarks`);
* :func:`flip_detections` and :func:`rescale` map candidates of a flipped or
  resized pass back to the original image's pixels;
* :func:`suppress` is non-maximum suppression with
  :func:`torchvision.ops.batched_nms`, at most ``max_faces`` per image;
* :func:`box_vote` replaces each kept face by the score-weighted mean of the
  pooled candidates that overlap it (the paper's test-time box voting).

Candidates travel as :class:`Detections` (tensors, one row per candidate);
what a user gets back is one :class:`Face` per detection.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torchvision.ops import batched_nms, box_iou

from rfcore.anchors import make_anchors
from rfcore.boxes import decode_boxes, decode_landmarks, flip_boxes, flip_landmarks
from rfcore.config import RetinaFaceConfig
from rfcore.model.retinaface import RetinaFaceOutput


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
        meshes: ``(F, V, 2)`` projected mesh vertices in the same pixels as
            the boxes (:meth:`rfcore.detector.Detector.mesh_vertices`), or
            ``None`` until they are computed.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    landmarks: torch.Tensor
    image_index: torch.Tensor
    mesh_params: torch.Tensor | None = None
    meshes: torch.Tensor | None = None

    def select(self, index) -> Detections:
        """The rows ``index`` (a mask, indices or a slice) of every field."""
        return Detections(*(None if field is None else field[index] for field in self))

    def to_faces(self) -> list[Face]:
        """The rows as :class:`Face` objects, with their meshes if computed."""
        boxes, scores, points = self.boxes.tolist(), self.scores.tolist(), self.landmarks.tolist()
        meshes = self.meshes
        # (F, V, 2) -> (F, 2, V): zip pairs each face's x and y into V tuples, with no list per vertex on the way
        vertices = [None] * len(boxes) if meshes is None else [tuple(zip(*m)) for m in meshes.transpose(1, 2).tolist()]
        return [
            Face(tuple(box), score, tuple(tuple(p) for p in face), mesh)
            for box, score, face, mesh in zip(boxes, scores, points, vertices)
        ]


def concat(parts: Sequence[Detections]) -> Detections:
    """Rows of several :class:`Detections` in one."""
    return Detections(*(None if fields[0] is None else torch.cat(fields) for fields in zip(*parts)))


def candidates(
    output: RetinaFaceOutput,
    anchors: torch.Tensor,
    variances: Sequence[float],
    threshold: float,
    top_k: int,
    mesh_params_at: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
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
        mesh_params_at: ``(P,)`` image and ``(P,)`` anchor indices -> ``(P, 144)``
            mesh parameters of those anchors alone (the detector's mesh head
            on the network's features); ``None`` to take them from
            ``output.mesh_params``.

    Returns:
        :class:`Detections` in network-input pixels, grouped by image and
        sorted by descending score within each.
    """
    # softmax(logits)[..., 1] == sigmoid(l_face - l_background), which is cheaper over a last axis of 2
    scores = torch.sigmoid(output.logits[..., 1] - output.logits[..., 0])  # (N, A)
    k = min(top_k, int((scores > threshold).sum(dim=1).max()))
    top, anchor_index = scores.topk(k, dim=1)  # (N, k) each, descending
    image_index, rank = (top > threshold).nonzero(as_tuple=True)
    anchor_index = anchor_index[image_index, rank]
    chosen = anchors[anchor_index]
    boxes = decode_boxes(output.box_deltas[image_index, anchor_index], chosen, variances)
    landmarks = decode_landmarks(output.landmark_deltas[image_index, anchor_index], chosen, variances)
    if mesh_params_at is not None:
        mesh_params = mesh_params_at(image_index, anchor_index)
    else:
        mesh_params = None if output.mesh_params is None else output.mesh_params[image_index, anchor_index]
    return Detections(boxes, top[image_index, rank], landmarks, image_index, mesh_params)


def flip_detections(dets: Detections, width: int, mesh_order: torch.Tensor | None = None) -> Detections:
    """Detections made on a horizontally flipped image, mapped onto the unflipped one.

    ``x -> width - x``; box corners swap, and so do the left/right landmarks
    (:func:`rfcore.boxes.flip_boxes`, :func:`rfcore.boxes.flip_landmarks`).
    Meshes, if computed, are mirrored the same way: every vertex takes the
    place of its mirror partner (``mesh_order``, :func:`rfcore.mesh.template.mirror_order`).

    Args:
        dets: Detections in the flipped image's pixels.
        width: Width of that image.
        mesh_order: ``(V,)`` vertex correspondence under the mirror; needed when ``dets.meshes`` is set.

    Raises:
        ValueError: If ``dets`` has meshes and ``mesh_order`` is missing or of another length.
    """
    flipped = dets._replace(boxes=flip_boxes(dets.boxes, width), landmarks=flip_landmarks(dets.landmarks, width))
    if dets.meshes is None:
        return flipped
    if mesh_order is None or len(mesh_order) != dets.meshes.shape[1]:
        got = None if mesh_order is None else len(mesh_order)
        raise ValueError(f"mirroring meshes of {dets.meshes.shape[1]} vertices needs their vertex order, got {got}")
    meshes = dets.meshes[:, mesh_order]  # fancy indexing copies
    meshes[..., 0] = width - meshes[..., 0]
    return flipped._replace(meshes=meshes)


def rescale(dets: Detections, scale_x: float, scale_y: float) -> Detections:
    """Multiply x coordinates by ``scale_x`` and y coordinates by ``scale_y`` (boxes, landmarks and meshes)."""
    xy = torch.tensor([scale_x, scale_y], dtype=dets.boxes.dtype)
    meshes = None if dets.meshes is None else dets.meshes * xy
    return dets._replace(boxes=dets.boxes * xy.repeat(2), landmarks=dets.landmarks * xy, meshes=meshes)


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
    same weights; scores stay those of the kept faces. Meshes are not
    averaged (the vertices of a face seen from two passes need not agree
    where the face hides them): a voted face keeps the mesh of its
    highest-scoring voter.

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
    meshes = None if pool.meshes is None else pool.meshes[weights.argmax(dim=1)]  # (K, V, 2) top voter's
    return kept._replace(boxes=boxes, landmarks=landmarks, meshes=meshes)


@functools.lru_cache(maxsize=8)
def cached_anchors(cfg: RetinaFaceConfig, size: tuple[int, int]) -> torch.Tensor:
    """:func:`rfcore.anchors.make_anchors`, remembered for the last few input sizes."""
    return make_anchors(cfg, size)

