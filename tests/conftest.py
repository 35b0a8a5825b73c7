"""Shared test fixtures."""

import ast
from pathlib import Path

import pytest
from builders import save_mesh_run, write_faces_folder

from rfcore.mesh.hierarchy import build_hierarchy
from rfcore.mesh.template import face_template

DATA = Path(__file__).parent / "files"

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


def pytest_collection_modifyitems(items):
    """Notebooks (nbval) run for a minute or more each: they are ``slow``."""
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def public_layout():
    """``preset -> {key: shape}`` of the public biubug6 checkpoints."""
    return {preset: read_key_list(path) for preset, path in PUBLIC_KEY_FILES.items()}


@pytest.fixture(scope="session")
def mesh_weights(tmp_path_factory):
    """``weights.safetensors`` of a random ``--mesh`` run, ``mesh_decoder.safetensors`` beside it."""
    return save_mesh_run(tmp_path_factory.mktemp("mesh_run"))


@pytest.fixture(scope="module")
def faces_folder(tmp_path_factory):
    """A six-image WIDER FACE style folder of noise with two faces each (:func:`builders.write_faces_folder`)."""
    return write_faces_folder(tmp_path_factory.mktemp("faces"))


@pytest.fixture(scope="module")
def template():
    """The built-in face mesh, shared by the mesh test modules."""
    return face_template()


@pytest.fixture(scope="module")
def hierarchy():
    """The default mesh hierarchy, shared by the mesh test modules."""
    return build_hierarchy()


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module: small inputs run fastest so, and two threads can crawl when
    other jobs share the machine's cores."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
