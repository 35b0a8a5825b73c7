"""Batching samples with different numbers of faces, and the DataLoader that does it.

A batch is ready for the network: its images go through
:func:`rfcore.image.preprocess` (BGR, minus ``cfg.pixel_mean_bgr``, no
scaling), the one function that turns pixels into network input for
training and inference alike.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from rfcore.config import RetinaFaceConfig
from rfcore.data.sample import FaceSample
from rfcore.image import preprocess
from rfcore.matching import FaceBatch


class TrainBatch(NamedTuple):
    """A batch of same-sized images and their faces.

    Attributes:
        images: ``(B, 3, H, W)`` float32 network input (see :func:`rfcore.image.preprocess`).
        faces: The faces of all images, flattened (:class:`rfcore.matching.FaceBatch`),
            ready for :class:`rfcore.matching.TargetAssigner`.
        paths: Image file of each sample.
    """

    images: torch.Tensor
    faces: FaceBatch
    paths: list[str]


def collate_faces(samples: Sequence[FaceSample], mean_bgr: Sequence[float]) -> TrainBatch:
    """Preprocess images of one size and flatten their faces; an image may have none.

    Args:
        samples: The batch's samples.
        mean_bgr: Mean subtracted from BGR pixels (``cfg.pixel_mean_bgr``).

    Raises:
        ValueError: If the images differ in size (resize them first, e.g. with
            :class:`rfcore.data.augment.TrainTransform`).
    """
    sizes = {sample.image.shape for sample in samples}
    if len(sizes) != 1:
        raise ValueError(f"cannot batch images of different shapes {sorted(sizes)}; resize them to one size first")
    images = preprocess([sample.image for sample in samples], mean_bgr)  # (B, 3, H, W)
    faces = FaceBatch.from_list(
        [torch.from_numpy(sample.boxes) for sample in samples],
        [torch.from_numpy(sample.landmarks) for sample in samples],
    )
    return TrainBatch(images=images, faces=faces, paths=[sample.path for sample in samples])


def face_loader(
    dataset: Dataset,
    cfg: RetinaFaceConfig,
    batch_size: int,
    *,
    shuffle: bool = True,
    num_workers: int = 0,
    seed: int | None = None,
    sampler: Sampler | None = None,
    pin_memory: bool = False,
    drop_last: bool = False,
) -> DataLoader:
    """A :class:`~torch.utils.data.DataLoader` that yields :class:`TrainBatch` es.

    Args:
        dataset: Yields :class:`~rfcore.data.sample.FaceSample` s of one size.
        cfg: Preset whose ``pixel_mean_bgr`` the images are preprocessed with.
        batch_size: Images per batch.
        shuffle: Visit images in random order (ignored when ``sampler`` is given).
        num_workers: Loader processes; 0 loads in the calling process.
        seed: Seed of the shuffling order, ``None`` for a random one.
        sampler: Explicit sampler, e.g. a ``DistributedSampler`` for DDP.
        pin_memory: Page-lock batches for faster copies to the GPU.
        drop_last: Drop a last, smaller batch.
    """
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=functools.partial(collate_faces, mean_bgr=cfg.pixel_mean_bgr),
        generator=generator,
        pin_memory=pin_memory,
        drop_last=drop_last,
    )
