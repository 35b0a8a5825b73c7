"""The code under the formula: a notebook cell shows the real rfcore function that implements an equation.

The source is read with :func:`inspect.getsource` when the cell runs, so the notebook and the package can
never disagree: a change to the function changes the saved output, and nbval notices.
"""

from __future__ import annotations

import inspect
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The folder that holds the ``rfcore`` package; headers name files relative to it."""


@dataclass(frozen=True)
class SourceCode:
    """Source code that Jupyter shows highlighted (as Markdown) and plain-text readers as it is.

    Attributes:
        path: File the code comes from, relative to the project (``rfcore/boxes.py``).
        code: The source text of the object.
    """

    path: str
    code: str

    def text(self) -> str:
        """The file as a comment line, then the code."""
        return f"# {self.path}\n{self.code}"

    def __repr__(self) -> str:
        return self.text()

    def _repr_markdown_(self) -> str:
        """A fenced Python block, which Jupyter, nbviewer and GitHub highlight.

        Markdown rather than highlighted HTML: its bytes do not depend on a highlighter's version, so the
        saved output compares equal on any machine.
        """
        longest = max((len(run) for run in re.findall(r"`+", self.code)), default=0)
        fence = "`" * max(3, longest + 1)
        return f"{fence}python\n{self.text()}{fence}\n"


def show_source(obj) -> SourceCode:
    """The source of a function, class, method or module, for display in a notebook.

    Args:
        obj: A Python object defined in a source file, e.g. ``rfcore.boxes.encode_boxes``.

    Returns:
        A :class:`SourceCode`; its ``repr`` is the plain code, Jupyter renders it as a highlighted block.

    Raises:
        TypeError: If ``obj`` has no Python source (a built-in, a number, an instance).
    """
    obj = inspect.unwrap(obj)  # a decorated function (``@torch.no_grad()``) is shown from its own file
    try:
        code = inspect.getsource(obj)
        file = Path(inspect.getsourcefile(obj)).resolve()
    except (TypeError, OSError) as error:
        raise TypeError(f"show_source: {obj!r:.80} has no Python source to show ({error})") from None
    path = file.relative_to(ROOT).as_posix() if file.is_relative_to(ROOT) else file.name
    return SourceCode(path=path, code=textwrap.dedent(code))  # a method loses its class's indentation
