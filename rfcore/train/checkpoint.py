"""Training checkpoints on disk: safetensors and JSON, written atomically, never pickled.

A checkpoint is a folder ``<out>/checkpoints/step-<step>/`` holding

* one safetensors file per trained module, by name: ``weights.safetensors``
  (the network, loadable with :func:`rfcore.weights_io.load_weights`) and, when
  the mesh branch is trained, ``mesh_decoder.safetensors``;
* ``optimizer.safetensors``: the SGD momentum buffers, ``momentum/<module>/<parameter>``,
  and the torch random state, ``rng/torch`` (``rng/cuda`` on a GPU);
* ``state.json``: the step, the epoch and whatever else the trainer records.

The folder is written under a hidden temporary name beside its final one
(``.step-<step>.XXXX``), every file fsync'd, the folder renamed when complete
and the parent folder fsync'd after the rename, so a crash or a power loss
leaves either the whole checkpoint or none; a folder counts as a checkpoint
only if it has ``state.json``. Temporary folders a kill left behind are
removed by :func:`remove_stale` when a run starts or resumes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from rfcore.files import fsync_dir, write_bytes, write_text
from rfcore.weights_io import canonical_header, load_weights, save_weights

CHECKPOINT_FORMAT = "rfcore-train-checkpoint/1"
"""The ``format`` entry of ``state.json``."""


def checkpoint_dirs(out) -> list[Path]:
    """Complete checkpoints in ``out/checkpoints``, oldest first."""
    root = Path(out) / "checkpoints"
    found = [p for p in root.glob("step-*") if (p / "state.json").is_file()] if root.is_dir() else []
    return sorted(found, key=lambda p: int(p.name.removeprefix("step-")))


def remove_stale(out) -> list[Path]:
    """Delete the temporary ``.step-*`` folders an interrupted :func:`save_checkpoint` left in ``out/checkpoints``.

    Returns:
        The folders removed.
    """
    root = Path(out) / "checkpoints"
    stale = sorted(root.glob(".step-*")) if root.is_dir() else []
    for folder in stale:
        shutil.rmtree(folder, ignore_errors=True)
    return stale


def read_state(folder) -> dict:
    """The ``state.json`` record of a checkpoint folder.

    Raises:
        ValueError: If the file is not JSON or not an rfcore checkpoint's,
            naming it and saying how to fall back to the previous checkpoint.
    """
    path = Path(folder) / "state.json"
    try:
        state = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is corrupt ({err}): delete the folder {folder} to resume from the checkpoint "
                         "before it") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path}: not an rfcore training checkpoint ({found!r})")
    return state


def save_checkpoint(
    out, modules: Mapping[str, nn.Module], optimizer: torch.optim.Optimizer, state: dict, keep: int,
    metadata: Mapping[str, Mapping[str, str]],
) -> Path:
    """Write a checkpoint folder atomically, then delete all but the newest ``keep``.

    Args:
        out: Output folder; the checkpoint goes to ``out/checkpoints/step-<step>``.
        modules: Trained modules by file name, e.g. ``{"weights": model}``.
        optimizer: The SGD optimizer over their parameters.
        state: JSON-ready record with at least ``step`` and ``config`` (whose preset the weights files
            record); ``format`` is added.
        keep: Checkpoints to keep.
        metadata: What each weights file records, by file name
            (:meth:`rfcore.train.model.TrainingModel.file_metadata`); ``step`` is added.

    Returns:
        The checkpoint folder.

    Raises:
        rfcore.files.DiskFull: If the device fills up; the temporary folder
            is removed and the older checkpoints are kept.
    """
    root = Path(out) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{state['step']:08d}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{final.name}."))
    try:
        os.chmod(tmp, 0o755)
        for name, module in modules.items():
            save_weights(module.state_dict(), tmp / f"{name}.safetensors", {**metadata[name], "step": str(state["step"])})
        write_bytes(tmp / "optimizer.safetensors", canonical_header(save(optimizer_tensors(modules, optimizer))))
        write_text(tmp / "state.json", json.dumps({"format": CHECKPOINT_FORMAT, **state}, indent=2) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        fsync_dir(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for old in checkpoint_dirs(out)[:-keep]:
        shutil.rmtree(old)
    return final


def optimizer_tensors(modules: Mapping[str, nn.Module], optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The momentum buffers by ``momentum/<module>/<parameter>`` and the random state(s)."""
    tensors = {"rng/torch": torch.get_rng_state()}
    for module_name, module in modules.items():
        for name, param in module.named_parameters():
            buffer = optimizer.state.get(param, {}).get("momentum_buffer")
            if buffer is not None:
                tensors[f"momentum/{module_name}/{name}"] = buffer.detach().cpu().contiguous()
            if param.is_cuda and "rng/cuda" not in tensors:
                tensors["rng/cuda"] = torch.cuda.get_rng_state(param.device)
    return tensors


def load_checkpoint(folder, modules: Mapping[str, nn.Module], optimizer: torch.optim.Optimizer) -> dict:
    """Restore the modules, the momentum buffers and the random state from a checkpoint folder.

    Args:
        folder: The checkpoint folder.
        modules: Modules by file name, as given to :func:`save_checkpoint`.
        optimizer: The SGD optimizer over their parameters.

    Returns:
        Its ``state.json`` record.

    Raises:
        ValueError: If a file is not what it should be or does not fit the
            modules, naming the file.
    """
    folder = Path(folder)
    state = read_state(folder)
    for name, module in modules.items():
        load_weights(module, folder / f"{name}.safetensors")
    path = folder / "optimizer.safetensors"
    try:
        tensors = load_file(path)
    except SafetensorError as err:
        raise ValueError(f"{path}: not a safetensors file ({err})") from None
    params = {f"momentum/{m}/{n}": p for m, module in modules.items() for n, p in module.named_parameters()}
    unknown = [key for key in tensors if key.startswith("momentum/") and key not in params]
    if unknown:
        raise ValueError(f"{path}: momentum buffers of parameters the modules lack: {unknown[:5]}")
    for key, param in params.items():
        if key in tensors:
            optimizer.state[param]["momentum_buffer"] = tensors[key].to(param.device)
    torch.set_rng_state(tensors["rng/torch"])
    if "rng/cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng/cuda"])
    return state
