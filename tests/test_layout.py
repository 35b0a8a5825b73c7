"""The package's layout: imports point down, never in a circle, and each shared fact has one home.

The import graph is read from the source with ``ast`` (every ``import`` anywhere in a module, also inside
functions), so the tests see what a reader clicking through the code sees.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "rfcore"
ON_TOP = ("rfcore.viz", "rfcore.bench", "rfcore.cli")
"""The layers that sit on the core: pictures, benchmarks, the command line."""


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


def is_on_top(module: str) -> bool:
    return any(module == layer or module.startswith(layer + ".") for layer in ON_TOP) or module == "rfcore.__main__"


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """``(core module, module on top)`` pairs where the core imports a layer that sits on it."""
    return sorted((module, target) for module, targets in graph.items() if not is_on_top(module)
                  for target in targets if is_on_top(target))


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


def test_the_core_never_imports_pictures_benchmarks_or_the_command_line():
    assert upward_imports(import_graph()) == []


def test_there_is_no_import_circle():
    assert find_circle(import_graph()) is None


def test_the_checks_catch_an_upward_import_and_a_circle(tmp_path):
    package = tmp_path / "rfcore"
    for name, source in {
        "__init__.py": "",
        "anchors.py": "from rfcore.viz.anchors import picture\n",  # upward
        "boxes.py": "import rfcore.loss\n",
        "loss.py": "def f():\n    from rfcore import boxes\n",  # circle through a function-level import
        "viz/__init__.py": "",
        "viz/anchors.py": "import numpy\n",
    }.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(source)
    graph = import_graph(package)
    assert upward_imports(graph) == [("rfcore.anchors", "rfcore.viz.anchors")]
    assert find_circle(graph) == ["rfcore.boxes", "rfcore.loss", "rfcore.boxes"]


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
             if any(("__file__" in line and '"assets"' in line) or "resources.files(" in line
                    for line in path.read_text().splitlines())]
    assert homes == ["rfcore/assets/__init__.py"]
