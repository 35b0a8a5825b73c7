"""The multi-task loss of RetinaFace [paper §3.1, Eq. 1] with hard negative mining.

For every anchor ``i`` of a batch

    L = L_cls(p_i, p*_i) + λ1 p*_i L_box(t_i, t*_i) + λ2 p*_i L_pts(l_i, l*_i) + λ3 p*_i L_pixel

* ``L_cls`` is the two-class softmax cross-entropy (face / not face) on the positive anchors and, per
  image, the ``ohem_ratio`` hardest negatives per positive (:func:`ohem_select`); ignored anchors (IoU
  between ``neg_iou`` and ``pos_iou``) never contribute.
* ``L_box`` and ``L_pts`` are smooth-L1 (Fast R-CNN, ``beta = 1``) on the targets of
  :class:`rfcore.matching.TargetAssigner`, summed over coordinates, on positives (``L_pts`` only those
  whose face has landmarks).
* ``L_pixel`` is the mesh term of §3.2, computed elsewhere and passed in as a scalar.

As in the public recipe (biubug6/Pytorch_Retinaface, layers/modules/multibox_loss.py), the sums of
``L_cls`` and ``L_box`` are divided by the positives in the batch and ``L_pts`` by the positives with
landmarks, each at least 1, so a batch without faces stays finite. The ``λ`` and the mining ratio come
from the preset: ``"paper"`` 0.25 / 0.1 / 0.01 and 3:1, ``"mobilenet0.25"`` ``cls + 2 box + pts`` and 7:1.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from rfcore.boxes import NEGATIVE, POSITIVE
from rfcore.config import RetinaFaceConfig
from rfcore.matching import AnchorTargets
from rfcore.model.retinaface import RetinaFaceOutput


class LossTerms(NamedTuple):
    """The loss of a batch and its parts, all scalar tensors.

    Attributes:
        total: ``λ_cls cls + λ_box box + λ_pts pts + λ_pixel pixel``, the value
            to back-propagate.
        cls: Classification term, unweighted.
        box: Box regression term, unweighted.
        pts: Landmark regression term, unweighted.
        pixel: Dense regression term as passed in, unweighted (zero if none).
    """

    total: torch.Tensor
    cls: torch.Tensor
    box: torch.Tensor
    pts: torch.Tensor
    pixel: torch.Tensor


def multitask_loss(
    output: RetinaFaceOutput,
    targets: AnchorTargets,
    cfg: RetinaFaceConfig,
    pixel: torch.Tensor | None = None,
) -> LossTerms:
    """Eq. 1 of the paper for a batch.

    Args:
        output: Network predictions with ``logits (B, A, 2)``,
            ``box_deltas (B, A, 4)`` and ``landmark_deltas (B, A, 10)``.
        targets: Matched and encoded targets for the same ``B`` images and
            ``A`` anchors.
        cfg: Preset giving ``ohem_ratio`` and the weights ``lambda_*``.
        pixel: The dense regression loss ``L_pixel`` as a scalar tensor,
            already averaged over positive anchors by the mesh branch; it is
            weighted by ``cfg.lambda_pixel``. ``None`` when the model has no
            mesh branch.

    Returns:
        :class:`LossTerms`; the terms are normalised as the module docstring says.

    Raises:
        ValueError: If predictions and targets disagree in shape.
    """
    _check_shapes(output, targets)
    labels = targets.labels
    positive = labels == POSITIVE  # (B, A)
    num_positive = positive.sum().clamp(min=1)
    num_with_points = targets.landmark_valid.sum().clamp(min=1)

    cls_per_anchor = classification_loss(output.logits, labels)  # (B, A)
    trained = positive | ohem_select(cls_per_anchor, labels, cfg.ohem_ratio)
    cls = cls_per_anchor[trained].sum() / num_positive

    # Boolean indexing gathers the positive rows: (B, A, 4) -> (P, 4)
    box = F.smooth_l1_loss(
        output.box_deltas[positive].float(), targets.boxes[positive], reduction="sum"
    ) / num_positive
    with_points = targets.landmark_valid  # (B, A), positive and annotated
    pts = F.smooth_l1_loss(
        output.landmark_deltas[with_points].float(), targets.landmarks[with_points], reduction="sum"
    ) / num_with_points

    pixel = cls.new_zeros(()) if pixel is None else pixel
    total = cfg.lambda_cls * cls + cfg.lambda_box * box + cfg.lambda_pts * pts + cfg.lambda_pixel * pixel
    return LossTerms(total=total, cls=cls, box=box, pts=pts, pixel=pixel)


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy of every anchor against face / not face.

    Args:
        logits: ``(B, A, 2)`` background / face logits.
        labels: ``(B, A)`` anchor labels; positives have class 1, every other
            anchor class 0 (ignored anchors get a value too, which callers
            leave out).

    Returns:
        ``(B, A)`` float32 per-anchor losses.
    """
    num_images, num_anchors = labels.shape
    classes = (labels == POSITIVE).long()
    # (B, A, 2) -> (B * A, 2) rows for cross_entropy, then back to (B, A)
    loss = F.cross_entropy(logits.reshape(-1, 2).float(), classes.reshape(-1), reduction="none")
    return loss.view(num_images, num_anchors)


def ohem_select(cls_loss: torch.Tensor, labels: torch.Tensor, ratio: int) -> torch.Tensor:
    """Online hard example mining: the negatives that train the classifier.

    Per image, the negative anchors are ranked by classification loss and the
    top ``ratio * max(num_positive, 1)`` are kept, or all of them if the image
    has fewer. Mining per image, as the public recipe does, keeps the
    negatives of each image in proportion to its own faces, so one cluttered
    image cannot take the whole batch's quota. The ``max(..., 1)`` is a
    choice of rfcore: an image without a positive anchor (no face, or faces
    too small for any anchor) still teaches the background through its
    ``ratio`` hardest negatives, where the public recipe would keep none.

    Args:
        cls_loss: ``(B, A)`` per-anchor classification loss; only its order
            matters (ties are broken arbitrarily) and no gradient flows
            through the selection.
        labels: ``(B, A)`` anchor labels; positives and ignored anchors are
            never selected.
        ratio: Negatives kept per positive (``cfg.ohem_ratio``).

    Returns:
        ``(B, A)`` bool, True for the selected negatives.
    """
    negative = labels == NEGATIVE
    num_positive = (labels == POSITIVE).sum(dim=1)  # (B,)
    num_keep = torch.minimum(ratio * num_positive.clamp(min=1), negative.sum(dim=1))  # (B,)
    most = int(num_keep.max())  # the one host-device sync
    # Non-negatives rank last; a partial sort of the top few is far cheaper than sorting all anchors.
    score = cls_loss.detach().masked_fill(~negative, float("-inf"))
    hardest = score.topk(most, dim=1).indices  # (B, most) anchors, hardest first
    wanted = torch.arange(most, device=labels.device) < num_keep[:, None]  # (B, most)
    return torch.zeros_like(negative).scatter_(1, hardest, wanted)


def _check_shapes(output: RetinaFaceOutput, targets: AnchorTargets) -> None:
    batch = tuple(targets.labels.shape)
    expected = {
        "logits": (output.logits, (*batch, 2)),
        "box_deltas": (output.box_deltas, (*batch, 4)),
        "landmark_deltas": (output.landmark_deltas, (*batch, 10)),
    }
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(
                f"{name} has shape {tuple(tensor.shape)} but the targets of {batch[0]} images "
                f"x {batch[1]} anchors need {shape}"
            )
