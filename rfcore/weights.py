"""Weights on disk: safetensors files, the default weights, and loading them into a network.

rfcore stores weights as `safetensors <https://huggingface.co/docs/safetensors>`_:
plain tensors plus a string-to-string metadata header, with no code inside.
Keys are those of ``RetinaFace.state_dict()``, which for the
``"mobilenet0.25"`` and ``"resnet50"`` presets are exactly the keys of the
public PyTorch checkpoints (biubug6/Pytorch_Retinaface); :mod:`rfcore.convert`
brings those checkpoints (and ONNX exports) in.

A network trained with the mesh branch also holds its mesh head
(``MeshHead.*``); :func:`load_detector_weights` is the one place that
decides what happens when a file and a network disagree about it, for
detection (:func:`load_model`, :func:`load_mesh_model`) and training alike.
Detection with the mesh also reads files beside the network's: the mesh
decoder (:data:`MESH_DECODER_FILE`) and, for weights without a mesh head,
a head trained for them (:data:`MESH_HEAD_FILE`); the shipped weights have
both. Their metadata say what they were made for (preset, detector
weights, decoder layout), and a file made for something else is refused
with both named.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save
from torch import nn

from rfcore.assets import ASSETS
from rfcore.config import PRESETS, RetinaFaceConfig, get_config
from rfcore.files import write_bytes
from rfcore.mesh import MeshDecoder, build_hierarchy
from rfcore.model import RetinaFace

StateDict = dict[str, torch.Tensor]

SHOWN_MISMATCHES = 5
"""How many offending keys of each kind an error message lists."""


# ---------------------------------------------------------------- safetensors


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


# ---------------------------------------------------------------- the default weights and loading a network


PRESET_KEY = "preset"
"""Metadata key of a weights file: the preset its network was built from (every file rfcore writes has it)."""

MESH_HEAD_PREFIX = "MeshHead."
"""Key prefix of the mesh head's tensors in a weights file (the name of the public checkpoints' convention)."""


@functools.cache
def preset_layout(preset: str) -> dict[str, tuple[int, ...]]:
    """``key -> shape`` of the network of ``preset`` without mesh head (built on the meta device: no memory)."""
    with torch.device("meta"):
        model = RetinaFace.from_config(get_config(preset))
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def presets_fitting(shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
    """The presets whose network has exactly these keys and shapes (a mesh head's tensors left out)."""
    network = {key: tuple(shape) for key, shape in shapes.items() if not key.startswith(MESH_HEAD_PREFIX)}
    return [name for name in PRESETS if preset_layout(name) == network]


def weights_preset(path, preset: str | None = None) -> str:
    """The preset of a weights file: its metadata's; for a file without, ``preset`` or the one its tensors fit.

    Args:
        path: The safetensors file.
        preset: The preset the caller names (``--preset``); needed only for a
            file without metadata whose tensors fit several presets or none.

    Raises:
        ValueError: In one sentence, if ``preset`` is not the file's (by its
            metadata or its tensors), or no preset can be told.
    """
    saved = read_metadata(path).get(PRESET_KEY)
    if saved in PRESETS:
        if preset is not None and preset != saved:
            raise ValueError(f"{path}: these weights are {saved} (file metadata), not {preset}: leave out the "
                             f"preset (--preset) to use the file's")
        return saved
    if preset is not None and preset not in PRESETS:
        get_config(preset)  # raises, naming the presets
    fits = presets_fitting(read_shapes(path))
    if preset is not None and (preset in fits or not fits):
        return preset  # nothing fits: loading lists the keys that do not
    if preset is not None:
        raise ValueError(f"{path}: these weights have no preset in their metadata and their tensors are those of "
                         f"{fits[0]}, not {preset}: pass --preset {fits[0]} (preset={fits[0]!r})")
    if len(fits) == 1:
        return fits[0]
    raise ValueError(f"{path}: these weights have no preset in their metadata and their tensors fit "
                     f"{'none of' if not fits else 'several of'} rfcore's presets ({', '.join(PRESETS)}): name one "
                     "with --preset (preset=...)")


def model_preset(model: nn.Module, preset: str | None = None) -> str:
    """``preset``, or the one preset whose network has ``model``'s keys and shapes.

    Raises:
        ValueError: If no single preset fits the model, asking for ``preset``.
    """
    if preset is not None:
        return get_config(preset).name
    fits = presets_fitting({key: tuple(value.shape) for key, value in model.state_dict().items()})
    if len(fits) != 1:
        raise ValueError(f"the model's tensors fit {'several' if fits else 'none'} of rfcore's presets "
                         f"({', '.join(PRESETS)}): name its preset with preset=...")
    return fits[0]


DEFAULT_WEIGHTS = ASSETS / "weights" / "retinaface_mobilenet0.25.safetensors"
"""Weights used when none are given: MobileNet-0.25 trained on WIDER FACE."""

MESH_DECODER_FILE = "mesh_decoder.safetensors"
"""The decoder file an ``rfcore train --mesh`` run writes beside ``weights.safetensors``."""

MESH_ENCODER_FILE = "mesh_encoder.safetensors"
"""The linear encoder ``rfcore mesh pretrain`` writes beside the decoder (:mod:`rfcore.train.mesh_decoder`)."""

MESH_HEAD_FILE = "mesh_head.safetensors"
"""A mesh head trained for the detector weights beside it (``rfcore mesh train-head``), ``MeshHead.`` stripped."""

DETECTOR_SHA_KEY = "detector_sha256"
"""Metadata key of a mesh head file: the sha256 of the detector weights it was trained on."""

CROP_MARGIN_KEY = "crop_margin"
"""Metadata key of a mesh head file: the factor its faces' boxes were grown by to cut ``I*``."""

DECODER_LAYOUT_KEY = "decoder"
"""Metadata key of a mesh file that names the :attr:`MeshDecoder.layout` it was made with."""


def resolve_weights(weights, option: str = "--weights") -> Path:
    """The weights file to load: ``weights`` or :data:`DEFAULT_WEIGHTS`; ``option`` is named in errors.

    Raises:
        IsADirectoryError: For a folder, naming the weights files in it.
        FileNotFoundError: Naming the missing file and how to pass another.
    """
    path = DEFAULT_WEIGHTS if weights is None else Path(weights)
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.safetensors"))
        inside = f"it holds {', '.join(found[:5])}" if found else "it holds no .safetensors file"
        raise IsADirectoryError(f"weights {path} is a folder, not a file ({inside}): pass the file itself, "
                                f"e.g. {option} {path / (found[0] if found else 'weights.safetensors')}")
    if not path.is_file():
        what = "default weights file" if weights is None else "weights file"
        raise FileNotFoundError(
            f"{what} {path} not found; pass another with weights=... (command line: --weights PATH). "
            "The default ships inside the package, in rfcore/assets/weights/ (reinstall rfcore if it is missing)."
        )
    return path


def weights_files(weights, mesh: bool = False) -> list[Path]:
    """Every file loading ``weights`` may read, for :func:`rfcore.files.check_not_inputs`.

    Args:
        weights: Path of the network's file, or ``None`` for :data:`DEFAULT_WEIGHTS`.
        mesh: Also the mesh files beside it (:data:`MESH_HEAD_FILE`, :data:`MESH_DECODER_FILE`).

    Raises:
        FileNotFoundError, IsADirectoryError: As :func:`resolve_weights`.
    """
    path = resolve_weights(weights)
    return [path, path.with_name(MESH_HEAD_FILE), path.with_name(MESH_DECODER_FILE)] if mesh else [path]


def load_detector_weights(model: RetinaFace, path, preset: str | None = None) -> None:
    """Load a safetensors file into a RetinaFace, with or without a mesh head on either side.

    A mesh head (``MeshHead.*``) in the file that ``model`` lacks is left out
    (detection without the mesh does not need it); a mesh head in ``model``
    that the file lacks keeps its initial weights (training the mesh branch
    on top of a detector).

    Args:
        model: The network to fill.
        path: The safetensors file.
        preset: The preset ``model`` was built from, checked against the file's metadata.

    Raises:
        ValueError: If the file is of another preset, any other key or shape
            differs, or a tensor is not finite (:func:`check_weights`).
    """
    state = load_weights(None, path)
    if model.mesh_head is None:
        state = {key: value for key, value in state.items() if not key.startswith(MESH_HEAD_PREFIX)}
    elif not any(key.startswith(MESH_HEAD_PREFIX) for key in state):
        state = {**model.mesh_head.state_dict(prefix=MESH_HEAD_PREFIX), **state}
    check_weights(model, state, path, preset)
    model.load_state_dict(state)


def load_model(weights=None, cfg: RetinaFaceConfig | None = None) -> RetinaFace:
    """A RetinaFace without mesh head, weights from a safetensors file, in eval mode.

    Args:
        weights: Path of the file, or ``None`` for :data:`DEFAULT_WEIGHTS`.
        cfg: The preset of the weights; ``None`` for the file's (:func:`weights_preset`).

    Raises:
        ValueError: If ``cfg`` is not the file's preset, or the tensors do not
            fit the preset's network or are not finite.
    """
    path = resolve_weights(weights)
    cfg = get_config(weights_preset(path, None if cfg is None else cfg.name))
    model = RetinaFace.from_config(cfg)
    load_detector_weights(model, path, cfg.name)
    return model.eval()


class MeshModel(NamedTuple):
    """What detection with the mesh needs (:func:`load_mesh_model`).

    Attributes:
        model: The RetinaFace with its mesh head, in eval mode.
        decoder: The mesh decoder, in eval mode.
        crop_margin: The head describes each face in its box grown by this
            factor about its centre (metadata :data:`CROP_MARGIN_KEY` of the file that holds the head; 1 if absent).
    """

    model: RetinaFace
    decoder: MeshDecoder
    crop_margin: float


def load_mesh_model(weights=None, cfg: RetinaFaceConfig | None = None) -> MeshModel:
    """A RetinaFace with its mesh head, and the mesh decoder.

    The network comes from ``weights``; its mesh head from the same file if
    it holds ``MeshHead.*`` (an ``rfcore train --mesh`` run), otherwise from
    :data:`MESH_HEAD_FILE` beside it (``rfcore mesh train-head``; the
    shipped default weights have one). The decoder is
    :data:`MESH_DECODER_FILE` beside ``weights``.

    Args:
        weights: Path of the network's file, or ``None`` for :data:`DEFAULT_WEIGHTS`.
        cfg: The preset of the weights; ``None`` for the file's (:func:`weights_preset`).

    Returns:
        The :class:`MeshModel`.

    Raises:
        ValueError: If there is no mesh head, or a mesh file does not fit the
            detector's preset, the detector's weights or the decoder (naming both).
        FileNotFoundError: If the decoder file is missing.
    """
    path = resolve_weights(weights)
    head_inside = any(key.startswith(MESH_HEAD_PREFIX) for key in read_keys(path))
    if not head_inside and not path.with_name(MESH_HEAD_FILE).is_file():
        raise ValueError(
            f"{path} has no mesh head (no MeshHead.* tensors) and there is no {MESH_HEAD_FILE} beside it; "
            f"mesh=True (--mesh) needs the weights.safetensors and {MESH_DECODER_FILE} of an `rfcore train --mesh` "
            f"run, or a head trained for these weights with `rfcore mesh train-head --weights {path}`"
        )
    cfg = get_config(weights_preset(path, None if cfg is None else cfg.name))
    model = RetinaFace.from_config(cfg, mesh_head=True)
    load_detector_weights(model, path, cfg.name)
    decoder_path = path.with_name(MESH_DECODER_FILE)
    if not decoder_path.is_file():
        raise FileNotFoundError(f"mesh decoder {decoder_path} not found; `rfcore train --mesh` writes it beside "
                                f"{path}, `rfcore mesh pretrain --out {path.parent}` makes one")
    decoder = load_mesh_decoder(decoder_path)
    if head_inside:
        crop_margin = float(read_metadata(path).get(CROP_MARGIN_KEY, "1"))
    else:
        crop_margin = load_mesh_head(model, path, decoder, cfg.name)
    return MeshModel(model.eval(), decoder, crop_margin)


def load_mesh_head(model: RetinaFace, weights: Path, decoder: MeshDecoder, preset: str) -> float:
    """Fill ``model.mesh_head`` from :data:`MESH_HEAD_FILE` beside ``weights``, after checking its metadata.

    ``rfcore mesh train-head`` records the preset, the sha256 of the
    detector weights it was trained on, the decoder's layout and the crop margin.

    Returns:
        The head's crop margin (metadata :data:`CROP_MARGIN_KEY`, 1 if absent).

    Raises:
        ValueError: If the file was made for another preset, other detector
            weights or another decoder layout (naming both), or does not fit the head.
    """
    head_path = weights.with_name(MESH_HEAD_FILE)
    saved = read_metadata(head_path)
    mismatches = [
        f"{what} {saved[key]!r}, not {ours!r}"
        for key, what, ours in (
            ("preset", "the preset", preset),
            (DETECTOR_SHA_KEY, "the detector weights with sha256", file_sha256(weights)),
            (DECODER_LAYOUT_KEY, "a decoder of layout", decoder.layout),
        )
        if key in saved and saved[key] != ours
    ]
    if mismatches:
        raise ValueError(f"{head_path} does not fit {weights} and {weights.with_name(MESH_DECODER_FILE)}: the mesh "
                         f"head was trained for {'; '.join(mismatches)}; train one for them with `rfcore mesh "
                         f"train-head --weights {weights}`")
    state = load_weights(None, head_path)
    check_state_dict(model.mesh_head, state, head_path)
    model.mesh_head.load_state_dict(state)
    return float(saved.get(CROP_MARGIN_KEY, "1"))


def file_sha256(path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_mesh_decoder(path) -> MeshDecoder:
    """A :class:`MeshDecoder` over the default hierarchy with the weights of ``path``, in eval mode.

    A file that records its decoder's :attr:`~MeshDecoder.layout` (metadata
    ``"decoder"``, written by ``rfcore mesh pretrain``) is checked against
    the decoder built here before its tensors are.

    Raises:
        ValueError: If the file's layout or tensors do not fit the decoder, naming both layouts.
    """
    decoder = MeshDecoder(build_hierarchy())
    saved = read_metadata(path).get(DECODER_LAYOUT_KEY)
    if saved is not None and saved != decoder.layout:
        raise ValueError(f"{path}: this mesh decoder was saved for a mesh hierarchy and architecture of "
                         f"'{saved}', but rfcore builds '{decoder.layout}'; use a decoder saved by this version "
                         "of rfcore (rfcore mesh pretrain)")
    load_weights(decoder, path)
    return decoder.eval()
