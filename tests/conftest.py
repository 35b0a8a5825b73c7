"""Shared test fixtures."""

import ast
from pathlib import Path

import pytest

from rfcore.mesh.hierarchy import build_hierarchy
from rfcore.mesh.template import face_template

DATA = Path(__file__).parent / "data"

PUBLIC_KEY_FILES = {
    "mobilenet0.25": DATA / "biubug6-mnet025-keys.txt",
    "resnet50": DATA / "biubug6-resnet50-keys.txt",
}
"""Copies of shared/biubug6-*-keys.txt: state_dict keys and shapes of the public checkpoints."""


def read_key_list(path: Path) -> dict[str, tuple[int, ...]]:
    """Parse ``key (shape)`` lines, skipping ``#`` comments, in file order."""
    layout = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, shape = line.split(" ", 1)
            layout[key] = tuple(ast.literal_eval(shape))
    return layout


@pytest.fixture(scope="session")
def public_layout():
    """``preset -> {key: shape}`` of the public biubug6 checkpoints."""
    return {preset: read_key_list(path) for preset, path in PUBLIC_KEY_FILES.items()}


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
    from rfcore.train_model import TrainingModel
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


@pytest.fixture(scope="session")
def mesh_weights(tmp_path_factory):
    """``weights.safetensors`` of a random ``--mesh`` run, ``mesh_decoder.safetensors`` beside it."""
    return save_mesh_run(tmp_path_factory.mktemp("mesh_run"))


@pytest.fixture(scope="module")
def template():
    """The built-in face mesh, shared by the mesh test modules."""
    return face_template()


@pytest.fixture(scope="module")
def hierarchy():
    """The default mesh hierarchy, shared by the mesh test modules."""
    return build_hierarchy()


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


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module: small inputs run fastest so, and two threads can crawl when
    other jobs share the machine's cores."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
