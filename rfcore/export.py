"""ONNX export of a RetinaFace, with dynamic batch size, height and width (:func:`export_onnx`).

The graph computes exactly what the PyTorch model's forward does: input ``images`` ``(N, 3, H, W)``
float32, preprocessed as the preset says (:func:`rfcore.image.preprocess`); outputs ``logits``
``(N, A, 2)`` (raw, apply a softmax over the last axis), ``box_deltas`` ``(N, A, 4)``,
``landmark_deltas`` ``(N, A, 10)`` and, with the mesh head, ``mesh_params`` ``(N, A, 144)``, over the
anchors of :func:`rfcore.anchors.make_anchors`. Decoding and NMS stay outside the graph, as in other
public exports of this model. The file's ``metadata_props`` record ``rfcore.preset`` and
``rfcore.precision`` (``float32``, or ``int8`` after :mod:`rfcore.quantize`), so that the ``onnx`` engine of
:class:`rfcore.detector.Detector` (:mod:`rfcore.onnx_backend`) can refuse a file of another preset or one
rfcore did not write. The export uses PyTorch's TorchScript-based exporter (``dynamo=False``).
"""

from __future__ import annotations

import io
import os
import warnings

import torch
from torch import nn

from rfcore.files import write_bytes

INPUT_NAME = "images"
OUTPUT_NAMES = ("logits", "box_deltas", "landmark_deltas", "mesh_params")
DEFAULT_OPSET = 17
PRESET_KEY = "rfcore.preset"
PRECISION_KEY = "rfcore.precision"


class _TupleOutputs(nn.Module):
    """The model with its :class:`~rfcore.model.RetinaFaceOutput` as a plain tuple, ``None`` left out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(t for t in self.model(images) if t is not None)


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike | io.BytesIO,
    opset: int = DEFAULT_OPSET,
    example_size: tuple[int, int] = (128, 160),
    preset: str | None = None,
) -> list[str]:
    """Export a RetinaFace (plain or fused) to ONNX with dynamic ``N``, ``H``, ``W``.

    Args:
        model: :class:`~rfcore.model.RetinaFace` or
            :class:`~rfcore.model.fuse.FusedRetinaFace`; it is put in
            evaluation mode.
        path: Destination file (written atomically: a failed export leaves
            no file, :func:`rfcore.files.write_bytes`), or a binary buffer.
        opset: ONNX opset version.
        example_size: ``(H, W)`` of the example input the graph is traced
            with; any size works afterwards.
        preset: The preset of the weights, recorded in the file's metadata
            (``None``: not recorded).

    Returns:
        The names of the graph's outputs.
    """
    wrapper = _TupleOutputs(model).eval()
    example = torch.zeros(1, 3, *example_size)
    with torch.no_grad():
        count = len(wrapper(example))
    names = list(OUTPUT_NAMES[:count])
    dynamic_axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}}
    dynamic_axes.update({name: {0: "batch", 1: "anchors"} for name in names})
    buffer = path if isinstance(path, io.BytesIO) else io.BytesIO()
    with warnings.catch_warnings():
        # The input check in RetinaFace.features is a constant under tracing,
        # and the exporter announces its own deprecation; neither affects the graph.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        torch.onnx.export(
            wrapper,
            (example,),
            buffer,
            input_names=[INPUT_NAME],
            output_names=names,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            dynamo=False,
        )
    data = with_metadata(buffer.getvalue(), {PRESET_KEY: preset, PRECISION_KEY: "float32"})
    if buffer is path:
        buffer.seek(0)
        buffer.truncate()
        buffer.write(data)
    else:
        write_bytes(path, data)
    return names


def with_metadata(model: bytes, metadata: dict[str, str | None]) -> bytes:
    """A serialised ONNX model with ``metadata`` set in its ``metadata_props`` (``None`` values left out)."""
    import onnx

    proto = onnx.load_from_string(model)
    current = {prop.key: prop.value for prop in proto.metadata_props}
    current.update({key: value for key, value in metadata.items() if value is not None})
    onnx.helper.set_model_props(proto, current)
    return proto.SerializeToString()
