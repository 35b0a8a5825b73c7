"""``rfcore train``: the command line that fills a :class:`~rfcore.train.config.TrainConfig` and runs it.

The options are the fields of the config (``--batch-size`` sets ``batch_size``); :func:`run_command` imports the
training loop only when a run starts, so building the command line stays fast.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time

from rfcore.cli.common import EXIT_BAD_INPUT, EXIT_DISK_FULL, EXIT_DIVERGED, EXIT_INTERRUPTED, bounded_int, cores
from rfcore.config import PRESETS
from rfcore.train.config import PAPER_LAMBDA_PIXEL, SYNTHETIC_IMAGES, TrainConfig

DESCRIPTION = (
    "Train RetinaFace with SGD and the paper's warm-up and step schedule on WIDER FACE, any folder in its "
    "layout, or synthetic faces; from scratch or from weights. Writes a JSON-lines log, checkpoints (resume "
    "exactly with --resume) and the final weights to --out. --processes N trains as N processes on this machine's "
    "cores; for several GPUs or nodes run it under torchrun: torchrun --nproc_per_node N -m rfcore train ..."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``rfcore train``; their names are the fields of :class:`TrainConfig`."""
    d = TrainConfig()
    data = parser.add_argument_group("data")
    data.add_argument("--data", required=True, metavar="LABELS",
                      help="label.txt of a WIDER FACE style folder (or the folder), 'synthetic', or 'widerface' "
                      "(the train/ folder of --widerface DIR)")
    data.add_argument("--widerface", metavar="DIR",
                      help="a folder arranged by `rfcore data widerface`, read by --data widerface and --val widerface")
    data.add_argument("--images", metavar="DIR", help="images folder (default: images/ beside label.txt)")
    data.add_argument("--num-images", type=int, metavar="N",
                      help=f"use the first N images; for synthetic data the count (default {SYNTHETIC_IMAGES})")
    data.add_argument("--size", dest="image_size", type=int, metavar="PIXELS",
                      help="side of the square training crops (default: the preset's, 640)")
    data.add_argument("--variety", nargs="+", default=(), metavar="OPTION",
                      help="with --data synthetic: widen the faces' distribution with these options of "
                      "rfcore.data.variety (closeups, backgrounds, distractors, attire, details, occluders, degrade), "
                      "or all")
    data.add_argument("--workers", type=bounded_int(0, cores()), default=d.workers, metavar="N",
                      help=f"loader processes per rank, at most the {cores()} cores this process may use "
                      f"(default {d.workers})")
    data.add_argument("--processes", type=bounded_int(1, cores()), metavar="N",
                      help="train as N processes on this machine (one rank each, gradients averaged over gloo), "
                      "each with --batch-size images and --mesh-anchors rendered faces a step (default: one)")
    data.add_argument("--val", metavar="LABELS",
                      help="validate during training on 'synthetic' (the held-out synthetic set), 'synthetic-varied' "
                      "(a second one with every --variety option), 'photographs' (the bundled ones), 'widerface' "
                      "(the val/ folder of --widerface DIR) or a label.txt: "
                      "AP per face-size band and landmark NME, in the log and the progress bar")
    data.add_argument("--val-every", type=int, default=d.val_every, metavar="N",
                      help=f"validate every N steps and after the last (default {d.val_every})")
    data.add_argument("--val-images", type=int, metavar="N", help="validate on the first N images of --val only")
    model = parser.add_argument_group("model")
    model.add_argument("--preset", default=d.preset, choices=sorted(PRESETS), help=f"preset (default {d.preset})")
    model.add_argument("--init-weights", metavar="PATH",
                       help="start from these safetensors weights, or 'shipped' for the repository's (fine-tuning)")
    model.add_argument("--train-bn", action="store_true",
                       help="with --init-weights, train batch norm and the first convolution too (default: frozen, "
                       "as loaded, because batches of a few images would replace what the weights learned)")
    model.add_argument("--mesh", action="store_true",
                       help="also train the mesh branch (mesh head, decoder, lambda_pixel * L_pixel)")
    model.add_argument("--mesh-decoder", metavar="PATH",
                       help="with --mesh: a pre-trained mesh decoder, kept frozen (the paper's), or 'shipped' for "
                       "the repository's (rfcore mesh pretrain); default: a fresh decoder trained with the network")
    model.add_argument("--lambda-box", type=float, metavar="L", help="weight of L_box (default: the preset's)")
    model.add_argument("--lambda-pts", type=float, metavar="L", help="weight of L_pts (default: the preset's)")
    model.add_argument("--lambda-pixel", type=float, metavar="L",
                       help=f"weight of L_pixel (default: the preset's; with --mesh and a preset of 0, "
                       f"the paper's {PAPER_LAMBDA_PIXEL})")
    model.add_argument("--mesh-anchors", type=int, default=d.mesh_anchors, metavar="N",
                       help=f"positive anchors rendered for L_pixel per step and rank (default {d.mesh_anchors})")
    model.add_argument("--mesh-landmarks", type=float, default=d.mesh_landmarks, metavar="W",
                       help="with --mesh: add W times the distance of each rendered mesh's five landmark vertices "
                       "from the face's five landmarks (in crop sides) to its L_pixel; not in the paper, whose "
                       "mesh branch learns from the pixels alone (default 0: off)")
    schedule = parser.add_argument_group("schedule (paper §4.2; marks scale with --epochs)")
    for flag, kind, help_text in (
        ("--epochs", int, "passes over the data"),
        ("--batch-size", int, "images per step and rank"),
        ("--lr", float, "learning rate after the warm-up"),
        ("--warmup-lr", float, "learning rate at the first step"),
        ("--momentum", float, "SGD momentum"),
        ("--weight-decay", float, "SGD weight decay"),
        ("--lr-decay", float, "factor at each step epoch"),
    ):
        default = getattr(d, flag[2:].replace("-", "_"))
        schedule.add_argument(flag, type=kind, default=default, help=f"{help_text} (default {default:g})")
    schedule.add_argument("--warmup-epochs", type=float, metavar="E", help="warm-up length (default: 5/80 of --epochs)")
    schedule.add_argument("--step-epochs", type=float, nargs="+", metavar="E",
                          help="epochs where the lr is multiplied by --lr-decay (default: 55/80 and 68/80 of --epochs)")
    run = parser.add_argument_group("run")
    run.add_argument("--out", default=d.out, metavar="DIR", help=f"output folder (default {d.out})")
    run.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    run.add_argument("--seed", type=int, default=d.seed,
                     help=f"seed of weights, order, augmentation (default {d.seed})")
    run.add_argument("--max-steps", type=int, metavar="N", help="stop with a checkpoint after N steps in total")
    run.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, metavar="N",
                     help="also checkpoint every N steps (default: at epoch ends only)")
    run.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints, metavar="N",
                     help=f"checkpoints kept (default {d.keep_checkpoints})")
    run.add_argument("--log-every", type=int, default=d.log_every, metavar="N",
                     help=f"log line every N steps (default {d.log_every})")
    run.add_argument("--device", default=d.device, choices=("auto", "cpu", "cuda"), help="device (default auto)")
    run.add_argument("--threads", type=int, metavar="N", help="torch threads per process (default: torch's choice)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--save-all-ranks", action="store_true",
                     help="every rank writes weights.rank<R>.safetensors (to check that ranks agree)")


def command_line(train_cfg: TrainConfig) -> str:
    """The ``rfcore train`` command that runs ``train_cfg``: ``--data`` and every option whose value is not its default.

    Each option is written with its own flag and spelling, so the command gives back ``train_cfg`` exactly.
    """
    return " ".join(command_words(train_cfg))


def command_words(train_cfg: TrainConfig) -> list[str]:
    """:func:`command_line` as a list of arguments, ``["rfcore", "train", "--data", ...]`` (paths kept whole)."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    default, parts = TrainConfig(), ["rfcore", "train"]
    for action in parser._actions:
        value = getattr(train_cfg, action.dest, None)
        if action.dest not in TrainConfig.__dataclass_fields__ or (value == getattr(default, action.dest)
                                                                    and action.dest != "data"):
            continue
        flag = action.option_strings[-1]
        if isinstance(value, bool):
            parts.append(flag)
        else:
            parts += [flag, *map(str, value if isinstance(value, tuple) else [value])]
    return parts


def add_parsers(subparsers) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to the ``rfcore`` command line."""
    parser = subparsers.add_parser(
        "train",
        help="train RetinaFace (alone or under torchrun)",
        description=DESCRIPTION,
    )
    add_arguments(parser)
    parser.set_defaults(run=run_command)
    return parser


def run_command(args: argparse.Namespace) -> int:
    """Run ``rfcore train`` from parsed options; the exit status (:data:`EXIT_DIVERGED` etc., 0 when done)."""
    from rfcore.files import FolderBusy
    from rfcore.train.checkpoint import checkpoint_dirs
    from rfcore.train.loop import TrainingDiskFull, TrainingDiverged, train

    try:
        use_widerface(args)
        train_cfg = TrainConfig.from_args(args)
        if (train_cfg.processes or 1) > 1 and "WORLD_SIZE" not in os.environ:
            return launch_processes(train_cfg)
        train(train_cfg)
    except TrainingDiverged as err:
        return _fail(err, EXIT_DIVERGED)
    except TrainingDiskFull as err:
        return _fail(err, EXIT_DISK_FULL)
    except (FolderBusy, ImportError, OSError, ValueError) as err:
        return _fail(err, EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        last = checkpoint_dirs(train_cfg.out)
        kept = f"the last checkpoint, {last[-1]}, is intact: continue with --resume" if last else \
            "no checkpoint was written yet"
        return _fail("interrupted (Ctrl-C); " + kept, EXIT_INTERRUPTED)
    return 0


def launch_processes(train_cfg: TrainConfig) -> int:
    """Run ``train_cfg`` as ``train_cfg.processes`` ranks on this machine, as ``torchrun --standalone`` would.

    Each rank is this command again, in its own process, told its rank, the number of ranks and a free port on
    127.0.0.1 through the environment variables of ``torch.distributed`` (gloo connects them); without
    ``--threads``, the cores are shared out among them. When one fails the others are stopped; Ctrl-C reaches
    them all and each stops as a lone run would (rank 0 says where the last checkpoint is).

    Returns:
        0 when every rank finished, else the exit status of the first one seen failing.
    """
    count = train_cfg.processes
    with socket.socket() as probe:  # a port no one listens on now; rank 0 listens on it next
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(count),
           "LOCAL_WORLD_SIZE": str(count)}
    env.setdefault("OMP_NUM_THREADS", str(max(1, cores() // count)))
    words = [sys.executable, "-m", "rfcore", *command_words(train_cfg)[1:]]
    return run_ranks(words, env, count)


def run_ranks(words: list[str], env: dict[str, str], count: int) -> int:
    """Start ``count`` processes of the command ``words``, each with ``RANK`` and ``LOCAL_RANK`` added to ``env``,
    and wait for them: when one fails the others are stopped (they would wait for it in a collective for ever).

    Returns:
        0 when every process finished, :data:`~rfcore.cli.common.EXIT_INTERRUPTED` after Ctrl-C (which reaches
        them all; each is waited for), else the exit status of the first one seen failing.
    """
    ranks = [subprocess.Popen(words, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in range(count)]
    try:
        while True:
            status = [rank.poll() for rank in ranks]
            failed = [code for code in status if code not in (None, 0)]
            if failed or None not in status:
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        for rank in ranks:
            rank.wait()
        return EXIT_INTERRUPTED
    for rank in ranks:
        if rank.poll() is None:
            rank.terminate()
        rank.wait()
    return failed[0] if failed else 0


def use_widerface(args: argparse.Namespace) -> None:
    """Replace ``--data widerface`` and ``--val widerface`` by the label files of ``--widerface DIR``.

    Raises:
        ValueError: For ``widerface`` without ``--widerface``.
        FileNotFoundError: Naming what is missing and the command that fetches it.
    """
    named = [option for option in ("data", "val") if getattr(args, option) == "widerface"]
    if not named:
        return
    if args.widerface is None:
        raise ValueError(f"--{named[0]} widerface needs --widerface DIR, a folder arranged by `rfcore data widerface`")
    from rfcore.widerface_archives import TRAIN_LABELS, TRAIN_PARTS, VAL_LABELS, find_widerface

    wider = find_widerface(args.widerface)
    if "data" in named:
        wider.require(TRAIN_PARTS, "--data widerface")
        args.data = str(wider.path(TRAIN_LABELS))
    if "val" in named:
        wider.require(("val", "landmarks"), "--val widerface")
        args.val = str(wider.path(VAL_LABELS))


def _fail(err: Exception, status: int) -> int:
    print(f"rfcore train: {err}", file=sys.stderr, flush=True)
    return status
