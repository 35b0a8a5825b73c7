"""What the trainer optimises: the detector and, with the mesh branch, its decoder and ``L_pixel``.

The dense regression term of Eq. 1, ``λ3 p*_i L_pixel`` [paper §3.2], needs
three things per positive anchor ``i``: its 144 mesh parameters (the mesh
head of :class:`~rfcore.model.RetinaFace`), the face it is matched to, and
that face cut out of the image (``I*`` of Eq. 3). :func:`pixel_term` puts
them together and averages :func:`rfcore.mesh.mesh_branch_loss` over the
positives. Decoding and rendering cost far more per anchor than the rest of
the loss, so at most ``max_anchors`` positives of a batch are rendered,
evenly spread over the anchor order, and the mesh head itself is evaluated
at those anchors only (:meth:`rfcore.model.heads.LevelHeads.at`), not at
every anchor of every image. Optionally (``rfcore train --mesh-landmarks W``,
not in the paper) each rendered face's term also counts how far its mesh's
five landmark vertices land from the face's five landmarks (:func:`landmark_term`).

:class:`TrainingModel` holds the detector and the optional decoder in one
module, so one optimizer and one DistributedDataParallel wrapper cover both,
and its ``forward`` computes ``L_pixel`` where DDP can see it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from rfcore.boxes import POSITIVE, has_landmarks, image_left_first
from rfcore.config import MESH_CROP_MARGIN, MESH_CROP_SIZE
from rfcore.image import network_input_to_rgb
from rfcore.matching import AnchorTargets, FaceBatch
from rfcore.mesh import (
    MeshDecoder,
    build_hierarchy,
    crop_faces,
    crop_points,
    grow_boxes,
    landmark_vertex_loss,
    mesh_branch_loss,
    project_mesh_params,
)
from rfcore.mesh.fit import border_colour
from rfcore.model import RetinaFace, RetinaFaceOutput
from rfcore.train.config import MESH_ANCHORS
from rfcore.weights import CROP_MARGIN_KEY, weights_metadata

CROP_SAMPLES = 4
"""Samples per crop pixel along each axis when cutting ``I*``: 4 x 4 average a large face well enough and cost
far less than adaptive sampling (13 x 13 for a 400-pixel face)."""


def freeze_for_fine_tuning(detector: nn.Module) -> list[nn.Module]:
    """Freeze every batch norm of ``detector`` (eval mode, affine fixed) and its first convolution, the stem.

    Fine-tuning from weights with small batches, detection libraries keep batch norm as it was
    trained: in train mode it would normalise each batch by its own statistics (a handful of
    images) instead of the stored ones, changing the function the weights compute before the first
    step. Weights whose batch norm was folded into the convolutions suffer most (the shipped file:
    the convolutions absorbed the statistics and scales, and each stored batch norm only adds the
    folded bias, with running mean 0, variance ``1 - eps`` and weight 1; :mod:`rfcore.convert`): batch
    statistics would re-normalise activations that the convolutions already scaled.

    With batch norm frozen, nothing normalises the stem's output any more, and the stem sees raw
    pixels (hundreds of grey levels): on the shipped weights its gradient is orders of magnitude larger
    than the weight itself, so even a tiny SGD step changes it by as much as it is and the loss climbs
    within a few steps. It is frozen too, as Detectron2 freezes
    the stem of its backbones (``FREEZE_AT``). Call this after ``module.train()``, which would undo it.

    Returns:
        The frozen modules: the batch norms, then the stem.
    """
    norms = [m for m in detector.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    stem = next(m for m in detector.modules() if isinstance(m, nn.Conv2d))
    for module in norms:
        module.eval()
    for module in (*norms, stem):
        for parameter in module.parameters():
            parameter.requires_grad_(False)
    return [*norms, stem]


def evenly_spaced(count: int, limit: int | None) -> torch.Tensor:
    """``min(count, limit)`` indices into ``range(count)``, evenly spaced, first and last included."""
    if limit is None or count <= limit:
        return torch.arange(count)
    return torch.linspace(0, count - 1, limit).round().long()


def pixel_term(
    decoder: MeshDecoder,
    mesh_params_at: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    targets: AnchorTargets,
    faces: FaceBatch,
    images: torch.Tensor,
    mean_bgr: Sequence[float],
    max_anchors: int | None = MESH_ANCHORS,
    crop_size: int = MESH_CROP_SIZE,
    crop_margin: float = 1.0,
    over_border_colour: bool = False,
    landmark_weight: float = 0.0,
) -> torch.Tensor:
    """``L_pixel`` of Eq. 1 for a batch: Eq. 3 averaged over (a spread of) its positive anchors.

    By default ``I*`` is the matched face's box and the faces are rendered over black, Eq. 3 as the paper
    states it. Training (:class:`TrainingModel`) grows the box by :data:`rfcore.config.MESH_CROP_MARGIN`
    and renders over the mean colour of the crop's border (:func:`rfcore.mesh.fit.border_colour`), the
    background's: over black, a face blown up to cover the whole crop in its average colour beats a
    well-placed one wherever the background is bright.

    Args:
        decoder: Shape and texture decoder.
        mesh_params_at: ``(P,)`` image and ``(P,)`` anchor indices -> ``(P, 144)``
            mesh-head outputs of those anchors (``lambda i, a: params[i, a]``
            for a full ``(B, A, 144)`` tensor).
        targets: The batch's targets; ``labels`` and ``matched_idxs`` are used.
        faces: The batch's faces, as given to the target assigner.
        images: ``(B, 3, H, W)`` network input (:func:`rfcore.image.preprocess`).
        mean_bgr: Its preprocessing mean: the crops are turned back into RGB in
            ``[0, 1]`` (:func:`network_input_to_rgb`) to compare with renderings.
        max_anchors: Render at most this many positives; ``None`` for all.
        crop_size: Side of the crops and renderings.
        crop_margin: Factor by which the boxes grow about their centres.
        over_border_colour: Render over each crop's border colour instead of black.
        landmark_weight: Add this times :func:`landmark_term` to each face's ``L_pixel`` (not in the paper;
            0: Eq. 3 alone).

    Returns:
        Scalar mean over the rendered positives; zero (still attached to
        the mesh head's graph) when the batch has no positive anchor.
    """
    positive = (targets.labels == POSITIVE).nonzero()  # (P, 2) rows of (image, anchor)
    positive = positive[evenly_spaced(len(positive), max_anchors).to(positive.device)]
    image, anchor = positive.unbind(1)
    params = mesh_params_at(image, anchor)  # (P, 144)
    if len(positive) == 0:
        return params.sum() * 0.0
    counts = torch.bincount(faces.image_index, minlength=faces.num_images).to(image.device)
    first_face = torch.cumsum(counts, 0) - counts  # (B,) index of each image's first face
    face = first_face[image] + targets.matched_idxs[image, anchor]
    boxes = faces.boxes.to(images)[face.to(faces.boxes.device)]  # (P, 4)
    if crop_margin != 1:  # grown about the centre (at 1 the boxes stay exactly as they are)
        boxes = grow_boxes(boxes, crop_margin)
    rows = torch.cat([image[:, None].to(boxes), boxes], dim=1)  # (P, 5) as crop_faces wants
    # cropping commutes with the per-channel affine conversion, so convert the small crops, not the batch
    # (beyond the image border the crop then shows the mean colour rather than black)
    crops = network_input_to_rgb(crop_faces(images, rows, crop_size, CROP_SAMPLES), mean_bgr)
    background = border_colour(crops) if over_border_colour else 0.0
    loss = mesh_branch_loss(decoder, params, crops, background=background)  # (P,)
    if landmark_weight:
        landmarks = faces.landmarks.to(images)[face.to(faces.landmarks.device)]  # (P, 5, 2)
        loss = loss + landmark_weight * landmark_term(decoder, params, landmarks, boxes, crop_size)
    return loss.mean()


def landmark_term(decoder: MeshDecoder, params: torch.Tensor, landmarks: torch.Tensor, boxes: torch.Tensor,
                  crop_size: int) -> torch.Tensor:
    """:func:`rfcore.mesh.landmark_vertex_loss` of each face: its mesh's landmark vertices against its five
    landmarks, both in the face's crop; 0 for a face without landmark annotation.

    Args:
        decoder: Shape and texture decoder; its template must name the five landmark vertices.
        params: ``(P, 144)`` mesh-head outputs.
        landmarks: ``(P, 5, 2)`` the faces' landmarks in image pixels.
        boxes: ``(P, 4)`` the crops' boxes.
        crop_size: Side of the crops.

    Returns:
        ``(P,)`` loss per face.

    Raises:
        ValueError: If the decoder's template does not name its landmark vertices.
    """
    if decoder.landmark_vertices is None:
        raise ValueError("the mesh decoder's template does not name its five landmark vertices")
    size = (crop_size, crop_size)
    points = image_left_first(project_mesh_params(decoder, params, size)[:, decoder.landmark_vertices])  # (P, 5, 2)
    loss = landmark_vertex_loss(points, crop_points(landmarks, boxes, size), crop_size)
    return torch.where(has_landmarks(landmarks), loss, torch.zeros_like(loss))


class TrainingModel(nn.Module):
    """The detector and, when the mesh branch is trained, its decoder.

    ``L_pixel`` compares each rendered positive with its face's box grown by
    :data:`rfcore.config.MESH_CROP_MARGIN`, rendered over the crop border's colour (:func:`pixel_term`).

    Args:
        detector: The network; it needs a mesh head if ``decoder`` is given.
        decoder: Mesh decoder, or ``None`` to train without ``L_pixel``.
        mean_bgr: Preprocessing mean of the detector's input (``cfg.pixel_mean_bgr``).
        max_anchors: Positives rendered per batch (:func:`pixel_term`).
        landmark_weight: Weight of :func:`landmark_term` added to each face's ``L_pixel`` (0: none).

    Raises:
        ValueError: If a decoder is given but the detector has no mesh head.
    """

    def __init__(self, detector: RetinaFace, decoder: MeshDecoder | None = None,
                 mean_bgr: Sequence[float] = (104.0, 117.0, 123.0), max_anchors: int | None = MESH_ANCHORS,
                 landmark_weight: float = 0.0) -> None:
        super().__init__()
        if decoder is not None and detector.mesh_head is None:
            raise ValueError("training the mesh branch needs a detector built with mesh_head=True")
        self.detector = detector
        self.decoder = decoder
        self.mean_bgr = tuple(mean_bgr)
        self.max_anchors = max_anchors
        self.landmark_weight = landmark_weight

    @classmethod
    def build(cls, detector: RetinaFace, mesh: bool, mean_bgr: Sequence[float],
              max_anchors: int | None = MESH_ANCHORS, landmark_weight: float = 0.0) -> TrainingModel:
        """With ``mesh``, a fresh :class:`~rfcore.mesh.MeshDecoder` over the default mesh hierarchy and the mesh head
        set to zero.

        A zero head describes every face as the decoder's template, frontal, in the middle of its crop and lit
        from the camera, so the first renderings already overlap the faces and ``L_pixel`` has gradients to
        follow; a randomly initialised head puts random cameras on them (``rfcore mesh train-head`` starts
        at zero for the same reason, :mod:`rfcore.train.mesh_head`).
        """
        model = cls(detector, MeshDecoder(build_hierarchy()) if mesh else None, mean_bgr, max_anchors, landmark_weight)
        if mesh:
            for parameter in detector.mesh_head.parameters():
                nn.init.zeros_(parameter)
        return model

    def file_metadata(self, preset: str) -> dict[str, dict[str, str]]:
        """What each file of :meth:`saved_modules` records, by file name: its preset and layout
        (:func:`rfcore.weights.weights_metadata`) and, for the network of a mesh branch, the crop margin that
        detection maps the mesh through (:func:`rfcore.weights.load_mesh_model`)."""
        files = {name: weights_metadata(module, preset) for name, module in self.saved_modules().items()}
        if self.decoder is not None:
            files["weights"][CROP_MARGIN_KEY] = f"{MESH_CROP_MARGIN:g}"
        return files

    def saved_modules(self) -> dict[str, nn.Module]:
        """The modules a checkpoint holds, by file name (:mod:`rfcore.train.checkpoint`)."""
        modules = {"weights": self.detector}
        if self.decoder is not None:
            modules["mesh_decoder"] = self.decoder
        return modules

    def forward(
        self, images: torch.Tensor, targets: AnchorTargets, faces: FaceBatch
    ) -> tuple[RetinaFaceOutput, torch.Tensor | None]:
        """Network outputs for ``(B, 3, H, W)`` preprocessed images, and ``L_pixel`` (``None`` without a decoder)."""
        context = self.detector.features(images)
        output = self.detector.predict(context, mesh=False)  # the mesh head runs at the rendered positives only
        if self.decoder is None:
            return output, None

        def mesh_params_at(image: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
            return self.detector.mesh_head.at(context, image, anchor)

        return output, pixel_term(self.decoder, mesh_params_at, targets, faces, images, self.mean_bgr, self.max_anchors,
                                  crop_margin=MESH_CROP_MARGIN, over_border_colour=True,
                                  landmark_weight=self.landmark_weight)
