"""The ``rfcore eval`` command: the official WIDER FACE evaluation of a detector, or of prediction files.

This module only builds the command line and reports; the work is done by
:mod:`rfcore.evaluation` (imported when the command runs, so that building
the ``rfcore`` parser stays fast).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import textwrap
from pathlib import Path

from rfcore.cli.common import MAX_SIDE, PRESET_HELP, bounded_int, fail, finite_float
from rfcore.config import PRESETS
from rfcore.detect_config import (
    DEFAULT_MAX_SIZE,
    EVAL_THRESHOLD,
    MAX_DECODE_PIXELS,
    OPENCV_MAX_PIXELS,
    PAPER_TEST_SCALES,
    TTAConfig,
)
from rfcore.files import check_not_inputs, write_bytes, write_text

DESCRIPTION = (
    "Evaluate face detection with the official WIDER FACE protocol: AP at IoU 0.5 from 1,000 score thresholds on "
    "the easy, medium and hard subsets of the validation set (ground truth from the toolbox's .mat files), or on "
    "any label.txt-layout set where every face counts (--label-file). Runs the detector over the images (with "
    "optional test-time flip, scales and box voting) and writes its predictions in the official layout, or reads "
    "existing predictions (--pred-dir). Prints the APs and writes the PR curves (pr_curves.png) and a JSON "
    "summary (summary.json) to --out."
)

EPILOG = """\
the WIDER FACE validation set, as the official downloads unpack:
  --gt-dir   eval_tools/ground_truth: wider_face_val.mat, wider_easy_val.mat,
             wider_medium_val.mat, wider_hard_val.mat (from eval_tools.zip)
  --images   WIDER_val/images: one folder per event, e.g.
             0--Parade/0_Parade_marchingband_1_20.jpg (from WIDER_val.zip)
or, arranged by `rfcore data widerface DIR --parts val ground-truth`:
  --widerface DIR   DIR/ground_truth and DIR/val/images
examples:
  rfcore eval --widerface data/widerface
  rfcore eval --gt-dir eval_tools/ground_truth --images WIDER_val/images
  rfcore eval --gt-dir eval_tools/ground_truth --images WIDER_val/images --multiscale --limit 100
  rfcore eval --gt-dir eval_tools/ground_truth --pred-dir my_predictions
  rfcore eval --label-file widerface/val/label.txt
"""

DETECTOR_OPTIONS = {"weights": None, "threshold": None, "max_size": DEFAULT_MAX_SIZE, "max_pixels": MAX_DECODE_PIXELS,
                    "flip": False, "scales": None, "multiscale": False, "vote_iou": None}
"""Options that only matter when the detector runs (not with --pred-dir), with their defaults."""


def add_parsers(subparsers) -> argparse.ArgumentParser:
    """Add the ``eval`` subcommand to the ``rfcore`` command line."""
    parser = subparsers.add_parser(
        "eval",
        help="WIDER FACE evaluation: easy / medium / hard AP, PR curves",
        description=textwrap.fill(DESCRIPTION, 79),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = parser.add_argument_group("data")
    source = data.add_mutually_exclusive_group(required=True)
    source.add_argument("--gt-dir", type=Path, metavar="DIR",
                        help="folder of the official ground truth: wider_face_val.mat and "
                        "wider_{easy,medium,hard}_val.mat")
    source.add_argument("--widerface", type=Path, metavar="DIR",
                        help="a folder arranged by `rfcore data widerface`: its ground_truth/ and val/images/")
    source.add_argument("--label-file", type=Path, metavar="FILE",
                        help="evaluate on a label.txt-layout set instead; every face counts (subset 'all')")
    data.add_argument("--images", type=Path, metavar="DIR",
                      help="images folder, one folder per event (default with --label-file: images/ beside it)")
    data.add_argument("--limit", type=int, metavar="N",
                      help="only the first N images, for a quick look (APs not comparable with the full set's)")
    data.add_argument("--pred-dir", type=Path, metavar="DIR",
                      help="read predictions in the official layout (DIR/<event>/<image>.txt) instead of detecting")
    model = parser.add_argument_group("detector")
    model.add_argument("--weights", type=Path, metavar="PATH",
                       help="safetensors weights (default: the shipped MobileNet-0.25)")
    model.add_argument("--preset", choices=sorted(PRESETS), help=PRESET_HELP)
    model.add_argument("--threshold", type=finite_float(0, 1),
                       help=f"lowest face probability kept (default: {EVAL_THRESHOLD}; low scores still add to the AP)")
    model.add_argument("--max-size", type=bounded_int(0, MAX_SIDE), default=DEFAULT_MAX_SIZE,
                       metavar="PIXELS",
                       help=f"shrink images whose long edge is larger (default: {DEFAULT_MAX_SIZE}; 0: no limit)")
    model.add_argument("--max-pixels", type=bounded_int(0, OPENCV_MAX_PIXELS),
                       default=MAX_DECODE_PIXELS, metavar="N",
                       help=f"refuse image files that would decode to more pixels (default: {MAX_DECODE_PIXELS:,}; "
                       f"0: OpenCV's own, {OPENCV_MAX_PIXELS:,})")
    tta = parser.add_argument_group("test-time augmentation [paper §4.2] (default: none, one pass at original size)")
    tta.add_argument("--flip", action="store_true", help="also detect on the mirrored image")
    scales = tta.add_mutually_exclusive_group()
    scales.add_argument("--scales", type=bounded_int(16, MAX_SIDE), nargs="+", metavar="PIXELS",
                        help="detect with the short edge resized to each of these sizes")
    scales.add_argument("--multiscale", action="store_true",
                        help=f"the paper's test: --flip and --scales {' '.join(map(str, PAPER_TEST_SCALES))}")
    tta.add_argument("--vote-iou", type=finite_float(0, 1), metavar="IOU",
                     help=f"box voting IoU over the pooled passes (default: {TTAConfig.vote_iou}, the paper's)")
    output = parser.add_argument_group("output")
    output.add_argument("--out", type=Path, default=Path("runs/eval"), metavar="DIR",
                        help="output folder: predictions/, pr_curves.png, summary.json (default: runs/eval)")
    output.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run_command)
    return parser


def run_command(args: argparse.Namespace) -> int:
    """Run ``rfcore eval`` from parsed options; the exit status (2 for missing data or bad options)."""
    try:
        use_widerface(args)
        check_arguments(args)
        check_not_inputs(input_files(args), [args.out / SUMMARY_FILE, args.out / FIGURE_FILE])
        truth = load_truth(args)
        if args.pred_dir is not None:
            from rfcore.evaluation import read_predictions

            predictions = read_predictions(args.pred_dir, truth)
            written = None
        else:
            predictions, written = detect_and_write(args, truth)
        report(args, truth, predictions, written)
    except (ImportError, MemoryError, OSError, ValueError) as err:
        return fail("eval", err)
    return 0


SUMMARY_FILE, FIGURE_FILE = "summary.json", "pr_curves.png"
"""What ``rfcore eval`` writes to ``--out``, besides ``predictions/``."""


def input_files(args: argparse.Namespace) -> list[Path]:
    """The files ``rfcore eval`` reads besides the images and predictions: labels or ground truth, weights."""
    from rfcore.evaluation import MAT_FILES
    from rfcore.weights import weights_files

    truth = [args.label_file] if args.gt_dir is None else [args.gt_dir / name for name in MAT_FILES.values()]
    return [*truth, *(weights_files(args.weights) if args.pred_dir is None else [])]


def use_widerface(args: argparse.Namespace) -> None:
    """With ``--widerface DIR``: ``--gt-dir`` and (unless given) ``--images`` from its layout.

    Raises:
        FileNotFoundError: Naming what is missing and the command that fetches it.
    """
    if args.widerface is None:
        return
    from rfcore.widerface_archives import EVAL_PARTS, GROUND_TRUTH, VAL_IMAGES, find_widerface

    wider = find_widerface(args.widerface)
    wider.require(("ground-truth",) if args.pred_dir is not None else EVAL_PARTS, "--widerface")
    args.gt_dir = wider.path(GROUND_TRUTH)
    if args.images is None and args.pred_dir is None:
        args.images = wider.path(VAL_IMAGES)


def check_arguments(args: argparse.Namespace) -> None:
    """Raise ``ValueError`` for options out of range or that do not fit together."""
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    if args.pred_dir is not None:
        given = [f"--{name.replace('_', '-')}" for name, default in DETECTOR_OPTIONS.items()
                 if getattr(args, name) != default]
        if given:
            raise ValueError(f"--pred-dir evaluates existing predictions; the detector options {', '.join(given)} "
                             "do not apply")
    if args.vote_iou is not None and not (args.flip or args.scales or args.multiscale):
        raise ValueError("--vote-iou needs test-time augmentation: --flip, --scales or --multiscale")


def load_truth(args: argparse.Namespace):
    """The ground truth named by ``--gt-dir`` or ``--label-file``, cut to ``--limit``.

    Raises:
        FileNotFoundError: Saying which files were expected where.
    """
    from rfcore.evaluation import load_label_file, load_wider_mat
    from rfcore.evaluation.truth import missing_mat_files

    if args.label_file is not None:
        if not args.label_file.is_file():
            raise FileNotFoundError(f"label file {args.label_file} does not exist (--label-file)")
        truth = load_label_file(args.label_file)
        if not len(truth):
            raise ValueError(f"label file {args.label_file} lists no images (--label-file): expected a '# "
                             "<event>/<image>.jpg' line per image, each followed by its faces' lines")
    else:
        missing = missing_mat_files(args.gt_dir)
        if missing:
            raise FileNotFoundError(missing_ground_truth(args.gt_dir, missing))
        truth = load_wider_mat(args.gt_dir)
    return truth if args.limit is None else truth.head(args.limit)


def missing_ground_truth(gt_dir: Path, missing: list[Path]) -> str:
    """What ``--gt-dir`` should hold and which of it is missing."""
    from rfcore.evaluation import MAT_FILES

    lines = [f"WIDER FACE ground truth not found: expected these files in {gt_dir} (--gt-dir):"]
    lines += [f"  {gt_dir / name}  {'MISSING' if gt_dir / name in missing else 'found'}" for name in MAT_FILES.values()]
    lines.append("They are the ground_truth/ folder of the official evaluation toolbox (eval_tools.zip); "
                 "the images are WIDER_val/images of WIDER_val.zip (--images).")
    return "\n".join(lines)


def images_folder(args: argparse.Namespace) -> Path:
    """``--images``, or ``images/`` beside ``--label-file``."""
    if args.images is not None:
        return args.images
    if args.label_file is not None:
        return args.label_file.parent / "images"
    raise ValueError("--images DIR is needed to run the detector: the WIDER_val/images folder with one folder per "
                     "event (or pass --pred-dir to evaluate existing predictions)")


def check_images(paths: list[Path], images_dir: Path) -> None:
    """Raise ``FileNotFoundError`` naming how many images are missing and the first few expected paths."""
    if not images_dir.is_dir():
        raise FileNotFoundError(f"images folder {images_dir} does not exist (--images); expected e.g. {paths[0]}"
                                if paths else f"images folder {images_dir} does not exist (--images)")
    missing = [path for path in paths if not path.is_file()]
    if missing:
        examples = "\n".join(f"  {path}" for path in missing[:5])
        raise FileNotFoundError(f"{len(missing)} of {len(paths)} images not found under {images_dir} (--images), "
                                f"e.g.\n{examples}")


def warn_outside(truth, paths: list[Path]) -> None:
    """Warn on stderr about ground-truth boxes lying wholly outside their image: no detector can find them."""
    import numpy as np

    from rfcore.data.widerface import outside_image
    from rfcore.headers import header_size

    notes = []
    for path, boxes in zip(paths, truth.boxes):
        size = header_size(path)[1]
        if size is not None and len(boxes):
            xyxy = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)  # x y w h -> x1 y1 x2 y2
            notes += [f"{path} box {xyxy[i].tolist()} in a {size[1]}x{size[0]} image"
                      for i in np.flatnonzero(outside_image(xyxy, size))]
    if notes:
        print(f"rfcore eval: warning: {len(notes):,} ground-truth box(es) lie wholly outside their image "
              f"(first: {notes[0]}); no detector can find them, so they lower the AP: check the labels",
              file=sys.stderr, flush=True)


def threshold(args: argparse.Namespace) -> float:
    """``--threshold``, or :data:`EVAL_THRESHOLD`."""
    return EVAL_THRESHOLD if args.threshold is None else args.threshold


def tta_config(args: argparse.Namespace):
    """The :class:`rfcore.detect_config.TTAConfig` of the options, or ``None`` for a single pass."""

    if not (args.flip or args.scales or args.multiscale):
        return None
    scales = PAPER_TEST_SCALES if args.multiscale else tuple(args.scales or (None,))
    vote_iou = TTAConfig.vote_iou if args.vote_iou is None else args.vote_iou  # the class attribute holds the default
    return TTAConfig(flip=args.flip or args.multiscale, scales=scales, vote_iou=vote_iou)


def detect_and_write(args: argparse.Namespace, truth):
    """Run the detector over the images of ``truth`` and write its predictions to ``--out/predictions``.

    Returns:
        The predictions and the prediction folder.
    """
    from rfcore.detector import Detector
    from rfcore.evaluation import detect_images, image_paths, write_predictions
    from rfcore.evaluation.predictions import prediction_path

    images_dir = images_folder(args)
    paths = image_paths(truth, images_dir)
    check_images(paths, images_dir)
    warn_outside(truth, paths)
    detector = Detector(args.weights, args.preset, threshold=threshold(args), max_size=args.max_size,
                        max_pixels=args.max_pixels, tta=tta_config(args))
    args.preset = detector.cfg.name  # the summary records the preset the weights hold
    pred_dir = args.out / "predictions"
    check_not_inputs([*input_files(args), *paths], [prediction_path(pred_dir, name) for name in truth.names])
    predictions = detect_images(detector, paths, truth.names, progress=not args.quiet)
    write_predictions(pred_dir, truth, predictions)
    return predictions, pred_dir


def settings(args: argparse.Namespace, written: Path | None) -> dict:
    """Where the data and predictions came from, for the JSON summary."""
    record = {
        "ground_truth": str(args.gt_dir or args.label_file),
        "limit": args.limit,
    }
    if written is None:
        record["pred_dir"] = str(args.pred_dir)
        return record
    tta = tta_config(args)
    record.update(
        images=str(images_folder(args)),
        pred_dir=str(written),
        weights=str(args.weights) if args.weights else "shipped",
        preset=args.preset,
        threshold=threshold(args),
        max_size=args.max_size,
        tta=None if tta is None else {"flip": tta.flip, "scales": list(tta.scales), "vote_iou": tta.vote_iou},
    )
    return record


def report(args: argparse.Namespace, truth, predictions, written: Path | None) -> None:
    """Evaluate, print the APs and write ``pr_curves.png`` and ``summary.json`` to ``--out``."""
    from rfcore.evaluation import evaluate_all
    from rfcore.viz.evaluation import plot_pr_curves

    result = evaluate_all(truth, predictions)
    summary = {**result.summary(), "settings": settings(args, written)}
    figure_path, summary_path = args.out / FIGURE_FILE, args.out / SUMMARY_FILE
    source = "predictions" if written is None else "rfcore"
    figure = io.BytesIO()
    plot_pr_curves({source: result.curves}, title=f"{summary['settings']['ground_truth']}, {len(truth):,} images") \
        .savefig(figure, format="png", dpi=120)
    write_bytes(figure_path, figure.getvalue())
    write_text(summary_path, json.dumps(summary, indent=2) + "\n")
    print(format_report(summary))
    wrote = [] if written is None else [f"{written}/ ({plural(len(truth), 'file')})"]
    print("wrote " + ", ".join([*wrote, str(figure_path), str(summary_path)]))


def plural(count: int, noun: str) -> str:
    """``"1 image"``, ``"3,226 images"``."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def format_report(summary: dict) -> str:
    """The APs (and landmark figures) of a summary as a small table."""
    lines = [
        f"{plural(summary['images'], 'image')}, {plural(summary['detections'], 'detection')}; "
        f"AP at IoU {summary['iou_threshold']} over {summary['score_thresholds']} score thresholds",
        f"{'subset':<8}{'faces':>9}{'AP':>9}",
    ]
    for name, figures in summary["subsets"].items():
        ap = "n/a" if figures["ap"] is None else f"{figures['ap']:.4f}"
        lines.append(f"{name:<8}{figures['faces']:>9,}{ap:>9}")
    marks = summary["landmarks"]
    if marks is not None and marks["measured_faces"]:
        lines.append(
            f"landmarks: {marks['measured_faces']:,} of {marks['annotated_faces']:,} annotated faces found; "
            f"mean NME {marks['mean_nme']:.2%}, "
            f"failure rate (NME > {marks['failure_nme']:.0%}) {marks['failure_rate']:.2%}"
        )
    return "\n".join(lines)
