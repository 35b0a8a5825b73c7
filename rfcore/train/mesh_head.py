"""The self-supervised mesh head: ``L_pixel`` alone teaches it [paper §3.2, Eq. 3].

The mesh head is a 1x1 convolution per pyramid level that predicts, per
anchor, the 144 numbers ``P_ST, P_cam, P_ill``. Here it learns them with no
3D label at all: for each positive anchor of a synthetic image the frozen,
pre-trained decoder (:mod:`rfcore.train.mesh_decoder`) turns the code into a
coloured mesh, the soft rasteriser renders it with the predicted camera and
light, and the rendering is compared with the face crop ``I*``
(:func:`rfcore.mesh.loss.mesh_branch_loss`). The detector stays frozen and
the head starts at zero (:func:`train_mesh_head` says why).

It offers :func:`train_mesh_head` and its pieces: :func:`freeze_all_but_mesh_head`,
:func:`feature_statistics` and :func:`fold_statistics`; the settings are
:class:`rfcore.train.config.HeadTrainConfig`, the command ``rfcore mesh train-head``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rfcore.boxes import POSITIVE, decode_boxes
from rfcore.config import MESH_CROP_SIZE, RetinaFaceConfig
from rfcore.data.collate import TrainBatch, face_loader
from rfcore.data.synthetic import SyntheticFaces
from rfcore.image import network_input_to_rgb
from rfcore.matching import TargetAssigner
from rfcore.mesh.decoder import MeshDecoder
from rfcore.mesh.fit import border_colour
from rfcore.mesh.loss import crop_faces, grow_boxes, mesh_branch_loss
from rfcore.model import RetinaFace
from rfcore.progress import progress_bar
from rfcore.train.config import HeadTrainConfig
from rfcore.train.model import CROP_SAMPLES, evenly_spaced

STATISTICS_BATCHES = 10
"""Batches whose features give the per-channel mean and standard deviation (:func:`feature_statistics`)."""


def freeze_all_but_mesh_head(detector: RetinaFace, decoder: MeshDecoder) -> list[nn.Parameter]:
    """Freeze the detector (eval mode, no gradients) and the decoder; return the mesh head's parameters.

    Raises:
        ValueError: If the detector has no mesh head.
    """
    if detector.mesh_head is None:
        raise ValueError("training the mesh head needs a detector built with mesh_head=True")
    for module in (detector, decoder):
        module.eval().requires_grad_(False)
    return [param.requires_grad_(True) for param in detector.mesh_head.parameters()]


Statistics = list[tuple[torch.Tensor, torch.Tensor]]
"""Per pyramid level, the ``(C,)`` mean and standard deviation of each feature channel."""


@torch.no_grad()
def feature_statistics(detector: RetinaFace, dataset: SyntheticFaces, cfg: RetinaFaceConfig, batches: int,
                       batch_size: int) -> Statistics:
    """Mean and standard deviation of every channel of the features the mesh head reads, per level.

    The features after ReLU share a large positive mean, which makes a
    linear head learn slowly (its gradient mostly moves the output of every
    anchor alike); standardised features do not, and the standardisation
    folds into the 1x1 convolution afterwards (:func:`fold_statistics`).
    """
    features = []
    for batch, _ in zip(face_loader(dataset, cfg, batch_size, seed=0), range(batches)):
        features.append(detector.features(batch.images))
    levels = [torch.cat(maps) for maps in zip(*features)]  # (N, C, H_l, W_l) per level
    return [(x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3)).clamp(min=1e-6)) for x in levels]


def standardise(context: list[torch.Tensor], statistics: Statistics) -> list[torch.Tensor]:
    """``(x - mean) / std`` per channel of every level's ``(N, C, H, W)`` features."""
    return [(x - mean[:, None, None]) / std[:, None, None] for x, (mean, std) in zip(context, statistics)]


@torch.no_grad()
def fold_statistics(mesh_head: nn.Module, statistics: Statistics) -> None:
    """Make the head read raw features: ``W (x - m) / s + b = (W / s) x + (b - (W / s) m)`` per level."""
    for head, (mean, std) in zip(mesh_head.per_level(), statistics):
        conv = head.conv1x1
        conv.weight.div_(std[None, :, None, None])  # (A*k, C, 1, 1)
        conv.bias.sub_(conv.weight[:, :, 0, 0] @ mean)


def detected_box_pixel_loss(
    detector: RetinaFace,
    decoder: MeshDecoder,
    batch: TrainBatch,
    assigner: TargetAssigner,
    cfg: RetinaFaceConfig,
    max_anchors: int,
    statistics: Statistics,
    crop_margin: float,
    crop_size: int = MESH_CROP_SIZE,
) -> torch.Tensor:
    """``L_pixel`` of a batch over (a spread of) its positive anchors, each compared with its detected box's crop.

    Args:
        detector: Frozen network with a mesh head.
        decoder: Frozen decoder.
        batch: Images and faces.
        assigner: Targets for the batch's image size; its positives are the anchors rendered.
        cfg: The detector's preset (variances, input mean).
        max_anchors: Render at most this many positives.
        statistics: The mesh head reads the features standardised with these (:func:`feature_statistics`).
        crop_margin: ``I*`` is the detected box grown by this factor about its centre.
        crop_size: Side of ``I*`` and of the renderings.

    Returns:
        Scalar mean of Eq. 3 over the rendered anchors (zero, still attached to the head, without positives).
    """
    with torch.no_grad():
        context = detector.features(batch.images)
        box_deltas = detector.predict(context, mesh=False).box_deltas  # (B, A, 4)
    positive = (assigner(batch.faces).labels == POSITIVE).nonzero()  # (P, 2) rows of (image, anchor)
    image, anchor = positive[evenly_spaced(len(positive), max_anchors)].unbind(1)
    params = detector.mesh_head.at(standardise(context, statistics), image, anchor)  # (P, 144)
    if len(image) == 0:
        return params.sum() * 0.0
    boxes = grow_boxes(decode_boxes(box_deltas[image, anchor], assigner.anchors[anchor], cfg.variances), crop_margin)
    rows = torch.cat([image[:, None].to(boxes), boxes], dim=1)  # (P, 5) as crop_faces wants
    crops = network_input_to_rgb(crop_faces(batch.images, rows, crop_size, CROP_SAMPLES), cfg.pixel_mean_bgr)
    return mesh_branch_loss(decoder, params, crops, background=border_colour(crops)).mean()



def train_mesh_head(
    detector: RetinaFace,
    decoder: MeshDecoder,
    cfg: RetinaFaceConfig,
    config: HeadTrainConfig = HeadTrainConfig(),
    progress: bool = False,
) -> list[float]:
    """Train ``detector.mesh_head`` from zero with ``L_pixel`` only, everything else frozen.

    One change from ``rfcore train --mesh`` (:func:`rfcore.train.model.pixel_term`):
    ``I*`` is cut from the box the frozen detector predicts for the anchor, not
    from the true box. Detection maps a mesh through the detected box
    (:meth:`rfcore.detector.Detector.mesh_vertices`), and the shipped
    detector's boxes, learnt on WIDER FACE, sit differently on a synthetic
    face than its tight true box; a head trained in true boxes would carry
    that offset into every detected mesh. Those boxes are also tighter than
    the synthetic faces, so ``I*`` is cut from the box grown by
    ``crop_margin`` about its centre; detection maps the mesh back through
    the same grown box (the margin is recorded in the head's file). The face
    is rendered over the mean colour of the crop's border
    (:func:`rfcore.mesh.fit.border_colour`), not over black: over black, a
    face blown up to cover the whole crop in its average colour beats a
    well-placed one wherever the background is bright, and a head learns
    exactly that.

    The detector is frozen because the shipped weights were trained on WIDER
    FACE, which is not here to keep its detection terms honest (``L_pixel``
    alone on synthetic faces could only make it worse on photographs), and
    so that ``rfcore detect`` without ``--mesh`` stays exactly as it was. The
    head starts at zero: every anchor then describes the template, frontal,
    in the middle of its crop, lit from the camera, so the first renderings
    already overlap the faces and ``L_pixel`` has gradients to follow.

    Args:
        detector: Network of preset ``cfg`` with a mesh head; only the head changes.
        decoder: Pre-trained decoder (:func:`rfcore.weights.load_mesh_decoder`).
        cfg: The detector's preset (anchors, matching, input mean).
        config: Data and schedule.
        progress: Show progress bars on stderr.

    Returns:
        ``L_pixel`` of every step.
    """
    params = freeze_all_but_mesh_head(detector, decoder)
    for param in params:
        nn.init.zeros_(param)
    dataset = config.dataset()
    dataset.keep_rendered(progress)
    steps = config.epochs * math.ceil(len(dataset) / config.batch_size)
    optimizer = torch.optim.Adam(params, lr=config.lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=steps, pct_start=0.1)
    assigner = TargetAssigner(cfg, (config.image_size, config.image_size))
    statistics = feature_statistics(detector, dataset, cfg, STATISTICS_BATCHES, config.batch_size)
    losses = []
    bar = progress_bar(total=steps, desc="training the mesh head", unit="step", disable=not progress)
    for epoch in range(config.epochs):
        for batch in face_loader(dataset, cfg, config.batch_size, seed=config.seed * 1000 + epoch):
            loss = detected_box_pixel_loss(detector, decoder, batch, assigner, cfg, config.mesh_anchors, statistics,
                                           config.crop_margin, config.crop_size)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
            bar.update()
    bar.close()
    detector.mesh_head.requires_grad_(False)
    fold_statistics(detector.mesh_head, statistics)
    return losses
