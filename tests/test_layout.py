"""The package's layout: every import points down a declared order of rooms, never in a circle, and each shared
fact has one home.

The import graph is read from the source with ``ast`` (every ``import`` anywhere in a module, also inside
functions), so the tests see what a reader clicking through the code sees.
"""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "rfcore"
LAYERS = (
    "files", "progress", "headers", "download",  # utilities: safe writing, progress, image file headers, fetching
    "config", "detect_config", "anchors", "boxes", "matching", "image",  # settings, geometry, targets, input
    "model", "loss", "mesh",  # the network, Eq. 1 and the mesh library
    "assets", "weights_io", "weights", "convert", "export", "onnx_backend",  # files of weights and graphs, the ONNX runtime
    "postprocess", "detector",  # inference
    "widerface_archives", "data", "quantize", "evaluation", "train",  # data: fetched, read; calibration, measuring, learning
    "align", "video_files", "video_threads", "video",  # applications of detection
    "exercises", "viz", "bench", "cli", "__main__",  # on top: checks, pictures, timings, the command line
)
"""The package's rooms from the bottom up (root modules and sub-packages): each imports only rooms below it."""


def module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """``module -> rfcore modules it imports``, for every module of ``package``."""
    modules = {module_name(path, package): path for path in package.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                imported.update(resolve_from(node, name, is_package, modules))
        graph[name] = {target for target in imported if target in modules and target != name}
    return graph


def resolve_from(node: ast.ImportFrom, module: str, is_package: bool, modules) -> set[str]:
    """Modules named by ``from X import a, b``: ``X`` and, where they are modules, ``X.a`` and ``X.b``."""
    if node.level:  # relative import
        base = module.split(".")[: len(module.split(".")) - node.level + is_package]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    found = {source}
    found.update(f"{source}.{alias.name}" for alias in node.names if f"{source}.{alias.name}" in modules)
    return found


def room(module: str) -> str:
    """The sub-package or root module ``module`` belongs to: ``rfcore.mesh.camera -> mesh``, ``rfcore -> rfcore``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def upward_imports(graph: dict[str, set[str]], layers: tuple[str, ...] = LAYERS) -> list[tuple[str, str]]:
    """``(module, imported module)`` pairs whose room does not sit below the importer's room.

    The package's front page (``rfcore/__init__.py``) may import any room, as a package's ``__init__`` imports
    its own members, and importing it (``from rfcore import boxes``) names no room. A module in a room that
    ``layers`` does not list is an error: a new room is placed first.
    """
    rank = {name: level for level, name in enumerate(layers)}
    unplaced = sorted({room(module) for module in graph} - set(rank) - {"rfcore"})
    assert not unplaced, f"rooms missing from LAYERS: {unplaced}"
    return sorted((module, target) for module, targets in graph.items() if module != "rfcore"
                  for target in targets - {"rfcore"}
                  if room(target) != room(module) and rank[room(target)] > rank[room(module)])


def room_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The import graph between rooms (the front page left out)."""
    rooms: dict[str, set[str]] = {}
    for module, targets in graph.items():
        if module != "rfcore":
            rooms.setdefault(room(module), set()).update(room(t) for t in targets - {"rfcore"} if room(t) != room(module))
    return rooms


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (its modules in order, the first repeated at the end), or ``None``.

    A package's ``__init__`` importing its own submodules is not a circle of the code's ideas, so edges from a
    package to its own members are left out.
    """
    def edges(module):
        return sorted(t for t in graph[module] if not t.startswith(module + "."))

    state, stack = {}, []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for target in edges(module):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state and (circle := visit(target)):
                return circle
        state[module] = "done"
        stack.pop()
        return None

    for module in sorted(graph):
        if module not in state and (circle := visit(module)):
            return circle
    return None


def test_every_import_points_down():
    assert upward_imports(import_graph()) == []


def test_there_is_no_import_circle_between_modules_or_rooms():
    graph = import_graph()
    assert find_circle(graph) is None
    assert find_circle(room_graph(graph)) is None


@pytest.mark.slow
def test_the_core_does_not_load_pictures_or_widgets():
    code = (
        "import sys, rfcore.config, rfcore.anchors, rfcore.boxes, rfcore.matching, rfcore.assets;"
        "loaded = [m for m in ('rfcore.viz', 'rfcore.viz.widgets', 'ipywidgets', 'matplotlib') if m in sys.modules];"
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_checks_catch_an_upward_import_and_a_circle(tmp_path):
    package = tmp_path / "rfcore"
    for name, source in {
        "__init__.py": "from rfcore.viz.anchors import picture\n",  # the front page may import any room
        "anchors.py": "from rfcore.viz.anchors import picture\n",  # upward
        "boxes.py": "import rfcore.loss\n",  # upward too, and half of a circle
        "loss.py": "def f():\n    from rfcore import boxes\n",  # circle through a function-level import
        "mesh/__init__.py": "from rfcore.mesh import camera\n",
        "mesh/camera.py": "def g():\n    from rfcore.train.mesh_head import h\n",  # the mesh library reaching up
        "train/__init__.py": "",
        "train/mesh_head.py": "from rfcore.mesh.camera import g\n",
        "viz/__init__.py": "",
        "viz/anchors.py": "import numpy\n",
    }.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(source)
    graph = import_graph(package)
    layers = ("anchors", "boxes", "loss", "mesh", "train", "viz")
    assert upward_imports(graph, layers) == [("rfcore.anchors", "rfcore.viz.anchors"), ("rfcore.boxes", "rfcore.loss"),
                                             ("rfcore.mesh.camera", "rfcore.train.mesh_head")]
    assert find_circle(graph) == ["rfcore.boxes", "rfcore.loss", "rfcore.boxes"]
    assert find_circle(room_graph(graph)) == ["boxes", "loss", "boxes"]
    with pytest.raises(AssertionError, match=r"missing from LAYERS: \['train'\]"):
        upward_imports(graph, ("anchors", "boxes", "loss", "mesh", "viz"))


MAX_MODULE_DOCSTRING = 20
"""Lines a module docstring may take, quotes included: what the module is for and offers (about 15 is the aim)."""

TRACKER_REFERENCE = re.compile(r"\bissues? #?\d+", re.IGNORECASE)
"""Text like "issue 16": history belongs in commit messages, not in code."""


def docstring_findings(package: Path = PACKAGE, limit: int = MAX_MODULE_DOCSTRING) -> list[str]:
    """Modules whose docstring runs over ``limit`` lines, and lines that name a tracker issue."""
    found = []
    for path in sorted(package.rglob("*.py")):
        source = path.read_text()
        body = ast.parse(source, str(path)).body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            lines = body[0].end_lineno - body[0].lineno + 1
            if lines > limit:
                found.append(f"{module_name(path, package)}: module docstring of {lines} lines")
        found += [f"{module_name(path, package)}:{number}: {match.group()}"
                  for number, line in enumerate(source.splitlines(), 1) if (match := TRACKER_REFERENCE.search(line))]
    return found


def test_module_docstrings_are_short_and_name_no_tracker_issue():
    assert docstring_findings() == []


def test_the_docstring_check_catches_a_long_docstring_and_an_issue_number(tmp_path):
    package = tmp_path / "rfcore"
    package.mkdir()
    (package / "short.py").write_text('"""One line."""\n\nX = 1  # fine\n')
    (package / "long.py").write_text('"""Title.\n' + "more\n" * 20 + '"""\n')
    (package / "history.py").write_text('"""Fine."""\n\n# faster since issue 16\n')
    assert docstring_findings(package) == ["rfcore.history:3: issue 16", "rfcore.long: module docstring of 22 lines"]


def module_constants(package: Path = PACKAGE) -> list[tuple[str, str, object]]:
    """``(module, name, value)`` of every module-level ``NAME = literal`` in ``package``."""
    found = []
    for path in package.rglob("*.py"):
        for node in ast.parse(path.read_text(), str(path)).body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, ast.AnnAssign) and node.value is not None else []
            for target in targets:
                if isinstance(target, ast.Name) and target.id.isupper():
                    try:
                        found.append((module_name(path, package), target.id, ast.literal_eval(node.value)))
                    except ValueError:
                        pass
    return found


def square_side(name: str, value) -> int | None:
    """The side of a ``*CROP*`` size given as ``n`` or ``(n, n)``; ``None`` for any other constant."""
    if "CROP" not in name:
        return None
    if isinstance(value, tuple) and len(set(value)) == 1:
        value = value[0]
    return value if isinstance(value, int) else None


@pytest.mark.parametrize("fact, key", [
    ("the landmark flip order", lambda name, value: tuple(value) if value in ((1, 0, 2, 4, 3), [1, 0, 2, 4, 3])
     else None),
    ("a crop size", square_side),
])
def test_each_shared_fact_has_one_home(fact, key):
    homes = {}
    for module, name, value in module_constants():
        if (found := key(name, value)) is not None:
            homes.setdefault(found, []).append(f"{module}.{name}")
    assert homes, f"no constant holds {fact}"
    for value, names in homes.items():
        assert len(names) == 1, f"{fact} {value} is defined {len(names)} times: {names}"


def test_the_assets_folder_has_one_home():
    homes = [path.relative_to(PACKAGE.parent).as_posix() for path in PACKAGE.rglob("*.py")
             if any(("__file__" in line and '"assets"' in line) or "resources.files(__name__" in line
                    or 'resources.files("rfcore' in line for line in path.read_text().splitlines())]
    assert homes == ["rfcore/assets/__init__.py"]
