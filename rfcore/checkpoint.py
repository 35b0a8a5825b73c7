"""Training checkpoints on disk: safetensors and JSON, written atomically, never pickled.

A checkpoint is a folder ``<out>/checkpoints/step-<step>/`` holding

* one safetensors file per trained module, by name: ``weights.safetensors``
  (the network, loadable with :func:`rfcore.weights.load_weights`) and, when
  the mesh branch is trained, ``mesh_decoder.safetensors``;
* ``optimizer.safetensors``: the SGD momentum buffers, ``momentum/<module>/<parameter>``,
  and the torch random state, ``rng/torch`` (``rng/cuda`` on a GPU);
* ``state.json``: the step, the epoch and whatever else the trainer records.

The folder is written under a hidden temporary name beside its final one
and renamed when complete, so a crash leaves either the whole checkpoint or
none; a folder counts as a checkpoint only if it has ``state.json``.
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
from safetensors.torch import load_file, save_file
from torch import nn

from rfcore.weights import load_weights, save_weights

CHECKPOINT_FORMAT = "rfcore-train-checkpoint/1"
"""The ``format`` entry of ``state.json``."""


def checkpoint_dirs(out) -> list[Path]:
    """Complete checkpoints in ``out/checkpoints``, oldest first."""
    root = Path(out) / "checkpoints"
    found = [p for p in root.glob("step-*") if (p / "state.json").is_file()] if root.is_dir() else []
    return sorted(found, key=lambda p: int(p.name.removeprefix("step-")))


def save_checkpoint(
    out, modules: Mapping[str, nn.Module], optimizer: torch.optim.Optimizer, state: dict, keep: int
) -> Path:
    """Write a checkpoint folder atomically, then delete all but the newest ``keep``.

    Args:
        out: Output folder; the checkpoint goes to ``out/checkpoints/step-<step>``.
        modules: Trained modules by file name, e.g. ``{"weights": model}``.
        optimizer: The SGD optimizer over their parameters.
        state: JSON-ready record with at least ``step``; ``format`` is added.
        keep: Checkpoints to keep.

    Returns:
        The checkpoint folder.
    """
    root = Path(out) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{state['step']:08d}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{final.name}."))
    try:
        os.chmod(tmp, 0o755)
        for name, module in modules.items():
            save_weights(module.state_dict(), tmp / f"{name}.safetensors", {"step": str(state["step"])})
        save_file(optimizer_tensors(modules, optimizer), tmp / "optimizer.safetensors")
        os.chmod(tmp / "optimizer.safetensors", 0o644)
        (tmp / "state.json").write_text(json.dumps({"format": CHECKPOINT_FORMAT, **state}, indent=2) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
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
    state = json.loads((folder / "state.json").read_text())
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{folder / 'state.json'}: not an rfcore training checkpoint ({state.get('format')!r})")
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
