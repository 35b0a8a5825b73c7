"""Training targets for a batch: matching on the anchor grid, then encoding.

:func:`rfcore.boxes.match_anchors` defines matching with the full ``(A, F)``
IoU matrix of one image. At 640x640 the paper's 102,300 anchors make that
matrix large, while almost all of its entries are tiny: an anchor can only
reach ``IoU >= neg_iou`` with a face if

* their areas are within a factor ``1 / neg_iou`` of each other (the IoU of
  two boxes is at most the ratio of the smaller area to the larger), and
* the anchor overlaps the face, which on a regular grid is a small window of
  cells around the face.

:class:`TargetAssigner` enumerates exactly those (face, anchor) candidates for
every anchor size of every level, for all images of a batch at once, and finds
each face's forced anchor among the cells nearest its centre (the best anchor
of one size is always at the cell nearest the face, see
:func:`rfcore.boxes.best_anchor_per_face`). The result equals the dense
definition exactly; the tests check it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch

from rfcore.anchors import AnchorLevel, anchor_levels, make_anchors
from rfcore.boxes import (
    IGNORED,
    NEGATIVE,
    POSITIVE,
    as_boxes,
    as_landmarks,
    best_anchor_per_face,
    centre_distance2,
    cxcywh_to_xyxy,
    encode_boxes,
    encode_landmarks,
    has_landmarks,
    match_anchors,
    paired_iou,
)
from rfcore.config import RetinaFaceConfig


@dataclass
class FaceBatch:
    """The annotated faces of a batch of images, flattened.

    Attributes:
        boxes: ``(M, 4)`` faces ``(x1, y1, x2, y2)`` of all images.
        landmarks: ``(M, 5, 2)`` five points per face, all ``-1`` if missing.
        image_index: ``(M,)`` int64 image of each face, non-decreasing.
        num_images: Batch size ``B`` (images may have no faces).
    """

    boxes: torch.Tensor
    landmarks: torch.Tensor
    image_index: torch.Tensor
    num_images: int

    @classmethod
    def from_list(cls, boxes: Sequence, landmarks: Sequence | None = None) -> "FaceBatch":
        """Build from per-image ``(F_i, 4)`` boxes and optional ``(F_i, 5, 2)`` landmarks.

        ``landmarks`` (or any entry of it) may be ``None`` for images without
        landmark annotation.
        """
        if landmarks is not None and len(landmarks) != len(boxes):
            raise ValueError(f"got boxes for {len(boxes)} images but landmarks for {len(landmarks)}")
        per_image_boxes, per_image_points = [], []
        for b, image_boxes in enumerate(boxes):
            image_boxes = as_boxes(image_boxes, f"boxes[{b}]").reshape(-1, 4)
            points = None if landmarks is None else landmarks[b]
            per_image_boxes.append(image_boxes)
            per_image_points.append(as_landmarks(points, len(image_boxes), f"landmarks[{b}]"))
        counts = torch.tensor([len(x) for x in per_image_boxes], dtype=torch.long)
        return cls(
            boxes=torch.cat(per_image_boxes) if boxes else torch.zeros(0, 4),
            landmarks=torch.cat(per_image_points) if boxes else torch.zeros(0, 5, 2),
            image_index=torch.repeat_interleave(torch.arange(len(counts)), counts),
            num_images=len(counts),
        )

    @classmethod
    def from_padded(
        cls, boxes: torch.Tensor, mask: torch.Tensor, landmarks: torch.Tensor | None = None
    ) -> "FaceBatch":
        """Build from padded ``(B, F, 4)`` boxes with a ``(B, F)`` validity mask.

        Args:
            boxes: ``(B, F, 4)`` faces; padded rows are ignored.
            mask: ``(B, F)`` bool, True for real faces.
            landmarks: Optional ``(B, F, 5, 2)`` points.
        """
        if boxes.ndim != 3 or mask.shape != boxes.shape[:2]:
            raise ValueError(
                f"padded faces need boxes (B, F, 4) and mask (B, F), got {tuple(boxes.shape)} and {tuple(mask.shape)}"
            )
        mask = mask.bool()
        per_image_points = None if landmarks is None else [p[m] for p, m in zip(landmarks, mask)]
        return cls.from_list([b[m] for b, m in zip(boxes, mask)], per_image_points)

    @property
    def has_landmarks(self) -> torch.Tensor:
        """``(M,)`` bool: the face has a landmark annotation."""
        return has_landmarks(self.landmarks)

    @property
    def local_index(self) -> torch.Tensor:
        """``(M,)`` index of each face within its own image."""
        counts = torch.bincount(self.image_index, minlength=self.num_images)
        first = torch.cumsum(counts, 0) - counts
        return torch.arange(len(self.image_index), device=self.image_index.device) - first[self.image_index]


class AnchorTargets(NamedTuple):
    """What every anchor of a batch should predict.

    Attributes:
        labels: ``(B, A)`` int64 :data:`~rfcore.boxes.POSITIVE`,
            :data:`~rfcore.boxes.NEGATIVE` or :data:`~rfcore.boxes.IGNORED`.
        matched_idxs: ``(B, A)`` int64 index of the matched face within its
            image for positive anchors, ``-1`` elsewhere.
        boxes: ``(B, A, 4)`` encoded box targets, zero where not positive.
        landmarks: ``(B, A, 10)`` encoded landmark targets, zero where not valid.
        landmark_valid: ``(B, A)`` bool, positive and the face has landmarks.
    """

    labels: torch.Tensor
    matched_idxs: torch.Tensor
    boxes: torch.Tensor
    landmarks: torch.Tensor
    landmark_valid: torch.Tensor


class TargetAssigner:
    """Matches faces to the anchors of one input size and encodes the targets.

    Args:
        cfg: Preset with the anchor layout, IoU thresholds and variances.
        image_size: Input ``(height, width)`` of every image of a batch.
        device: Device of the anchors and of the results.

    Example:
        >>> assign = TargetAssigner(get_config("paper"), (640, 640))
        >>> targets = assign([torch.tensor([[10.0, 10.0, 50.0, 60.0]])])
        >>> targets.labels.shape
        torch.Size([1, 102300])
    """

    def __init__(self, cfg: RetinaFaceConfig, image_size, device=None) -> None:
        self.cfg = cfg
        self.levels: list[AnchorLevel] = anchor_levels(cfg, image_size)
        self.anchors = make_anchors(cfg, image_size, device=device)  # (A, 4) cxcywh
        self.anchors_xyxy = cxcywh_to_xyxy(self.anchors)

    def __call__(self, boxes, landmarks=None) -> AnchorTargets:
        """Targets for a batch.

        Args:
            boxes: A :class:`FaceBatch`, or a list of per-image ``(F_i, 4)`` faces.
            landmarks: With a list of boxes, an optional list of ``(F_i, 5, 2)``.

        Returns:
            :class:`AnchorTargets` with ``B`` images and ``A`` anchors.
        """
        faces = boxes if isinstance(boxes, FaceBatch) else FaceBatch.from_list(boxes, landmarks)
        faces = FaceBatch(
            faces.boxes.to(self.anchors), faces.landmarks.to(self.anchors),
            faces.image_index.to(self.anchors.device), faces.num_images,
        )
        labels, matched_face = self.match(faces)
        return self.encode(faces, labels, matched_face)

    def match(self, faces: FaceBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Label all ``B * A`` anchors of the batch.

        Returns:
            ``labels`` ``(B * A,)`` and ``matched_face`` ``(B * A,)``: the flat
            index into ``faces`` of the face each positive anchor matches,
            ``-1`` elsewhere.
        """
        num_keys = faces.num_images * len(self.anchors)
        device = self.anchors.device
        labels = torch.full((num_keys,), NEGATIVE, dtype=torch.long, device=device)
        matched_face = torch.full((num_keys,), -1, dtype=torch.long, device=device)
        if len(faces.boxes) == 0:
            return labels, matched_face

        face, anchor = self._candidates(faces.boxes)
        iou = paired_iou(self.anchors_xyxy[anchor], faces.boxes[face])
        keep = iou >= self.cfg.neg_iou
        key, best_iou, best_face = self._best_face_per_anchor(faces, face[keep], anchor[keep], iou[keep], num_keys)
        labels[key] = torch.where(best_iou >= self.cfg.pos_iou, POSITIVE, IGNORED)
        matched_face[key] = best_face

        face, anchor, iou = self._forced_pairs(faces.boxes)
        key, _, forced_face = self._best_face_per_anchor(faces, face, anchor, iou, num_keys)
        labels[key] = POSITIVE
        matched_face[key] = forced_face
        matched_face[labels != POSITIVE] = -1
        return labels, matched_face

    def encode(self, faces: FaceBatch, labels: torch.Tensor, matched_face: torch.Tensor) -> AnchorTargets:
        """Encode the matched faces of positive anchors (see :mod:`rfcore.boxes`)."""
        num_images, num_anchors = faces.num_images, len(self.anchors)
        key = (labels == POSITIVE).nonzero().squeeze(1)
        face, anchor = matched_face[key], key % num_anchors
        box_targets = self.anchors.new_zeros(num_images * num_anchors, 4)
        box_targets[key] = encode_boxes(faces.boxes[face], self.anchors[anchor], self.cfg.variances)

        valid = faces.has_landmarks[face]
        key, face, anchor = key[valid], face[valid], anchor[valid]
        point_targets = self.anchors.new_zeros(num_images * num_anchors, 10)
        point_targets[key] = encode_landmarks(faces.landmarks[face], self.anchors[anchor], self.cfg.variances)
        landmark_valid = torch.zeros(num_images * num_anchors, dtype=torch.bool, device=labels.device)
        landmark_valid[key] = True

        matched_idxs = torch.full_like(matched_face, -1)
        positive = matched_face >= 0
        matched_idxs[positive] = faces.local_index[matched_face[positive]]
        shape = (num_images, num_anchors)
        return AnchorTargets(
            labels=labels.view(shape),
            matched_idxs=matched_idxs.view(shape),
            boxes=box_targets.view(*shape, 4),
            landmarks=point_targets.view(*shape, 10),
            landmark_valid=landmark_valid.view(shape),
        )

    def _candidates(self, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All (face, anchor) pairs that might reach ``IoU >= neg_iou``.

        Args:
            boxes: ``(M, 4)`` faces.

        Returns:
            ``face`` and ``anchor`` indices, ``(P,)`` each.
        """
        faces, anchors = [], []
        for level in self.levels:
            for k, side in enumerate(level.sizes):
                rows, cols = _candidate_ranges(boxes, side, level.stride, level.grid, self.cfg.neg_iou)
                face, row, col = _enumerate_windows(rows, cols)
                faces.append(face)
                anchors.append(_anchor_index(level, row, col, k))
        return torch.cat(faces), torch.cat(anchors)

    def _forced_pairs(self, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each face's best anchor (:func:`~rfcore.boxes.best_anchor_per_face`).

        The best anchor of one size lies at the cell nearest the face centre,
        so only the 2x2 cells around the centre of every size are compared.

        Returns:
            ``face``, ``anchor`` and ``iou`` ``(P,)`` for faces with ``iou > 0``.
        """
        centre_x = (boxes[:, 0] + boxes[:, 2]) / 2
        centre_y = (boxes[:, 1] + boxes[:, 3]) / 2
        candidates = []
        for level in self.levels:
            rows = _nearest_two(centre_y, level.stride, level.grid[0])  # (M, 2)
            cols = _nearest_two(centre_x, level.stride, level.grid[1])  # (M, 2)
            # (M, 2, 1) and (M, 1, 2) -> (M, 4) cells around the centre
            row, col = torch.broadcast_tensors(rows[:, :, None], cols[:, None, :])
            for k in range(len(level.sizes)):
                candidates.append(_anchor_index(level, row.reshape(-1, 4), col.reshape(-1, 4), k))
        # (M, C) candidate anchors, sorted so that ties go to the lowest index
        anchor = torch.cat(candidates, dim=1).sort(dim=1).values
        face = torch.arange(len(boxes), device=boxes.device)[:, None].expand_as(anchor)
        iou = paired_iou(self.anchors_xyxy[anchor.reshape(-1)], boxes[face.reshape(-1)]).view(anchor.shape)
        distance2 = centre_distance2(self.anchors[anchor], boxes[:, None])
        best = best_anchor_per_face(iou.T, distance2.T)  # (M,) position in C
        rows = torch.arange(len(boxes), device=boxes.device)
        best_iou = iou[rows, best]
        hit = best_iou > 0
        return rows[hit], anchor[rows, best][hit], best_iou[hit]

    def _best_face_per_anchor(self, faces, face, anchor, iou, num_keys):
        """Reduce (face, anchor, iou) pairs to one face per batch anchor.

        The face with the highest IoU wins, the lowest face index on ties.

        Returns:
            ``key`` ``(K,)`` flat batch-anchor indices that have pairs, their
            best ``iou`` ``(K,)`` and winning ``face`` ``(K,)``.
        """
        key = faces.image_index[face] * len(self.anchors) + anchor
        best_iou = iou.new_full((num_keys,), -1.0).scatter_reduce(0, key, iou, "amax")
        top = iou == best_iou[key]
        no_face = len(faces.boxes)
        winner = torch.full((num_keys,), no_face, dtype=torch.long, device=iou.device)
        winner = winner.scatter_reduce(0, key[top], face[top], "amin")
        key = (best_iou >= 0).nonzero().squeeze(1)
        return key, best_iou[key], winner[key]


def _candidate_ranges(boxes, side: float, stride: int, grid: tuple[int, int], min_iou: float):
    """Rows and columns of the anchors of one size that may reach ``min_iou`` with each face.

    ``IoU >= t`` needs ``inter >= t * max(side**2, w * h)`` and, as the overlap
    along y is at most ``min(side, h)``, an overlap along x of at least
    ``t * max(side**2, w * h) / min(side, h)``. Overlapping intervals of
    lengths ``side`` and ``w`` overlap by ``(side + w) / 2 - |dx|`` at most,
    which bounds the centre offset ``|dx|``: a range of cells. The bound is
    widened by a hair so that float rounding never drops a pair.

    Args:
        boxes: ``(M, 4)`` faces.
        side: Anchor side in pixels.
        stride: Cell spacing in pixels.
        grid: ``(rows, cols)`` of the level.
        min_iou: The IoU to reach.

    Returns:
        ``(first, count)`` of rows and of columns, ``(M,)`` int64 each;
        ``count`` is 0 where no anchor can reach ``min_iou``.
    """
    size = boxes[:, 2:] - boxes[:, :2]  # (M, 2) face (w, h)
    min_inter = min_iou * torch.clamp(size.prod(dim=1), min=side * side)  # (M,)
    # overlap needed along x uses the largest possible overlap along y, and vice versa
    min_overlap = min_inter[:, None] / size.flip(1).clamp(max=side)  # (M, 2)
    reach = (side + size) / 2 - min_overlap  # (M, 2) largest |centre offset|
    reach = reach * (1 + 1e-6) + 1e-3
    feasible = (min_overlap <= size.clamp(max=side)).all(dim=1) & (reach > 0).all(dim=1)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    first = torch.ceil((centre - reach) / stride - 0.5).long()
    last = torch.floor((centre + reach) / stride - 0.5).long()
    limit = torch.tensor([grid[1] - 1, grid[0] - 1], device=boxes.device)
    first = torch.maximum(first, torch.zeros_like(limit))
    last = torch.minimum(last, limit)
    count = (last - first + 1).clamp(min=0) * feasible[:, None]
    # column 1 is y (rows), column 0 is x (cols)
    return (first[:, 1], count[:, 1]), (first[:, 0], count[:, 0])


def _enumerate_windows(rows, cols):
    """Enumerate the rectangle of cells of every face.

    Args:
        rows, cols: ``(first, count)`` pairs of ``(M,)`` int64 tensors.

    Returns:
        ``face``, ``row`` and ``col`` ``(P,)`` for every cell of every window.
    """
    (row0, num_rows), (col0, num_cols) = rows, cols
    cells = num_rows * num_cols  # (M,)
    face = torch.repeat_interleave(torch.arange(len(cells), device=cells.device), cells)
    start = torch.cumsum(cells, 0) - cells
    offset = torch.arange(len(face), device=cells.device) - start[face]  # position inside the window
    width = num_cols[face]
    return face, row0[face] + offset // width, col0[face] + offset % width


def _nearest_two(centre, stride: int, cells: int):
    """The two cells (along one axis) whose centres bracket ``centre``: ``(M,) -> (M, 2)``."""
    below = torch.floor(centre / stride - 0.5).long()
    return torch.stack([below, below + 1], dim=1).clamp(0, cells - 1)


def _anchor_index(level: AnchorLevel, row, col, k: int):
    """Flat index of anchor size ``k`` at cell ``(row, col)`` of ``level``."""
    return level.start + (row * level.grid[1] + col) * len(level.sizes) + k


# ---------------------------------------------------------------- the reference


def per_image_targets(
    cfg: RetinaFaceConfig, anchors: torch.Tensor, boxes: list[torch.Tensor], landmarks: list[torch.Tensor]
) -> AnchorTargets:
    """The reference: match and encode one image at a time with the dense definition.

    :func:`rfcore.boxes.match_anchors` builds the full ``(A, F)`` IoU matrix
    of each image; :class:`TargetAssigner` must give exactly these targets
    (tested), and ``rfcore bench targets`` times it against this loop.

    Args:
        cfg: Preset with thresholds and variances.
        anchors: ``(A, 4)`` anchors ``(cx, cy, w, h)``.
        boxes: Per image ``(F_i, 4)`` faces.
        landmarks: Per image ``(F_i, 5, 2)`` points.

    Returns:
        The same :class:`~rfcore.matching.AnchorTargets` as :class:`TargetAssigner`.
    """
    per_image = []
    for image_boxes, image_points in zip(boxes, landmarks):
        labels, matched = match_anchors(anchors, image_boxes, cfg.pos_iou, cfg.neg_iou)
        positive = labels == POSITIVE
        face = matched[positive]
        box_targets = anchors.new_zeros(len(anchors), 4)
        box_targets[positive] = encode_boxes(image_boxes[face], anchors[positive], cfg.variances)
        valid = positive.clone()
        valid[positive] = has_landmarks(image_points)[face]
        point_targets = anchors.new_zeros(len(anchors), 10)
        point_targets[valid] = encode_landmarks(image_points[matched[valid]], anchors[valid], cfg.variances)
        per_image.append((labels, matched, box_targets, point_targets, valid))
    return AnchorTargets(*(torch.stack(parts) for parts in zip(*per_image)))
