"""Test data written to disk (a mesh training run's weights, WIDER FACE ground-truth ``.mat`` files, a tiny
face folder), small training configs and runs that crash, and comparisons of their outputs.

Plain functions, imported by the test modules (``from builders import ...``);
fixtures live in ``conftest.py``.
"""

from __future__ import annotations

from pathlib import Path


def save_mesh_run(folder: Path, zero_mesh_head: bool = False, seed: int = 0) -> Path:
    """Write seeded random weights the way an ``rfcore train --mesh`` run does; return ``weights.safetensors``.

    A mesh head, and a decoder whose parameters are all perturbed (so the
    mesh is not the template); ``zero_mesh_head`` makes every mesh parameter
    0 (frontal camera, the face filling its crop).
    """
    import torch

    from rfcore.config import get_config
    from rfcore.mesh import MeshDecoder, build_hierarchy
    from rfcore.model import RetinaFace
    from rfcore.train.model import TrainingModel
    from rfcore.weights_io import save_weights

    torch.manual_seed(seed)
    detector = RetinaFace.from_config(get_config("mobilenet0.25"), mesh_head=True)
    decoder = MeshDecoder(build_hierarchy())
    with torch.no_grad():
        for param in decoder.parameters():
            param.add_(0.01 * torch.randn_like(param))
        if zero_mesh_head:
            for param in detector.mesh_head.parameters():
                param.zero_()
    for name, module in TrainingModel(detector, decoder).saved_modules().items():
        save_weights(module.state_dict(), folder / f"{name}.safetensors")
    return folder / "weights.safetensors"


def write_wider_mat(gt_dir: Path, faces: dict, subsets: dict) -> Path:
    """Write hand-made WIDER FACE ground truth in the official toolbox's cell structure with scipy.io.savemat.

    Args:
        gt_dir: Destination folder (created).
        faces: ``{"event/image": x y w h rows}`` in event order, e.g. ``{"0--Parade/a": [[1, 2, 10, 12]]}``.
        subsets: ``{"easy" | "medium" | "hard": {"event/image": [1-based face indices]}}``; images left
            out have an empty list.

    Returns:
        ``gt_dir``, holding wider_face_val.mat and wider_{easy,medium,hard}_val.mat.
    """
    import numpy as np
    from scipy.io import savemat

    def cell(items):  # an n x 1 MATLAB cell array
        array = np.empty((len(items), 1), dtype=object)
        for i, item in enumerate(items):
            array[i, 0] = item
        return array

    events = list(dict.fromkeys(key.split("/")[0] for key in faces))
    keys = [[key for key in faces if key.split("/")[0] == event] for event in events]
    gt_dir.mkdir(parents=True, exist_ok=True)
    savemat(gt_dir / "wider_face_val.mat", {
        "event_list": cell(events),
        "file_list": cell([cell([key.split("/")[1] for key in event_keys]) for event_keys in keys]),
        "face_bbx_list": cell([cell([np.array(faces[key], float).reshape(-1, 4) for key in event_keys])
                               for event_keys in keys]),
    })
    for subset in ("easy", "medium", "hard"):
        lists = subsets.get(subset, {})
        gt_list = cell([cell([np.array(lists.get(key, []), float).reshape(-1, 1) for key in event_keys])
                        for event_keys in keys])
        savemat(gt_dir / f"wider_{subset}_val.mat", {"gt_list": gt_list})
    return gt_dir


def train_until_crash(config, step: int) -> None:
    """Run :func:`rfcore.train.loop.train` with its ``train_step`` raising at call ``step``, as a crash there would."""
    import pytest

    from rfcore.train import loop as training

    real_step, calls = training.train_step, []

    def crashing(*args, **kwargs):
        calls.append(1)
        if len(calls) == step:
            raise RuntimeError("simulated crash")
        return real_step(*args, **kwargs)

    training.train_step = crashing
    try:
        with pytest.raises(RuntimeError, match="simulated crash"):
            training.train(config)
    finally:
        training.train_step = real_step


def write_faces_folder(root, count=6, seed=0):
    """``count`` noise images of 80x100 with two faces each (with landmarks) in the label.txt layout."""
    import cv2
    import numpy as np

    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(count):
        cv2.imwrite(str(root / "images" / f"{i}.png"), rng.integers(0, 256, (80, 100, 3), dtype=np.uint8))
        lines.append(f"# {i}.png")
        for _ in range(2):
            x, y, w = rng.uniform(5, 50), rng.uniform(5, 40), rng.uniform(12, 30)
            points = " ".join(f"{x + w * a:.1f} {y + w * b:.1f} 0.0"
                              for a, b in [(0.3, 0.3), (0.7, 0.3), (0.5, 0.5), (0.35, 0.75), (0.65, 0.75)])
            lines.append(f"{x:.1f} {y:.1f} {w:.1f} {1.2 * w:.1f} {points} 0.9")
    (root / "label.txt").write_text("\n".join(lines) + "\n")
    return root


def tiny_config(data, out, **overrides):
    """A :class:`rfcore.train.config.TrainConfig` of two epochs over ``data`` at 64 pixels, quiet, on one thread."""
    from rfcore.train.config import TrainConfig

    settings = dict(data=str(data), out=str(out), image_size=64, epochs=2, batch_size=2, device="cpu",
                    threads=1, quiet=True, checkpoint_every=2)
    return TrainConfig(**{**settings, **overrides})


def read_tensors(path) -> dict:
    """The tensors of a safetensors file by key."""
    from safetensors.torch import load_file

    return load_file(path)


def assert_same_tensors(a: dict, b: dict):
    """Assert two state dicts hold the same keys and bit-identical tensors."""
    import torch

    assert a.keys() == b.keys()
    different = [key for key in a if not torch.equal(a[key], b[key])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def log_terms(out):
    """The records of a run's ``log.jsonl`` without their timings."""
    import json

    lines = (out / "log.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]
