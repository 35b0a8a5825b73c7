"""rfcore's networks from weights files: which file, which preset, and loading it with or without the mesh.

:func:`resolve_weights` finds the file to load (the shipped :data:`DEFAULT_WEIGHTS`
and the mesh files beside it, or a user's path); :func:`weights_preset` reads the
preset a file records (or the one its tensors fit); :func:`load_model` and
:func:`load_mesh_model` build the network and fill it, :func:`load_detector_weights`
deciding what happens when a file and a network disagree about the mesh head.
Detection with the mesh also reads the decoder (:data:`MESH_DECODER_FILE`) and,
for weights without a head, one trained for them (:data:`MESH_HEAD_FILE`); their
metadata say what they were made for, and a file made for something else is
refused with both named. Reading and checking the files is :mod:`rfcore.weights_io`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from rfcore.assets import ASSETS
from rfcore.config import PRESETS, RetinaFaceConfig, get_config
from rfcore.mesh import MeshDecoder, build_hierarchy
from rfcore.model import RetinaFace
from rfcore.model.retinaface import MESH_PARAMS
from rfcore.weights_io import (
    PRESET_KEY,
    check_state_dict,
    check_weights,
    file_sha256,
    load_weights,
    read_keys,
    read_metadata,
    read_shapes,
)

MESH_HEAD_PREFIX = "MeshHead."
"""Key prefix of the mesh head's tensors in a weights file (the name of the public checkpoints' convention)."""

MESH_HEAD_KEY = "mesh_head"
"""Metadata key of a weights file: its mesh head's layout (:data:`MESH_HEAD_LAYOUT`) or :data:`NO_MESH_HEAD`."""

MESH_HEAD_LAYOUT = f"{MESH_PARAMS} values per anchor"
"""The layout of the mesh head rfcore builds (:data:`rfcore.model.retinaface.MESH_PARAMS` outputs per anchor)."""

NO_MESH_HEAD = "none"
"""The value of :data:`MESH_HEAD_KEY` for weights without a mesh head."""


def mesh_head_layout(keys: Iterable[str]) -> str:
    """The mesh head of a network with these tensor names: :data:`MESH_HEAD_LAYOUT` if any is ``MeshHead.*``."""
    return MESH_HEAD_LAYOUT if any(key.startswith(MESH_HEAD_PREFIX) for key in keys) else NO_MESH_HEAD


def weights_mesh_head(path) -> str:
    """The mesh head a weights file holds: its metadata's (:data:`MESH_HEAD_KEY`), for a file without, its tensors'.

    Raises:
        ValueError: If the file records a mesh head of another layout than rfcore's, naming both.
    """
    saved = read_metadata(path).get(MESH_HEAD_KEY)
    if saved is None:
        return mesh_head_layout(read_keys(path))
    if saved not in (MESH_HEAD_LAYOUT, NO_MESH_HEAD):
        raise ValueError(f"{path}: its mesh head is '{saved}' (file metadata), but rfcore builds "
                         f"'{MESH_HEAD_LAYOUT}'; load it without the mesh, or train a head for these weights")
    return saved


def weights_metadata(module: nn.Module, preset: str) -> dict[str, str]:
    """What a weights file of ``module`` records: the preset, and a network's mesh head or a decoder's layout."""
    if isinstance(module, MeshDecoder):
        return {PRESET_KEY: preset, DECODER_LAYOUT_KEY: module.layout}
    return {PRESET_KEY: preset, MESH_HEAD_KEY: mesh_head_layout(module.state_dict())}


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


SHIPPED = "shipped"
"""What a user names a file rfcore ships by (``--init-weights shipped``, ``--mesh-decoder shipped``)."""


def resolve_weights(weights, option: str = "--weights", name: str | None = None) -> Path:
    """The weights file to load: ``weights``, or for ``None`` or :data:`SHIPPED` the file rfcore ships.

    Args:
        weights: A path, or ``None`` / ``"shipped"`` for the shipped file.
        option: The command-line option that names the file, for errors (its keyword argument is derived).
        name: The shipped file's name beside :data:`DEFAULT_WEIGHTS` (e.g. :data:`MESH_DECODER_FILE`);
            ``None`` for :data:`DEFAULT_WEIGHTS` itself.

    Raises:
        IsADirectoryError: For a folder, naming the weights files in it.
        FileNotFoundError: Naming the missing file and how to pass another.
    """
    shipped = weights is None or weights == SHIPPED
    default = DEFAULT_WEIGHTS if name is None else DEFAULT_WEIGHTS.with_name(name)
    path = default if shipped else Path(weights)
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.safetensors"))
        inside = f"it holds {', '.join(found[:5])}" if found else "it holds no .safetensors file"
        raise IsADirectoryError(f"weights {path} is a folder, not a file ({inside}): pass the file itself, "
                                f"e.g. {option} {path / (found[0] if found else 'weights.safetensors')}")
    if not path.is_file():
        what = "shipped weights file" if shipped else "weights file"
        keyword = option.lstrip("-").replace("-", "_")
        raise FileNotFoundError(
            f"{what} {path} not found; pass another with {keyword}=... (command line: {option} PATH). "
            "The shipped files are inside the package, in rfcore/assets/weights/ (reinstall rfcore if one is missing)."
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

    Whether the file holds a mesh head is read from its metadata (:func:`weights_mesh_head`).
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
    elif weights_mesh_head(path) == NO_MESH_HEAD:
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
    head_inside = weights_mesh_head(path) != NO_MESH_HEAD
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
            (MESH_HEAD_KEY, "a mesh head of layout", MESH_HEAD_LAYOUT),
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
