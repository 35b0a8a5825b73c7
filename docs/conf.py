"""Sphinx settings of the rfcore book: the saved notebooks (never executed here) and the API reference.

Build it with ``python tools/build_book.py`` (warnings are errors), which stages this folder with
``notebooks/`` and one ``api/<module>.rst`` page per module inside it; the site lands in ``build/book/``.
"""

import importlib
import types

project = "rfcore"
author = "the rfcore authors"
release = version = "0.1.0"

extensions = [
    "myst_nb",  # reads .ipynb and .md (it loads myst_parser itself)
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # Google-style docstrings
    "sphinx.ext.viewcode",  # each object's source, as the notebooks' show_source shows it
    "sphinx-mathjax-offline",  # MathJax served from the site itself, so formulas render without a network
]

root_doc = "index"
exclude_patterns = ["_build", "**/.ipynb_checkpoints"]

# The notebooks are shown as committed, with their outputs: never run during the build.
nb_execution_mode = "off"
# The explorers' widget state is not saved with the notebooks, so show the still picture stored beside it.
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

autodoc_default_options = {"members": True, "ignore-module-all": True, "member-order": "bysource"}
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False  # "Returns: One dict per preset: ..." reads as prose, not as a type to link

viewcode_follow_imported_members = False  # link each object to the module it is documented in

html_theme = "sphinx_book_theme"
html_title = "rfcore"
html_theme_options = {
    "show_navbar_depth": 1,
    "show_toc_level": 2,
    "use_download_button": True,
}


# ---------------------------------------------------------------- every cross-reference resolves
# nitpicky: a reference Sphinx cannot resolve is a warning, hence an error. References outside rfcore (torch,
# numpy, the standard library) would need intersphinx, which downloads the other projects' inventories at
# build time; the build stays offline, so those are shown as plain names and only rfcore's own are checked.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(?!rfcore\b)[A-Za-z_]\w*\.[\w.]+"),  # a dotted name outside rfcore
    (r"py:mod", r"(?!rfcore\b)\w+"),  # a module outside rfcore
    (r"py:.*", (r"int|float|str|bool|bytes|dict|list|tuple|set|object|type|None|Any|Callable|Iterable|Iterator|"
                r"Mapping|Sequence|Path|Module|str \| None")),  # builtins and typing names as written in hints
]


def canonical_name(target: str, module: str | None) -> tuple[str | None, object]:
    """Where the object ``target`` names (seen from ``module``) is defined, following re-exports and imports
    (``Face`` in rfcore.align -> ``rfcore.postprocess.Face``; a module shadowed by a function is still found),
    and the object itself."""
    for name in ([f"{module}.{target}"] if module else []) + [target]:
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                continue
            found, rest = obj.__name__, []  # the deepest object that knows where it is defined, and what follows
            try:
                for part in parts[i:]:
                    obj = getattr(obj, part)
                    owner, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
                    if isinstance(obj, types.ModuleType):
                        found, rest = obj.__name__, []
                    elif isinstance(owner, str) and isinstance(qualname, str):
                        found, rest = f"{owner}.{qualname}", []
                    else:
                        rest.append(part)
            except AttributeError:
                break
            return ".".join([found, *rest]), obj
    return None, None


def defines(name: str, obj: object) -> bool:
    """Whether the module part of ``name`` holds ``obj`` under its last part (a constant imported elsewhere)."""
    module, _, last = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module), last) is obj
    except (ImportError, AttributeError):
        return False


def resolve_rfcore_name(app, env, node, contnode):
    """Resolve a reference to an rfcore object by where it is defined, else by its last name when one documented
    object has it (or one holds the very object referred to)."""
    if node.get("refdomain") != "py":
        return None
    domain = env.get_domain("py")
    target = node["reftarget"]
    found, obj = canonical_name(target, node.get("py:module"))
    if found not in domain.objects and found not in domain.modules:
        last = target.rsplit(".", 1)[-1]
        matches = [name for name in domain.objects if name.startswith("rfcore.") and name.rsplit(".", 1)[-1] == last]
        if len(matches) > 1 and obj is not None:
            matches = [name for name in matches if defines(name, obj)]
        found = matches[0] if len(matches) == 1 else None
    if found is None:
        return None
    results = domain.resolve_any_xref(env, node["refdoc"], app.builder, found, node, contnode)
    return results[0][1] if results else None


def skip_named_tuple_fields(app, what, name, obj, skip, options):
    """A NamedTuple's fields are documented by its "Attributes:" section, not again as "Alias for field number"."""
    return True if (getattr(obj, "__doc__", None) or "").startswith("Alias for field number") else None


_ORIGINAL: dict[str, list[str]] = {}


def remember_docstring(app, what, name, obj, options, lines):
    if what in ("data", "attribute", "property"):
        _ORIGINAL[name] = list(lines)


def keep_docstring(app, what, name, obj, options, lines):
    """Undo napoleon on a constant's, attribute's or property's docstring: rfcore's read "What it is: more", which
    napoleon would turn into a type named "What it is"."""
    if name in _ORIGINAL:
        lines[:] = _ORIGINAL.pop(name)


def setup(app):
    app.connect("autodoc-process-docstring", remember_docstring, priority=100)
    app.connect("autodoc-process-docstring", keep_docstring, priority=900)
    app.connect("autodoc-skip-member", skip_named_tuple_fields)
    app.connect("missing-reference", resolve_rfcore_name)
