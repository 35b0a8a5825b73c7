"""Shared test fixtures."""

import ast
from pathlib import Path

import pytest

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
