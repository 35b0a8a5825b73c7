"""``rfcore detect`` and ``rfcore align``: faces in images and videos, drawn, printed or cut out aligned."""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import re
import sys
from pathlib import Path

from rfcore.cli.common import (
    MAX_BATCH,
    add_memory_options,
    add_threshold_option,
    add_weights_options,
    bounded_int,
    error,
)
from rfcore.files import atomic_path, check_not_inputs, write_bytes


def add_parsers(subparsers) -> None:
    """Add ``detect`` and ``align`` to the ``rfcore`` command line."""
    _add_detect(subparsers)
    _add_align(subparsers)


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
        "--stride", type=bounded_int(1, 10_000), default=1, metavar="N",
        help="videos: detect every N-th frame and draw the last detections on the frames in between (default: 1)",
    )
    parser.add_argument(
        "--batch", type=bounded_int(1, MAX_BATCH), default=1, metavar="N",
        help="videos: run the network on N frames at a time (default: 1; decoding, and drawing + encoding, already "
        "overlap detection in threads of their own)",
    )
    add_threshold_option(parser)
    parser.add_argument(
        "--mesh", action="store_true",
        help='also give each face its projected mesh vertices ("mesh": [[x, y] x V] in the JSON, wireframes in --out '
        "drawings). The shipped weights have a mesh head trained on synthetic faces only (rfcore mesh train-head); "
        "other --weights need a mesh head inside (an `rfcore train --mesh` run) or a mesh_head.safetensors beside "
        "them, and a mesh_decoder.safetensors beside them",
    )
    parser.add_argument(
        "--engine", choices=("torch", "onnx"), default="torch",
        help="what runs the network: eager PyTorch (default) or onnxruntime; with onnx, --weights may be a "
        "file of `rfcore export --onnx OUT [--int8]`, and safetensors weights are exported once into "
        "$RFCORE_CACHE or ~/.cache/rfcore",
    )
    add_memory_options(parser, "shrink images whose long edge is larger than this before detecting")
    add_weights_options(parser)
    parser.set_defaults(run=_run_detect)


def _run_detect(args) -> int:
    from rfcore.detector import Detector
    from rfcore.video_files import is_video
    from rfcore.weights import weights_files

    videos = [path for path in args.images if is_video(path)]
    if args.out is not None and is_video(args.out) and (len(videos) != 1 or len(args.images) != 1):
        error("detect", ValueError(f"--out {args.out} names one video file: give one video, or --out DIR"))
        return 2
    if args.out is not None and not is_video(args.out) and args.out.is_file():
        error("detect", ValueError(f"--out {args.out} is a file: give a folder for the drawings (or OUT.mp4 for one "
                                    "video)"))
        return 2
    drawings = _drawing_paths(args)
    try:
        check_not_inputs([*args.images, *weights_files(args.weights, args.mesh)], [args.json_file, *drawings])
        detector = Detector(args.weights, args.preset, threshold=args.threshold, max_size=args.max_size,
                            max_pixels=args.max_pixels, mesh=args.mesh, engine=args.engine)
    except (ImportError, OSError, ValueError) as err:
        error("detect", err)
        return 2
    failed = False
    with _json_stream(args) as json_stream:
        for path, drawing in zip(args.images, drawings):
            if is_video(path):
                failed |= not _detect_video(detector, path, drawing, args.stride, json_stream, args.batch)
                continue
            try:
                faces = _detect_image(detector, path, drawing)
            except (MemoryError, OSError, ValueError) as err:
                error("detect", err)
                failed = True
                continue
            _print_faces(path, faces, json_stream, drawing)
    return 1 if failed else 0


def _drawing_paths(args) -> list[Path | None]:
    """Per input, the drawing ``--out`` writes (``None`` without ``--out``), all known before anything runs."""
    from rfcore.video_files import is_video

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


def _detect_video(detector, path: str, out: Path | None, stride: int, json_stream, batch: int = 1) -> bool:
    """``rfcore detect`` on one video; False if it could not be read or had broken frames."""
    from rfcore.video import process_video

    def on_frame(frame, info) -> None:
        if frame.error:
            error("detect", f"{path}: frame {frame.index} {frame.error}; skipped")
        if json_stream is not None:
            print(json.dumps({"video": path} | frame.to_dict(info.fps)), file=json_stream, flush=True)

    try:
        summary = process_video(
            path, lambda images: detector.detect(images, color="RGB"), out, stride, on_frame, draw=_draw_faces,
            batch=batch,
        )
    except (MemoryError, OSError, ValueError) as err:
        error("detect", err)
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


@functools.cache
def _mesh_triangles():
    """``(F, 3)`` triangles of the mesh the decoder deforms (:func:`rfcore.mesh.template.face_template`)."""
    from rfcore.mesh.template import face_template

    return face_template().faces


def _draw_faces(image, faces):
    """The drawing of ``rfcore detect --out``: mesh wireframes if any, boxes with scores, landmarks."""
    import numpy as np

    from rfcore.viz.draw import draw_boxes, draw_landmarks
    from rfcore.viz.mesh_overlay import draw_face_meshes

    thickness = max(1, round(max(image.shape[:2]) / 400))
    if faces:
        if faces[0].mesh is not None:
            image = draw_face_meshes(image, np.array([face.mesh for face in faces]), _mesh_triangles())
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


def _print_faces(path: str, faces, json_stream=None, drawing: Path | None = None) -> None:
    """The faces of one image as text or a JSON line, and where ``--out`` drew them."""
    found = f"{path}: {len(faces)} face{'' if len(faces) == 1 else 's'}"
    wrote = "" if drawing is None else f"; wrote {drawing}"
    if json_stream is not None:
        print(json.dumps({"image": path, "faces": [face.to_dict() for face in faces]}), file=json_stream, flush=True)
        if drawing is not None:  # beside the JSON lines, never among them
            print(found + wrote, file=sys.stderr if json_stream is sys.stdout else sys.stdout)
        return
    print(found + wrote)
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
    add_threshold_option(parser)
    add_memory_options(parser, "detect on images shrunk to this long edge; crops come from the original")
    add_weights_options(parser)
    parser.set_defaults(run=_run_align)


def _crop_size(text: str) -> tuple[int, int]:
    from rfcore.align import parse_size

    try:
        return parse_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _run_align(args) -> int:
    from rfcore.align import align_face
    from rfcore.detector import Detector
    from rfcore.image import read_image
    from rfcore.weights import weights_files

    try:
        if args.out.is_file():
            raise ValueError(f"--out {args.out} is a file: give a folder for the crops")
        check_not_inputs([*args.images, *weights_files(args.weights)], _crops_named_like_inputs(args))
        detector = Detector(args.weights, args.preset, threshold=args.threshold, max_size=args.max_size,
                            max_pixels=args.max_pixels)
    except (OSError, ValueError) as err:
        error("align", err)
        return 2
    used_names: set[str] = set()
    failed = False
    for path in args.images:
        try:
            image = read_image(path, args.max_pixels)
            faces = detector.detect(image, color="RGB")
        except (MemoryError, OSError, ValueError) as err:
            error("align", err)
            failed = True
            continue
        stem = _unique_name(Path(path).stem, used_names)
        written = []
        for k, face in enumerate(faces):
            try:
                written.append(_write_rgb(align_face(image, face, args.size), args.out / f"{stem}_face{k}.png"))
            except (OSError, ValueError) as err:
                error("align", f"{path}: face {k}: {err}")
                failed = True
        print(f"{path}: {len(faces)} face{'' if len(faces) == 1 else 's'}, {len(written)} aligned "
              f"{args.size[0]}x{args.size[1]} crop{'' if len(written) == 1 else 's'} written to {args.out}")
    return 1 if failed else 0


def _crops_named_like_inputs(args) -> list[Path]:
    """Crops ``rfcore align`` may write whose names are those of inputs (``<stem>_face<k>.png``)."""
    used_names: set[str] = set()
    stems = "|".join(re.escape(_unique_name(Path(path).stem, used_names)) for path in args.images)
    return [args.out / Path(path).name for path in args.images if re.fullmatch(rf"(?:{stems})_face\d+\.png", Path(path).name)]
