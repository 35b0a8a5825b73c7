"""Build the rfcore book: the committed notebooks and the API reference as a static website.

    python tools/build_book.py              # the site in build/book/, open build/book/index.html
    python tools/build_book.py --out DIR

Sphinx (with MyST-NB and the book theme; ``pip install -e ".[docs]"``) reads a staged copy of ``docs/``
with ``notebooks/`` beside its pages, in ``<out>-source/``: the notebooks' links to one another resolve,
and the API pages it writes (one per module) stay out of the repository. The notebooks are shown with their
saved outputs and never executed. Every warning is an error (a reference that does not resolve, a
docstring Sphinx cannot read); all of them are listed before the build fails.
"""

from __future__ import annotations

import argparse
import pkgutil
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS, NOTEBOOKS = REPO / "docs", REPO / "notebooks"


def stage(source: Path) -> None:
    """A fresh copy of ``docs/`` with ``notebooks/`` inside it, in ``source``."""
    shutil.rmtree(source, ignore_errors=True)
    skip = shutil.ignore_patterns(".ipynb_checkpoints", "screenshots", "__pycache__")
    shutil.copytree(DOCS, source, ignore=skip)
    shutil.copytree(NOTEBOOKS, source / "notebooks", ignore=skip)
    write_api_pages(source / "api")


def write_api_pages(folder: Path) -> None:
    """One page per module of rfcore (``rfcore.mesh.render.rst``: its docstring and members)."""
    import rfcore

    folder.mkdir()
    modules = pkgutil.walk_packages(rfcore.__path__, "rfcore.")
    names = ["rfcore", *(module.name for module in modules if module.name != "rfcore.__main__")]
    for name in names:
        (folder / f"{name}.rst").write_text(f"{name}\n{'=' * len(name)}\n\n.. automodule:: {name}\n")


def check_out(out: Path) -> None:
    """Refuse a site folder (or its staging folder) that is, holds or lies in a source of the book."""
    out = out.resolve()
    for path in (out, out.with_name(out.name + "-source")):
        for source in (DOCS, NOTEBOOKS, REPO / "rfcore"):
            if path == source or source in path.parents or path in source.parents:
                raise SystemExit(f"build_book: {path} would write into or over {source}, a source of the book; "
                                 "choose a folder such as build/book")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "build" / "book", help="site folder (default build/book)")
    args = parser.parse_args(argv)
    check_out(args.out)
    source = args.out.with_name(args.out.name + "-source")
    stage(source)
    from sphinx.cmd.build import build_main

    return build_main(["-W", "--keep-going", "-b", "html", "-d", str(source / ".doctrees"),
                       str(source), str(args.out)])


if __name__ == "__main__":
    sys.exit(main())
