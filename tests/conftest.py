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
