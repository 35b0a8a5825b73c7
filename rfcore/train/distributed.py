"""One training run as several processes (``torchrun``): ranks, the data each rank sees, batch-norm statistics.

Without ``torchrun`` a run is one rank of one. Every rank draws the same
permutation of the images for an epoch from ``default_rng([seed, epoch])``
and takes every ``world_size``-th of it (:func:`epoch_indices`), so the
order, like everything else a step depends on, is a function of
``(seed, epoch)`` and a resumed run continues exactly.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


class Ranks(NamedTuple):
    """Where this process stands in a (possibly one-process) run.

    Attributes:
        rank: Global rank, 0 for the process that writes files.
        world_size: Number of processes.
        device: This process's device.
    """

    rank: int
    world_size: int
    device: torch.device


def setup_ranks(device: str, processes: int | None = None) -> Ranks:
    """Join the process group that ``torchrun`` (or ``rfcore train --processes``) describes in the environment, if any.

    Args:
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``; a GPU rank uses ``cuda:LOCAL_RANK``.
        processes: The ranks the run asks for; ``None`` takes what was started.

    Raises:
        ValueError: If ``processes`` is not the number of processes started, before joining any group.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if processes is not None and processes != world_size:
        raise ValueError(f"the run asks for --processes {processes} but {world_size} were started: run it alone "
                         f"(it starts its processes itself) or under torchrun --nproc_per_node {processes}")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    where = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if world_size == 1:
        return Ranks(0, 1, where)
    if use_cuda:
        torch.cuda.set_device(where)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return Ranks(dist.get_rank(), world_size, where)


def replicate(model: nn.Module, mesh: bool) -> DistributedDataParallel:
    """Wrap ``model`` as this rank's DistributedDataParallel replica.

    The mesh decoder's sparse buffers (its Laplacians and up-sampling matrices) are built from the mesh hierarchy,
    the same on every rank, and cannot be broadcast by gloo or NCCL, so the wrapper leaves them out of its
    synchronisation.

    Args:
        model: The training model, on this rank's device.
        mesh: The mesh branch is trained: a batch without positives leaves the mesh head and decoder unused.
    """
    constants = [name for name, buffer in model.named_buffers() if buffer.is_sparse]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, constants)
    # the depthwise convolutions' gradients come in another memory order than DDP's buckets: a copy, no error
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return DistributedDataParallel(model, find_unused_parameters=mesh)


def average_batchnorm_stats(model: nn.Module, world_size: int) -> None:
    """Average the running means and variances of every batch norm over the ranks (in place)."""
    if world_size == 1:
        return
    stats = [buffer for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)
             for buffer in (module.running_mean, module.running_var) if buffer is not None]
    flat = torch.cat([s.reshape(-1) for s in stats])
    dist.all_reduce(flat)
    flat /= world_size
    for s, part in zip(stats, flat.split([s.numel() for s in stats])):
        s.copy_(part.view_as(s))


def epoch_indices(num_samples: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """The images one rank visits in one epoch, in order.

    The epoch's order is a permutation drawn from
    ``numpy.random.default_rng([seed, epoch])``, padded by wrapping around
    to a multiple of ``world_size``; rank ``r`` takes every
    ``world_size``-th image starting at ``r``, so all ranks get the same
    number of images and together see every image.

    Args:
        num_samples: Images in the dataset (``N``).
        seed: Training seed.
        epoch: Epoch number, from 0.
        rank: This process's rank.
        world_size: Number of ranks.

    Returns:
        ``ceil(N / world_size)`` dataset indices.
    """
    order = np.random.default_rng([seed, epoch]).permutation(num_samples)
    padded = math.ceil(num_samples / world_size) * world_size
    order = np.resize(order, padded)  # repeats the start of the order to fill the padding
    return order[rank::world_size].tolist()
