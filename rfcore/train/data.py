"""The images of a run: the training set of a :class:`~rfcore.train.config.TrainConfig` and each epoch's batches.

:func:`build_dataset` opens WIDER FACE-style labels or renders synthetic faces
(kept in memory when they fit, :data:`KEEP_RENDERED_BYTES`);
:func:`epoch_batches` serves one rank's share of an epoch in the order drawn
from ``(seed, epoch)`` (:func:`~rfcore.train.distributed.epoch_indices`), so a
resumed run sees the same batches; :func:`torch_threads` runs rendering on
one thread.
"""

from __future__ import annotations

import contextlib

import torch
from torch.utils.data import Dataset

from rfcore.config import RetinaFaceConfig
from rfcore.data import TrainTransform, WiderFace, face_loader
from rfcore.data.variety import Variety
from rfcore.train.config import SYNTHETIC_IMAGES, TrainConfig
from rfcore.train.distributed import Ranks, epoch_indices

KEEP_RENDERED_BYTES = 4_000_000_000
"""Synthetic training images are rendered once and kept when they fit in this many bytes (500 images of
640 x 640 take 0.6 GB); larger sets are rendered again each epoch."""


def build_dataset(train_cfg: TrainConfig, cfg: RetinaFaceConfig) -> Dataset:
    """The training images of ``train_cfg.data``, augmented to squares of ``cfg.train_size``.

    Synthetic images are rendered once, before the first step, when they fit in
    :data:`KEEP_RENDERED_BYTES` (:meth:`~rfcore.data.synthetic.SyntheticFaces.keep_rendered`).

    Raises:
        FileNotFoundError: If the label file or images folder does not exist.
        ImportError: For ``"synthetic"`` when :mod:`rfcore.data.synthetic` is missing.
    """
    size = cfg.train_size
    transform = TrainTransform(size=size)
    if train_cfg.data != "synthetic":
        return WiderFace(train_cfg.data, transform, images=train_cfg.images, seed=train_cfg.seed)
    try:
        from rfcore.data.synthetic import SyntheticFaces
    except ImportError as err:
        raise ImportError(
            f"--data synthetic needs rfcore.data.synthetic.SyntheticFaces, which is missing: {err}"
        ) from None
    dataset = SyntheticFaces(train_cfg.num_images or SYNTHETIC_IMAGES, size, seed=train_cfg.seed, transform=transform,
                             variety=Variety.from_names(train_cfg.variety))
    if len(dataset) * size * size * 3 <= KEEP_RENDERED_BYTES:
        with torch_threads(1):
            dataset.keep_rendered(progress=not train_cfg.quiet)
    return dataset


@contextlib.contextmanager
def torch_threads(count: int):
    """Run the block with ``count`` torch threads, then restore the number.

    Rendering a synthetic face is many small tensor operations: with two threads on two busy cores they wait
    for each other, and rendering is many times slower than on one.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def epoch_batches(dataset: Dataset, num_samples: int, train_cfg: TrainConfig, cfg: RetinaFaceConfig, epoch: int,
                  skip: int, ranks: Ranks):
    """The batches of one rank in one epoch, after skipping the first ``skip`` (already trained on).

    Args:
        dataset: Training images.
        num_samples: Use its first this many.
        train_cfg: Batch size, seed and workers.
        cfg: Preprocessing of the images.
        epoch: Epoch number, from 0.
        skip: Batches of this epoch already trained on.
        ranks: This process's rank and the number of ranks.

    Returns:
        A :class:`~torch.utils.data.DataLoader` of :class:`~rfcore.data.TrainBatch` es.
    """
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    order = epoch_indices(num_samples, train_cfg.seed, epoch, ranks.rank, ranks.world_size)
    # seed= gives the loader its own generator, so it never draws from torch's global one
    return face_loader(dataset, cfg, train_cfg.batch_size, sampler=order[skip * train_cfg.batch_size :],
                       num_workers=train_cfg.workers, seed=train_cfg.seed, pin_memory=ranks.device.type == "cuda")
