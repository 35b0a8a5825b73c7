"""int8 ONNX models: static quantisation calibrated on images the repository can make.

A float tensor ``x`` is stored as ``q = round(x / scale) + zero_point`` and read back as
``x ~ scale * (q - zero_point)``; static quantisation fixes every scale and zero point before inference.
Weights are signed int8 per output channel with zero point 0 and ``scale = max |w| / 127``; activations
are uint8 per tensor over a range read from the float network on calibration images
(:func:`calibration_images`) by onnxruntime's percentile calibration (:data:`CALIBRATION_PERCENTILE`), so a
few outliers do not stretch the scale. The model is written in the QDQ format, which onnxruntime fuses into
int8 kernels when it loads the file; the quantisation itself is
``onnxruntime.quantization.quantize_static``. MobileNet's first stage and the heads stay in float
(:data:`FLOAT_LAYERS`). :func:`quantize_onnx` turns an export of :func:`rfcore.export.export_onnx` into an
int8 file; ``rfcore export --onnx OUT --int8`` does both.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from rfcore.config import RetinaFaceConfig
from rfcore.export import INPUT_NAME, PRECISION_KEY, with_metadata
from rfcore.files import write_bytes
from rfcore.image import letterbox, preprocess

CALIBRATION_SEED = 2_000_003
"""Seed of the synthetic calibration pictures; no training run or validation set uses it."""

CALIBRATION_SIZE = (480, 640)
"""``(height, width)`` of the calibration images: VGA, the input the int8 model is made for."""

CALIBRATION_PERCENTILE = 99.999
"""Percentile of each activation's values (and its mirror on the low side) taken as its range."""

SYNTHETIC_CALIBRATION = 4
"""Synthetic calibration pictures (640x480, one to eight faces of 10 to 240 pixels)."""

FLOAT_LAYERS = ("body.stage1", "heads")
"""Modules kept in float: MobileNet's first stage and the heads.

The first stage (stride 2 to 8, 8 to 64 channels) runs in float with each leaky ReLU fused into its
convolution, where int8 needs a separate pass for the activation and is slow on 3- and 8-channel inputs;
in int8 it was no faster and moved small faces' landmarks further. The heads' outputs leave the graph in
float, so in int8 each would need one more dequantisation pass; in float their offsets keep full precision.
"""

ORT_QUANTIZE_MISSING = (
    "int8 export needs onnxruntime (its quantisation tools), which is not installed: "
    "pip install onnxruntime (or pip install -e '.[dev]')"
)


def calibration_files() -> list[Path]:
    """The bundled photos the calibration reads (``assets/images/*.jpg``)."""
    from rfcore.assets import IMAGES

    return sorted(IMAGES.glob("*.jpg"))


def calibration_images(synthetic: int = SYNTHETIC_CALIBRATION) -> list[np.ndarray]:
    """The calibration images: bundled photos, their mirrors and crops, and synthetic faces.

    All are letterboxed to :data:`CALIBRATION_SIZE` (the percentile calibration needs one size); the
    synthetic pictures (:class:`rfcore.data.SyntheticFaces`) add faces from 10 to 240 pixels, and nothing
    is downloaded.

    Args:
        synthetic: Number of synthetic pictures.

    Returns:
        :data:`CALIBRATION_SIZE` uint8 RGB images.
    """
    from rfcore.assets import load_image
    from rfcore.data.synthetic import SyntheticFaces

    photos = [letterbox(load_image(path), CALIBRATION_SIZE) for path in calibration_files()]
    images = photos + [photo[:, ::-1].copy() for photo in photos] + [middle_crop(photo) for photo in photos]
    faces = SyntheticFaces(synthetic, CALIBRATION_SIZE, faces=(1, 8), min_face=10, max_face=240, seed=CALIBRATION_SEED)
    return images + [faces[i].image for i in range(len(faces))]


def middle_crop(image: np.ndarray, fraction: float = 0.6) -> np.ndarray:
    """The middle ``fraction`` of ``image`` in each direction, enlarged back to its size (faces grow)."""
    height, width = image.shape[:2]
    top, left = round(height * (1 - fraction) / 2), round(width * (1 - fraction) / 2)
    crop = image[top : height - top, left : width - left]
    return cv2.resize(crop, (width, height), interpolation=cv2.INTER_LINEAR)


def calibration_feeds(images: Sequence[np.ndarray], cfg: RetinaFaceConfig) -> Iterator[dict[str, np.ndarray]]:
    """One onnxruntime input per image: ``{"images": (1, 3, H, W) float32}``, preprocessed for ``cfg``."""
    for image in images:
        yield {INPUT_NAME: preprocess([image], cfg.pixel_mean_bgr).contiguous().numpy()}


def float_node_names(node_names: Sequence[str], modules: Sequence[str] = FLOAT_LAYERS) -> list[str]:
    """The ONNX nodes that belong to ``modules`` (PyTorch names like ``body.stage1.0``).

    The exporter names a node by the path of modules it comes from, each
    level spelled out: module ``body.stage1.0`` becomes the scope
    ``/body/stage1/stage1.0/``.
    """
    scopes = []
    for module in modules:
        parts = module.split(".")
        # "body.stage1.1.0" -> ["body", "stage1", "stage1.1", "stage1.1.0"]: numbered children carry their parent
        levels = [parts[0]]
        for part in parts[1:]:
            levels.append(f"{levels[-1]}.{part}" if part.isdigit() else part)
        scopes.append("/" + "/".join(levels) + "/")
    pattern = re.compile("|".join(re.escape(scope) for scope in scopes))
    return [name for name in node_names if pattern.search(name)]


def quantize_onnx(
    model: bytes, path: str | os.PathLike, cfg: RetinaFaceConfig, images: Sequence[np.ndarray] | None = None
) -> Path:
    """Write the int8 version of a float export (static QDQ, per-channel weights, see the module docstring).

    Args:
        model: A float model from :func:`rfcore.export.export_onnx`, serialised.
        path: Destination ``.onnx`` file (written atomically).
        cfg: The preset of the model (for preprocessing the calibration images).
        images: Calibration images, ``(H, W, 3)`` uint8 RGB of one size;
            ``None`` for :func:`calibration_images`.

    Returns:
        ``path``.

    Raises:
        ImportError: If onnxruntime is not installed.
    """
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise ImportError(ORT_QUANTIZE_MISSING) from None
    import onnx

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = calibration_feeds(calibration_images() if images is None else images, cfg)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory() as folder:
        source, prepared, target = (Path(folder) / name for name in ("float.onnx", "prepared.onnx", "int8.onnx"))
        source.write_bytes(model)
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        names = [node.name for node in onnx.load(str(prepared)).graph.node]
        with contextlib.redirect_stdout(io.StringIO()):  # the percentile calibrator prints its progress
            quantize_static(
                str(prepared), str(target), Feeds(), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                nodes_to_exclude=float_node_names(names), calibrate_method=CalibrationMethod.Percentile,
                extra_options={"CalibPercentile": CALIBRATION_PERCENTILE},
            )
        data = with_metadata(target.read_bytes(), {PRECISION_KEY: "int8"})
    return write_bytes(path, data)


def quantisation_parameters(path: str | os.PathLike) -> list[dict]:
    """Scale and zero point of every tensor an int8 model stores in 8 bits, in graph order.

    Each ``DequantizeLinear`` node of a QDQ model reads one 8-bit tensor back
    as ``scale * (q - zero_point)``.

    Args:
        path: A model from :func:`quantize_onnx`.

    Returns:
        One dict per tensor: ``"tensor"`` (its name), ``"kind"``
        (``"weight"``: stored int8; ``"bias"``: stored int32, with scale
        ``input scale x weight scale``; ``"activation"``: computed, uint8),
        ``"scale"`` and ``"zero_point"`` (arrays: one value per tensor, or per
        output channel).
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    stored = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    return [
        {
            "tensor": node.input[0],
            "kind": tensor_kind(stored.get(node.input[0])),
            "scale": np.atleast_1d(stored[node.input[1]]),
            "zero_point": np.atleast_1d(stored[node.input[2]]),
        }
        for node in graph.node
        if node.op_type == "DequantizeLinear"
    ]


def tensor_kind(stored: np.ndarray | None) -> str:
    """``"activation"`` for a tensor computed at run time (``None``), else ``"bias"`` (int32) or ``"weight"``."""
    if stored is None:
        return "activation"
    return "bias" if stored.dtype == np.int32 else "weight"


def compare_faces(reference: Sequence, faces: Sequence) -> np.ndarray:
    """How well ``faces`` reproduce ``reference`` faces (e.g. int8 against float).

    Args:
        reference: ``F`` :class:`~rfcore.postprocess.Face` objects.
        faces: The faces to compare, any number.

    Returns:
        ``(F, 2)``: per reference face the best IoU with ``faces``, and the
        largest landmark distance to that face divided by the reference
        face's size ``sqrt(w h)`` (``IoU 0`` and ``inf`` when ``faces`` is empty).
    """
    import torch
    from torchvision.ops import box_iou

    if not faces:
        return np.tile([0.0, np.inf], (len(reference), 1))
    boxes = torch.tensor([face.box for face in reference])  # (F, 4)
    iou = box_iou(boxes, torch.tensor([face.box for face in faces]))  # (F, G)
    best_iou, best = iou.max(dim=1)
    points = torch.tensor([face.landmarks for face in reference])  # (F, 5, 2)
    matched = torch.tensor([faces[k].landmarks for k in best.tolist()])  # (F, 5, 2)
    sizes = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sqrt()  # (F,)
    difference = (points - matched).norm(dim=2).amax(dim=1) / sizes  # (F,)
    return torch.stack([best_iou, difference], dim=1).numpy()

