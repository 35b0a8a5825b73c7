"""``rfcore mesh``: training the pieces of the dense regression branch [paper §3.2].

* ``rfcore mesh pretrain``: the mesh decoder as the decoder of an autoencoder of the synthetic face model
  (:mod:`rfcore.train.mesh_decoder`);
* ``rfcore mesh train-head``: the mesh head of a frozen detector, self-supervised by ``L_pixel`` through the
  frozen decoder (:mod:`rfcore.train.mesh_head`);
* ``rfcore mesh measure``: the detected meshes against the synthetic faces' ground truth
  (:mod:`rfcore.evaluation.mesh`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rfcore.cli.common import EXIT_BAD_INPUT, add_weights_options, error
from rfcore.files import check_not_inputs
from rfcore.train.config import HeadTrainConfig, PretrainConfig

LICENCE = "MIT (rfcore's own)"
"""Licence recorded in the metadata of the weights these commands write."""


def add_parsers(subparsers) -> None:
    """Add ``mesh`` and its subcommands to the ``rfcore`` command line."""
    parser = subparsers.add_parser(
        "mesh",
        help="pre-train the mesh decoder, train and measure the mesh head",
        description="Train the pieces of the dense regression branch [paper §3.2] on synthetic faces.",
    )
    commands = parser.add_subparsers(dest="mesh_command", required=True, metavar="COMMAND")
    _add_pretrain(commands)
    _add_train_head(commands)
    _add_measure(commands)


PRETRAIN_OPTIONS = (
    ("--steps", int, "Adam steps"),
    ("--batch-size", int, "faces per step"),
    ("--train-faces", int, "faces drawn once for training"),
    ("--held-out-faces", int, "faces drawn from another stream to measure the errors"),
    ("--lr", float, "peak learning rate of the one-cycle schedule"),
    ("--seed", int, "seed of the faces, the initial weights and the batches"),
)
"""The fields of :class:`~rfcore.train.config.PretrainConfig` set from the command line (defaults: the config's)."""


def _add_pretrain(commands) -> None:
    parser = commands.add_parser(
        "pretrain",
        help="pre-train the mesh decoder on the synthetic face model",
        description="Pre-train the graph-convolution mesh decoder (rfcore.mesh.MeshDecoder) as the decoder of an "
        "autoencoder: a linear encoder turns a face of the synthetic face model (rfcore.data.synthetic: template "
        "plus smooth Laplacian modes of shape and colour) into a 128-number code P_ST, the decoder turns the code "
        "back into the face's 289 vertices and colours. Writes OUT/mesh_decoder.safetensors (what "
        "Detector(mesh=True) and rfcore detect --mesh load) and OUT/mesh_encoder.safetensors, and prints the "
        "errors on held-out faces: mean vertex distance in percent of the face size sqrt(w h), and mean colour "
        "difference. With the defaults on one thread it writes the files shipped in assets/weights/.",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (created)")
    add_config_options(parser, PRETRAIN_OPTIONS, PretrainConfig())
    parser.add_argument("--threads", type=int, default=1, metavar="N",
                        help="torch threads (default 1: the shipped files were made on one thread)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=_run_pretrain)


def _run_pretrain(args: argparse.Namespace) -> int:
    import torch

    from rfcore.train.mesh_decoder import pretrain_decoder
    from rfcore.weights import DECODER_LAYOUT_KEY, MESH_DECODER_FILE, MESH_ENCODER_FILE
    from rfcore.weights_io import save_weights

    try:
        config = PretrainConfig(**config_values(args, PRETRAIN_OPTIONS))
        check_not_inputs([], [args.out / MESH_DECODER_FILE, args.out / MESH_ENCODER_FILE])  # before the work
    except ValueError as err:
        error("mesh pretrain", err)
        return EXIT_BAD_INPUT
    torch.set_num_threads(args.threads)
    decoder, encoder, errors = pretrain_decoder(config, progress=not args.quiet)
    summary = (f"held-out faces ({config.held_out_faces}): mean vertex error {100 * errors.vertex:.2f}% of the "
               f"face size (largest {100 * errors.vertex_max:.1f}%), mean colour error {errors.colour:.4f} "
               f"(largest {errors.colour_max:.3f}) on a 0-1 scale")
    metadata = {
        DECODER_LAYOUT_KEY: decoder.layout,
        "source": f"rfcore mesh pretrain --steps {config.steps} --batch-size {config.batch_size} --train-faces "
                  f"{config.train_faces} --lr {config.lr:g} --seed {config.seed} --threads {args.threads}",
        "data": f"{config.train_faces} faces of the synthetic face model (rfcore.data.synthetic.draw_faces, "
                f"numpy seed [{config.seed}, 0]); held out: {config.held_out_faces} faces of seed "
                f"[{config.seed}, 1]",
        "held_out_errors": summary,
        "license": LICENCE,
    }
    save_weights(decoder.state_dict(), args.out / MESH_DECODER_FILE, metadata)
    save_weights(encoder.state_dict(), args.out / MESH_ENCODER_FILE, metadata)
    print(f"wrote {args.out / MESH_DECODER_FILE} and {args.out / MESH_ENCODER_FILE}\n{summary}", file=sys.stdout)
    return 0


HEAD_OPTIONS = (
    ("--images", int, "synthetic training images, rendered once"),
    ("--image-size", int, "their side in pixels"),
    ("--epochs", int, "passes over the images"),
    ("--batch-size", int, "images per step"),
    ("--lr", float, "peak learning rate of Adam's one-cycle schedule"),
    ("--mesh-anchors", int, "positive anchors rendered for L_pixel per step"),
    ("--crop-margin", float, "factor the detected box is grown by to cut the face crop I*"),
    ("--crop-size", int, "side of I* and of the renderings in pixels (detection does not depend on it)"),
    ("--seed", int, "seed of the images (held-out images use seed + 1) and of their order"),
)
"""The fields of :class:`~rfcore.train.config.HeadTrainConfig` set from the command line (defaults: the config's)."""

MEASURE_IMAGES = 200
"""Held-out synthetic images ``rfcore mesh measure`` and ``train-head`` run the detector on."""


def _add_train_head(commands) -> None:
    parser = commands.add_parser(
        "train-head",
        help="train the mesh head of a detector with L_pixel only (self-supervised)",
        description="Train the 144-value mesh head (shape and texture code, camera, light) of a detector on "
        "synthetic faces with the pixel loss L_pixel alone [paper Eq. 3]: no 3D label is used. The detector "
        "and the mesh decoder stay frozen; the head starts at zero (the template, frontal, in the middle of its crop). "
        "Each positive anchor's face crop is cut from the box the detector predicts for it, grown 1.5x, and the "
        "face is rendered over the crop's border colour. "
        "Reads the detector from --weights and the decoder from mesh_decoder.safetensors beside it, writes "
        "mesh_head.safetensors beside it (so that rfcore detect --mesh --weights W finds it), then measures "
        "the meshes on held-out synthetic faces like rfcore mesh measure. With the defaults on one thread "
        "it writes the file shipped in assets/weights/.",
    )
    add_weights_options(parser)
    add_config_options(parser, HEAD_OPTIONS, HeadTrainConfig())
    _add_run_options(parser)
    parser.set_defaults(run=_run_train_head)


def _add_measure(commands) -> None:
    parser = commands.add_parser(
        "measure",
        help="measure detected meshes against synthetic ground truth",
        description="Run rfcore detect --mesh on held-out synthetic images (seed + 1 of the training images) and "
        "compare with the generator's exact ground truth: dense-vertex NME (mean vertex distance over sqrt(w h) "
        "of the true box) of the detected meshes and of the mean template stretched to fill the detected box, "
        "and the median absolute pitch, yaw and roll errors of the mesh head's camera, in degrees.",
    )
    add_weights_options(parser)
    seed = HeadTrainConfig.seed
    parser.add_argument("--seed", type=int, default=seed,
                        help=f"seed of the training images; the held-out ones use seed + 1 (default {seed})")
    _add_run_options(parser)
    parser.set_defaults(run=_run_measure)


def add_config_options(parser, options, defaults) -> None:
    """``--flag`` per ``(flag, type, help)`` of ``options``, its default the field of the ``defaults`` config."""
    for flag, kind, help_text in options:
        default = getattr(defaults, flag[2:].replace("-", "_"))
        metavar = "N" if kind is int else ("LR" if flag == "--lr" else "X")
        parser.add_argument(flag, type=kind, default=default, metavar=metavar,
                            help=f"{help_text} (default {default:g})")


def config_values(args: argparse.Namespace, options) -> dict:
    """``field -> value`` of the config fields ``options`` set from the command line."""
    return {flag[2:].replace("-", "_"): getattr(args, flag[2:].replace("-", "_")) for flag, _, _ in options}


def _add_run_options(parser) -> None:
    parser.add_argument("--measure-images", type=int, default=MEASURE_IMAGES, metavar="N",
                        help=f"held-out images to measure on (default {MEASURE_IMAGES})")
    parser.add_argument("--threads", type=int, default=1, metavar="N", help="torch threads (default 1)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _run_train_head(args: argparse.Namespace) -> int:
    import torch

    from rfcore.config import get_config
    from rfcore.model import RetinaFace
    from rfcore.train.mesh_head import train_mesh_head
    from rfcore.weights import (
        CROP_MARGIN_KEY,
        DECODER_LAYOUT_KEY,
        DETECTOR_SHA_KEY,
        MESH_DECODER_FILE,
        MESH_HEAD_FILE,
        MESH_HEAD_KEY,
        MESH_HEAD_LAYOUT,
        load_detector_weights,
        load_mesh_decoder,
        resolve_weights,
        weights_preset,
    )
    from rfcore.weights_io import file_sha256, save_weights

    torch.set_num_threads(args.threads)
    try:
        config = HeadTrainConfig(**config_values(args, HEAD_OPTIONS))
        weights = resolve_weights(args.weights)
        cfg = get_config(weights_preset(weights, args.preset))
        detector = RetinaFace.from_config(cfg, mesh_head=True)
        load_detector_weights(detector, weights, cfg.name)
        decoder = load_mesh_decoder(_existing(weights.with_name(MESH_DECODER_FILE)))
        check_not_inputs([weights, weights.with_name(MESH_DECODER_FILE)], [weights.with_name(MESH_HEAD_FILE)])
    except (OSError, ValueError) as err:
        error("mesh train-head", err)
        return EXIT_BAD_INPUT
    losses = train_mesh_head(detector, decoder, cfg, config, progress=not args.quiet)
    tail = losses[-max(len(losses) // 10, 1):]
    metadata = {
        "preset": cfg.name,
        MESH_HEAD_KEY: MESH_HEAD_LAYOUT,
        DETECTOR_SHA_KEY: file_sha256(weights),
        DECODER_LAYOUT_KEY: decoder.layout,
        CROP_MARGIN_KEY: f"{config.crop_margin:g}",
        "source": "rfcore mesh train-head " + " ".join(f"--{name.replace('_', '-')} {value}" for name, value
                                                       in config_values(args, HEAD_OPTIONS).items())
                  + f" --threads {args.threads}",
        "data": f"{config.images} synthetic images of {config.image_size} pixels (rfcore.data.synthetic, seed "
                f"{config.seed}, faces {config.faces}, sizes {config.min_face:g}-{config.max_face:g} px, angles "
                f"up to {config.max_angle:g} degrees); L_pixel only, detector {weights.name} and decoder frozen",
        "final_l_pixel": f"{sum(tail) / len(tail):.4f} (mean of the last {len(tail)} steps)",
        "license": LICENCE,
    }
    head_path = weights.with_name(MESH_HEAD_FILE)
    save_weights(detector.mesh_head.state_dict(), head_path, metadata)
    print(f"wrote {head_path}; L_pixel {losses[0]:.4f} at the first step, {metadata['final_l_pixel']} at the end")
    return _measure(weights, args)


def _run_measure(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    return _measure(args.weights, args)


def _measure(weights, args: argparse.Namespace) -> int:
    from rfcore.detector import Detector
    from rfcore.evaluation.mesh import mesh_accuracy

    try:
        detector = Detector(weights, args.preset, mesh=True)
    except (OSError, ValueError) as err:
        error(f"mesh {args.mesh_command}", err)
        return EXIT_BAD_INPUT
    data = HeadTrainConfig(seed=args.seed).dataset(held_out=True, length=args.measure_images)
    result = mesh_accuracy(detector, data)
    pitch, yaw, roll = result.pose_error
    print(f"held-out synthetic faces: {result.found} of {result.faces} found; dense-vertex NME "
          f"{100 * result.nme:.2f}% (mean template in the detected box: {100 * result.template_nme:.2f}%, "
          f"{result.template_nme / result.nme:.2f}x); median pose error pitch {pitch:.1f}, yaw {yaw:.1f}, roll "
          f"{roll:.1f} degrees")
    return 0


def _existing(path: Path) -> Path:
    """``path``, or ``FileNotFoundError`` saying how to make the decoder."""
    if not path.is_file():
        raise FileNotFoundError(f"mesh decoder {path} not found; make one with `rfcore mesh pretrain --out "
                                f"{path.parent}`")
    return path
