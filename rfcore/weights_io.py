"""Safetensors files of weights: writing them atomically and reproducibly, reading them, checking them against a model.

:func:`save_weights` writes a state dict with string metadata (through
:func:`rfcore.files.write_bytes`, the header in one order: :func:`canonical_header`);
:func:`read_metadata`, :func:`read_keys` and :func:`read_shapes` read a file's
header without its tensors; :func:`load_weights` reads the tensors and
:func:`check_state_dict` / :func:`check_weights` refuse, in one sentence each,
tensors that do not fit a model. Which file and which network a weights file
belongs to is :mod:`rfcore.weights`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save
from torch import nn

from rfcore.config import PRESETS
from rfcore.files import write_bytes

StateDict = dict[str, torch.Tensor]

PRESET_KEY = "preset"
"""Metadata key of a weights file: the preset its network was built from (every file rfcore writes has it)."""

SHOWN_MISMATCHES = 5
"""How many offending keys of each kind an error message lists."""


def save_weights(
    state_dict: Mapping[str, torch.Tensor], path: str | Path, metadata: Mapping[str, str] | None = None
) -> None:
    """Write a state dict to a safetensors file, atomically.

    The file is written next to ``path`` under a temporary name and then
    renamed (:func:`rfcore.files.write_bytes`), so a crash or a full disk
    never leaves a half-written weights file behind.

    Args:
        state_dict: Tensors by key (e.g. ``model.state_dict()``).
        path: Destination ``.safetensors`` file; parent folders are created.
        metadata: String key/value pairs stored in the header (provenance,
            preset, licence).

    Raises:
        ValueError: If a metadata key or value is not a string.
        rfcore.files.DiskFull: If the device fills up; ``path`` is untouched.
    """
    metadata = dict(metadata or {})
    bad = {k: v for k, v in metadata.items() if not (isinstance(k, str) and isinstance(v, str))}
    if bad:
        raise ValueError(f"safetensors metadata must map str to str, got {bad!r}")
    tensors = {key: value.detach().cpu().contiguous() for key, value in state_dict.items()}
    write_bytes(path, canonical_header(save(tensors, metadata=metadata)))


def canonical_header(data: bytes) -> bytes:
    """A safetensors file with its header in one order: metadata sorted by key, then tensors by offset.

    The ``safetensors`` writer puts the metadata in hash-map order, which changes from one process to the next,
    so identical content gave files that differ byte for byte (and sha256s that cannot be reproduced).
    """
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    metadata = header.pop("__metadata__", None)
    ordered = {} if metadata is None else {"__metadata__": dict(sorted(metadata.items()))}
    ordered |= dict(sorted(header.items(), key=lambda item: (item[1]["data_offsets"], item[0])))
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to a multiple of 8 bytes
    return len(text).to_bytes(8, "little") + text + data[8 + length :]


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata header of a safetensors file (without reading the tensors).

    Raises:
        ValueError: If the file is not a safetensors file.
    """
    return _read_header(path)[0]


def read_keys(path: str | Path) -> list[str]:
    """The tensor names of a safetensors file (without reading the tensors).

    Raises:
        ValueError: If the file is not a safetensors file.
    """
    return _read_header(path)[1]


def read_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """``key -> shape`` of the tensors of a safetensors file (without reading them).

    Raises:
        ValueError: If the file is not a safetensors file.
    """
    try:
        with safe_open(path, framework="pt") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    except SafetensorError as err:
        raise ValueError(f"{path}: not a safetensors file ({err})") from None


def _read_header(path) -> tuple[dict[str, str], list[str]]:
    try:
        with safe_open(path, framework="pt") as f:
            return dict(f.metadata() or {}), list(f.keys())
    except SafetensorError as err:
        raise ValueError(f"{path}: not a safetensors file ({err})") from None


def load_weights(model: nn.Module | None, path: str | Path) -> StateDict:
    """Read a safetensors file and, if a model is given, load it into the model.

    Args:
        model: Module whose keys and shapes must match the file exactly, or
            ``None`` to only read the file.
        path: ``.safetensors`` file written by :func:`save_weights`.

    Returns:
        The tensors of the file by key.

    Raises:
        ValueError: If the file is not a safetensors file, or its keys or
            shapes do not match ``model``.
    """
    try:
        state = load_file(path)
    except SafetensorError as err:
        raise ValueError(f"{path}: not a safetensors file ({err})") from None
    if model is not None:
        check_state_dict(model, state, path)
        model.load_state_dict(state)
    return state


# ---------------------------------------------------------------- checking


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str | Path) -> None:
    """Check that ``state`` has exactly the keys and shapes of ``model.state_dict()``, floating where it is.

    Args:
        model: The module to load into.
        state: Tensors by key.
        source: File the tensors came from, named in the error.

    Raises:
        ValueError: Naming ``source`` and listing the first few missing,
            unexpected and wrongly shaped keys, and those whose dtype is not
            floating where the model's is (int8 or bool weights would load
            silently, rounded to a network that finds nothing).
    """
    reference = model.state_dict()
    expected = {key: tuple(value.shape) for key, value in reference.items()}
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong_shape = [
        f"{key} {tuple(state[key].shape)} (model: {shape})"
        for key, shape in expected.items()
        if key in state and tuple(state[key].shape) != shape
    ]
    wrong_dtype = [
        f"{key} {state[key].dtype}"
        for key, value in reference.items()
        if key in state and value.is_floating_point() and not state[key].is_floating_point()
    ]
    problems = [
        _first_few(kind, keys)
        for kind, keys in (("missing", missing), ("unexpected", unexpected), ("with wrong shape", wrong_shape),
                           ("not floating point", wrong_dtype))
        if keys
    ]
    if problems:
        raise ValueError(f"{source}: weights do not match the model; " + "; ".join(problems))


def check_weights(model: nn.Module, state: Mapping[str, torch.Tensor], path, preset: str | None = None) -> None:
    """Check that a weights file's tensors fit ``model`` of ``preset``, and are finite.

    Args:
        model: The module to load into.
        state: The file's tensors by key.
        path: The file, named in errors.
        preset: The preset the caller asked for (``--preset``); ``None``
            skips the comparison with the file's metadata.

    Raises:
        ValueError: Saying which preset the file's metadata names when it is
            not ``preset``, listing mismatched keys otherwise
            (:func:`check_state_dict`), or naming the tensors that hold NaN or
            infinite values.
    """
    saved = read_metadata(path).get(PRESET_KEY)
    if preset is not None and saved is not None and saved != preset and saved in PRESETS:
        raise ValueError(f"{path}: these weights are {saved} (file metadata), you asked for {preset}: "
                         f"pass preset={saved!r} (command line: --preset {saved})")
    check_state_dict(model, state, path)
    broken = [key for key, value in state.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if broken:
        raise ValueError(f"{path}: {len(broken)} of {len(state)} tensors hold NaN or infinite values (e.g. "
                         f"{broken[0]}), so nothing would be detected: these weights are broken, perhaps saved by "
                         "a diverged training run; use an earlier checkpoint")


def _first_few(kind: str, keys: list[str]) -> str:
    """``"3 missing: a, b, c"``, listing at most :data:`SHOWN_MISMATCHES` keys."""
    more = ", ..." if len(keys) > SHOWN_MISMATCHES else ""
    return f"{len(keys)} {kind}: " + ", ".join(keys[:SHOWN_MISMATCHES]) + more


def in_model_order(model: nn.Module, state: Mapping[str, torch.Tensor]) -> StateDict:
    """``state`` re-ordered like ``model.state_dict()`` and cast to its dtypes."""
    return {key: state[key].to(ref.dtype).contiguous() for key, ref in model.state_dict().items()}


def file_sha256(path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
