"""Named presets that fix every number of a RetinaFace variant.

A preset is a frozen dataclass: the anchor layout, the matching thresholds, the loss weights of Eq. 1 and
the network shape travel together, so a model, its anchors and its training targets can never disagree.

* ``"paper"``: the paper's layout [§4.2, Tab. 2]: pyramid P2..P6 (strides 4..64), three square anchors
  per location with scale step 2^(1/3) from 16 px, IoU >= 0.5 positive, < 0.3 negative, OHEM 3:1, loss
  weights 0.25 / 0.1 / 0.01, deformable context modules, on ResNet-50 (the paper's ResNet-152 was
  pre-trained on ImageNet-11k, which no package ships; ``replace(get_config("paper"),
  backbone="resnet152")`` builds its depth).
* ``"mobilenet0.25"`` and ``"resnet50"``: the layout of the widely shared PyTorch checkpoints
  (biubug6/Pytorch_Retinaface, data/config.py): strides 8/16/32, two anchors per location, IoU 0.35 with
  no ignore band, OHEM 7:1, variances (0.1, 0.2). Their weights only work with exactly this layout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class RetinaFaceConfig:
    """Everything that defines one RetinaFace variant.

    Attributes:
        name: Preset name, as accepted by :func:`get_config`.
        strides: Stride of each pyramid level in pixels, finest first.
        anchor_sizes: Side lengths (pixels) of the square anchors at each
            level; ``len(anchor_sizes) == len(strides)``.
        variances: ``(centre, size)`` scale factors of the box and landmark
            encoding (see :mod:`rfcore.boxes`).
        pos_iou: An anchor whose best IoU with a face is ``>= pos_iou`` is
            positive.
        neg_iou: An anchor whose best IoU is ``< neg_iou`` is negative; in
            between it is ignored. ``pos_iou == neg_iou`` means no ignore band.
        ohem_ratio: Negatives kept per positive by hard example mining.
        lambda_cls, lambda_box, lambda_pts, lambda_pixel: Weights of the four
            terms of the multi-task loss [paper Eq. 1].
        backbone: Backbone network name.
        fpn_channels: Channels of the feature pyramid and context modules.
        deformable: Use deformable convolutions in the context modules.
        train_size: Side of the square training crops in pixels.
        pixel_mean_bgr: Mean subtracted from BGR input pixels (0..255).
        shared_heads: One set of 1x1 heads shared by all pyramid levels, as
            in the paper [§4.2]; the public checkpoints have one per level.
    """

    name: str
    strides: tuple[int, ...]
    anchor_sizes: tuple[tuple[float, ...], ...]
    variances: tuple[float, float]
    pos_iou: float
    neg_iou: float
    ohem_ratio: int
    lambda_cls: float
    lambda_box: float
    lambda_pts: float
    lambda_pixel: float
    backbone: str
    fpn_channels: int
    deformable: bool
    train_size: int = 640
    pixel_mean_bgr: tuple[float, float, float] = (104.0, 117.0, 123.0)
    shared_heads: bool = False

    def __post_init__(self) -> None:
        if len(self.strides) != len(self.anchor_sizes):
            raise ValueError(
                f"config {self.name!r}: {len(self.strides)} strides but "
                f"{len(self.anchor_sizes)} anchor size groups"
            )
        if not 0.0 < self.neg_iou <= self.pos_iou <= 1.0:
            raise ValueError(
                f"config {self.name!r}: need 0 < neg_iou <= pos_iou <= 1, got "
                f"neg_iou={self.neg_iou}, pos_iou={self.pos_iou}"
            )

    @property
    def level_names(self) -> tuple[str, ...]:
        """Pyramid level names, ``P<k>`` with ``stride == 2**k``."""
        return tuple(f"P{int(math.log2(s))}" for s in self.strides)

    @property
    def anchors_per_location(self) -> int:
        """Anchors per feature-map cell (the same on every level)."""
        return len(self.anchor_sizes[0])


def paper_anchor_sizes(
    base: float = 16.0, levels: int = 5, per_level: int = 3
) -> tuple[tuple[float, ...], ...]:
    """Anchor sides of the paper's Table 2: ``base * 2**(level + k/3)``.

    Args:
        base: Smallest anchor side, at the finest level (P2).
        levels: Number of pyramid levels.
        per_level: Anchors per location; consecutive sizes differ by
            ``2**(1/per_level)``.

    Returns:
        One tuple of ``per_level`` sides per level, finest level first.
    """
    return tuple(
        tuple(base * 2.0 ** (level + k / per_level) for k in range(per_level))
        for level in range(levels)
    )


_PUBLIC_LAYOUT = dict(
    strides=(8, 16, 32),
    anchor_sizes=((16.0, 32.0), (64.0, 128.0), (256.0, 512.0)),
    variances=(0.1, 0.2),
    pos_iou=0.35,
    neg_iou=0.35,
    ohem_ratio=7,
    lambda_cls=1.0,
    lambda_box=2.0,
    lambda_pts=1.0,
    lambda_pixel=0.0,
    deformable=False,
)

PRESETS: dict[str, RetinaFaceConfig] = {
    "paper": RetinaFaceConfig(
        name="paper",
        strides=(4, 8, 16, 32, 64),
        anchor_sizes=paper_anchor_sizes(),
        # The paper states no variance factors: targets are the plain
        # normalised offsets and log-ratios.
        variances=(1.0, 1.0),
        pos_iou=0.5,
        neg_iou=0.3,
        ohem_ratio=3,
        lambda_cls=1.0,
        lambda_box=0.25,
        lambda_pts=0.1,
        lambda_pixel=0.01,
        backbone="resnet50",
        fpn_channels=256,
        deformable=True,
        shared_heads=True,
    ),
    "mobilenet0.25": RetinaFaceConfig(
        name="mobilenet0.25", backbone="mobilenet0.25", fpn_channels=64, **_PUBLIC_LAYOUT
    ),
    "resnet50": RetinaFaceConfig(
        name="resnet50", backbone="resnet50", fpn_channels=256, **_PUBLIC_LAYOUT
    ),
}


def get_config(name: str) -> RetinaFaceConfig:
    """Look up a preset by name.

    Args:
        name: One of ``PRESETS`` (``"paper"``, ``"mobilenet0.25"``, ``"resnet50"``).

    Returns:
        The frozen preset. Use :func:`dataclasses.replace` to derive variants.

    Raises:
        ValueError: If ``name`` is not a preset; the message lists the valid names.
    """
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        valid = ", ".join(repr(n) for n in PRESETS)
        raise ValueError(f"unknown preset {name!r}; valid presets are {valid}") from None


MESH_CROP_SIZE = 32
"""Side of the face crops ``I*`` and of the rendered faces of the mesh branch, in pixels: training renders at
this size, and detection projects the mesh through the same crop (pixel positions do not depend on it)."""

MESH_CROP_MARGIN = 1.5
"""The mesh branch's ``I*`` is the face box grown by this factor about its centre, so that the crop shows the face's
outline against its background: in the tight box, whose border is mostly skin, a face rendered at a third of its
size over the border's colour matches the crop as well as a well-placed one, and training learns exactly that.
Detection maps the mesh back through the detected box grown alike (the factor is in the weights' metadata)."""

VARIETY_OPTIONS = ("closeups", "backgrounds", "distractors", "attire", "details", "occluders", "degrade")
"""The options that widen the synthetic faces' distribution (:mod:`rfcore.data.variety`), in the order they act."""


def variety_names(names) -> tuple[str, ...]:
    """The options of :data:`VARIETY_OPTIONS` named in ``names`` (``"all"`` for every one), in their order.

    Raises:
        ValueError: For an unknown name, listing the known ones.
    """
    names = tuple(names)
    unknown = sorted(set(names) - {*VARIETY_OPTIONS, "all"})
    if unknown:
        raise ValueError(f"unknown synthetic variety {unknown[0]!r}; choose from {', '.join(VARIETY_OPTIONS)} or all")
    return tuple(name for name in VARIETY_OPTIONS if "all" in names or name in names)
