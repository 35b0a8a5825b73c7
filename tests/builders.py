"""Test data written to disk (a mesh training run's weights, WIDER FACE ground-truth ``.mat`` files), and a
training run that crashes.

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
    from rfcore.weights import save_weights

    torch.manual_seed(seed)
    detector = RetinaFace.from_config(get_config("mobilenet0.25"), mesh_head=True)
    decoder = MeshDecoder(build_hierarchy())
    with torch.no_grad():
        for param in decoder.parameters():
            param.add_(0.01 * torch.randn_like(param))
        if zero_mesh_head:
            for param in detector.MeshHead.parameters():
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
