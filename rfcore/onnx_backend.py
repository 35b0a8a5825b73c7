"""The ``onnx`` engine: an exported network run by onnxruntime in place of PyTorch.

:class:`OnnxNetwork` is called like the PyTorch model, ``(N, 3, H, W)``
preprocessed batch in, :class:`~rfcore.model.RetinaFaceOutput` out, so
:class:`rfcore.detector.Detector` (``engine="onnx"``) decodes and suppresses
its outputs exactly as it does PyTorch's. It runs a file of
:func:`rfcore.export.export_onnx` (float) or :func:`rfcore.quantize.quantize_onnx`
(int8), after checking the file's metadata: an ONNX model rfcore did not
write, or one exported for another preset, is refused with what to do.

Given safetensors weights instead (or none: the shipped ones), the engine
exports them once (:func:`cached_export`) into the user's cache folder
(:func:`cache_folder`), named by the weights' content, and runs that file.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import torch

from rfcore.config import get_config
from rfcore.export import INPUT_NAME, OUTPUT_NAMES, PRECISION_KEY, PRESET_KEY, export_onnx
from rfcore.files import write_bytes
from rfcore.model import RetinaFaceOutput
from rfcore.model.fuse import fuse_for_inference
from rfcore.weights import load_model, resolve_weights, weights_preset

ENGINES = ("torch", "onnx")
"""What runs the network of a :class:`rfcore.detector.Detector`: eager PyTorch or onnxruntime."""

ORT_MISSING = (
    "engine 'onnx' (--engine onnx) runs the network in onnxruntime, which is not installed: "
    "pip install onnxruntime (or pip install -e '.[dev]'), or use engine 'torch'"
)

CACHE_ENV = "RFCORE_CACHE"
"""Environment variable naming the cache folder instead of ``$XDG_CACHE_HOME/rfcore`` (``~/.cache/rfcore``)."""


def check_engine(engine: str, weights, mesh: bool, model) -> None:
    """Raise ``ValueError`` for an unknown ``engine`` or one that cannot run what the other options ask.

    The ``onnx`` engine runs a file (``weights``), not a module in memory,
    and the exports carry no mesh decoder; an ``.onnx`` file needs it.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "onnx" and (mesh or model is not None):
        raise ValueError("engine='onnx' (--engine onnx) runs weights from a file without the mesh: "
                         "model=... and mesh=True (--mesh) need engine='torch'")
    if engine == "torch" and weights is not None and Path(weights).suffix.lower() == ".onnx":
        raise ValueError(f"{weights} is an ONNX model: run it with engine='onnx' (command line: --engine onnx)")


def import_onnxruntime():
    """The onnxruntime module.

    Raises:
        ImportError: Saying how to install it, if it is not installed.
    """
    try:
        import onnxruntime
    except ImportError:
        raise ImportError(ORT_MISSING) from None
    return onnxruntime


def ort_session(model: bytes | str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session: ``threads`` intra-op threads (default: PyTorch's), one inter-op, sequential.

    Its worker threads do not spin while idle: spinning threads would hold
    cores that PyTorch or OpenCV running between calls need.

    Raises:
        ImportError: If onnxruntime is not installed.
    """
    onnxruntime = import_onnxruntime()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads() if threads is None else threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = model if isinstance(model, bytes) else str(model)
    return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])


class OnnxNetwork:
    """An rfcore ONNX export in onnxruntime, called like the PyTorch network.

    Args:
        path: The ``.onnx`` file (float or int8).
        preset: The preset of the export, needed only for a file without one
            in its metadata; otherwise it must be the file's.
        threads: onnxruntime intra-op threads (default: ``torch.get_num_threads()``).

    Attributes:
        preset: The export's preset, from the file's metadata.
        precision: ``"float32"`` or ``"int8"``, from the file's metadata.

    Raises:
        ImportError: If onnxruntime is not installed.
        ValueError: If the file is not an rfcore export, or of another preset.
    """

    def __init__(self, path: str | os.PathLike, preset: str | None = None, threads: int | None = None) -> None:
        self.path = Path(path)
        errors = import_onnxruntime().capi.onnxruntime_pybind11_state  # its exception types derive from Exception
        try:
            self.session = ort_session(self.path, threads)
        except (errors.InvalidProtobuf, errors.InvalidGraph, errors.Fail, errors.NoSuchFile) as err:
            raise ValueError(f"{self.path} is not a readable ONNX model ({first_line(err)}); export one with "
                             "`rfcore export --onnx OUT` (add --int8 for the int8 model)") from None
        self.output_names = [output.name for output in self.session.get_outputs()]
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.preset = check_exported(self.path, [i.name for i in self.session.get_inputs()], self.output_names,
                                     metadata, preset)
        self.precision = metadata.get(PRECISION_KEY, "float32")

    def __call__(self, images: torch.Tensor) -> RetinaFaceOutput:
        """Run the network.

        Args:
            images: ``(N, 3, H, W)`` float batch, preprocessed (any memory layout).

        Returns:
            :class:`~rfcore.model.RetinaFaceOutput` as the PyTorch model gives it.
        """
        outputs = self.session.run(self.output_names, {INPUT_NAME: images.contiguous().numpy()})
        return RetinaFaceOutput(*(torch.from_numpy(output) for output in outputs))


def first_line(err: Exception) -> str:
    """The first line of an error's message (onnxruntime's run on for pages)."""
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def check_exported(path: Path, inputs: list[str], outputs: list[str], metadata: dict, preset: str | None) -> str:
    """The preset of an rfcore export; ``ValueError`` unless the graph is one, of ``preset`` if given.

    The input and output names must be those of :func:`rfcore.export.export_onnx`;
    the preset is the metadata's (files exported before it was recorded have
    none, and then ``preset`` names it).
    """
    expected = list(OUTPUT_NAMES[: len(outputs)])
    if inputs != [INPUT_NAME] or outputs != expected or len(outputs) < 3:
        raise ValueError(
            f"{path} is not an ONNX model exported by rfcore (inputs {inputs}, outputs {outputs}; expected "
            f"['{INPUT_NAME}'] and {list(OUTPUT_NAMES[:3])}): export one with `rfcore export --onnx OUT [--int8]`, "
            "or turn a public ONNX RetinaFace into weights with `rfcore convert SRC DST.safetensors`"
        )
    saved = metadata.get(PRESET_KEY)
    if saved is not None and preset is not None and saved != preset:
        raise ValueError(f"{path} was exported for preset {saved}, not {preset}: leave out the preset (--preset) to "
                         "use the file's")
    if saved is None and preset is None:
        raise ValueError(f"{path} has no preset in its metadata (an older export): name it with --preset "
                         "(preset=...)")
    return saved or preset


def cache_folder() -> Path:
    """Where exports of safetensors weights are kept: ``$RFCORE_CACHE``, else ``$XDG_CACHE_HOME/rfcore``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rfcore"


def cached_export(weights, preset: str | None = None, rebuild: bool = False) -> Path:
    """The float ONNX export of safetensors ``weights`` (``None``: the shipped ones), made on first use.

    The file is ``<cache>/<weights stem>-<preset>-<first 16 hex digits of the
    weights' SHA-256>.onnx``, so changed weights get a new export; ``rebuild``
    exports again over a damaged entry.

    Raises:
        FileNotFoundError, ValueError: For missing weights or weights that do
            not fit the preset (:func:`rfcore.weights.load_model`).
    """
    path = resolve_weights(weights)
    cfg = get_config(weights_preset(path, preset))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    target = cache_folder() / f"{path.stem}-{cfg.name}-{digest}.onnx"
    if rebuild or not target.is_file():
        buffer = io.BytesIO()
        export_onnx(fuse_for_inference(load_model(path, cfg)), buffer, preset=cfg.name)
        write_bytes(target, buffer.getvalue())
    return target


def load_onnx_network(weights, preset: str | None = None) -> OnnxNetwork:
    """The ``onnx`` engine for ``weights``: an ``.onnx`` file as it is, safetensors through :func:`cached_export`.

    Raises:
        ImportError: If onnxruntime is not installed (before exporting anything).
        FileNotFoundError, ValueError: For a missing or unsuitable file.
    """
    import_onnxruntime()
    if weights is not None and Path(weights).suffix.lower() == ".onnx":
        if not Path(weights).is_file():
            raise FileNotFoundError(f"ONNX model {weights} not found; export one with `rfcore export --onnx {weights}`")
        return OnnxNetwork(weights, preset)
    try:
        return OnnxNetwork(cached_export(weights, preset))
    except ValueError:  # a damaged cache entry (a cut copy, a full disk, another version's export): make it again
        return OnnxNetwork(cached_export(weights, preset, rebuild=True))
