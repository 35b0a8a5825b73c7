"""A run's output folder: what :func:`rfcore.train.loop.train` writes there, and the checks before it does.

A run never overwrites its inputs (:func:`check_outputs`), never starts over a run it could resume or a
finished one (:func:`check_run_folder`), and resumes only a checkpoint made with the same settings and
number of ranks (:func:`check_resumable`).
"""

from __future__ import annotations

from pathlib import Path

from rfcore.files import check_not_inputs
from rfcore.train.checkpoint import checkpoint_dirs
from rfcore.train.config import RUN_FIELDS, TrainConfig
from rfcore.train.validation import NAMED_SETS
from rfcore.weights import MESH_DECODER_FILE, resolve_weights

OUTPUT_FILES = ("log.jsonl", "weights.safetensors", "mesh_decoder.safetensors")
"""Files a run writes (or rewrites) in ``out``, besides ``checkpoints/``."""


def check_outputs(train_cfg: TrainConfig) -> None:
    """Refuse a run whose output files would overwrite its data or initial weights (:func:`rfcore.files.check_not_inputs`)."""
    labels = None if train_cfg.data == "synthetic" else Path(train_cfg.data)
    inputs = [labels / "label.txt" if labels is not None and labels.is_dir() else labels]
    if train_cfg.init_weights is not None:
        inputs.append(resolve_weights(train_cfg.init_weights, "--init-weights"))
    if train_cfg.mesh and train_cfg.mesh_decoder is not None:
        inputs.append(resolve_weights(train_cfg.mesh_decoder, "--mesh-decoder", MESH_DECODER_FILE))
    if train_cfg.val not in (None, *NAMED_SETS):
        inputs.append(Path(train_cfg.val))
    out = Path(train_cfg.out)
    check_not_inputs(inputs, [out / name for name in OUTPUT_FILES], folders=[out / "checkpoints"])


def check_run_folder(train_cfg: TrainConfig) -> None:
    """Refuse to start over a run: ``out`` with checkpoints needs ``resume``, a finished run a new ``out``.

    A run whose checkpoints were pruned, or that stopped before its first, keeps its log and weights: a new
    run never empties the folder. ``resume`` with no checkpoint to resume is refused too.

    Raises:
        ValueError: Saying which of ``--resume`` or a new ``--out`` applies.
    """
    out = Path(train_cfg.out)
    found = checkpoint_dirs(out)
    results = [name for name in OUTPUT_FILES if (out / name).exists()]
    if train_cfg.resume and not found:
        what = (f" (only a finished run: {', '.join(results)}): choose a new --out" if results
                else ": drop --resume to start a new run there")
        raise ValueError(f"--resume: {out} holds no checkpoint to continue from{what}")
    if not train_cfg.resume and found:
        raise ValueError(f"{out} already holds checkpoints (newest {found[-1].name}); "
                         "pass --resume to continue that run, or choose another --out")
    if not train_cfg.resume and results:
        raise ValueError(f"{out} holds a finished run ({', '.join(results)}) without a checkpoint to resume: "
                         "choose a new --out (rfcore never empties a run folder)")


def check_resumable(state: dict, train_cfg: TrainConfig, world_size: int, folder: Path) -> None:
    """Refuse to resume a checkpoint whose run had other settings.

    Raises:
        ValueError: Listing the settings that differ, or a different number of ranks.
    """
    saved, now = state["config"], train_cfg.to_dict()
    differ = [f"{name}: {saved.get(name)!r} then, {now[name]!r} now"
              for name in now if name not in RUN_FIELDS and saved.get(name) != now[name]]
    if differ:
        raise ValueError(f"cannot resume {folder}: it was trained with other settings ({'; '.join(differ)})")
    if state["world_size"] != world_size:
        raise ValueError(f"cannot resume {folder}: it was trained on {state['world_size']} ranks, now {world_size}")
