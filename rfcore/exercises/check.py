"""The shared core of the checkers: run cases, compare answers, say what is wrong.

A checker runs the student's function and a reference on the same :class:`Case` inputs, compares the
two answers with a comparison function (:func:`compare_tensors` unless told otherwise) and returns a
:class:`Verdict` after printing its message. It never raises because of the student's code: a stub
that raises ``NotImplementedError`` gets "not implemented yet", any other exception or a wrong answer
gets the case, the inputs, the expected and the obtained values.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

PASSED, NOT_IMPLEMENTED, WRONG, RAISED = "passed", "not implemented yet", "wrong", "raised an error"
"""The four outcomes of a check."""

DIGITS = 4
"""Decimals printed for numbers in verdicts; enough to see a mistake, few enough to be the same on any CPU."""

SHOWN_VALUES = 24
"""Tensors with at most this many values are printed whole in a verdict."""


@dataclass(frozen=True)
class Case:
    """One input of an exercise.

    Attributes:
        name: What the case tests, e.g. ``"boxes that touch along an edge"``.
        args: Positional arguments for the student's function and the reference.
        hint: What a failure on this case usually means; empty if nothing specific.
    """

    name: str
    args: tuple
    hint: str = ""


@dataclass(frozen=True)
class Verdict:
    """The outcome of a check.

    Attributes:
        exercise: Name of the exercise.
        status: One of :data:`PASSED`, :data:`NOT_IMPLEMENTED`, :data:`WRONG`, :data:`RAISED`.
        message: The text printed for the student.
    """

    exercise: str
    status: str
    message: str

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    def _ipython_display_(self) -> None:
        """Show nothing: the checker has printed the message already."""


Comparison = Callable[[Any, Any], "str | None"]
"""``compare(expected, got) -> None`` when they agree, else a description of the difference."""


def run_check(
    exercise: str,
    student: Callable,
    reference: Callable,
    cases: list[Case],
    compare: Comparison | None = None,
) -> Verdict:
    """Check ``student`` against ``reference`` on every case, print the verdict and return it.

    Each function gets its own deep copy of the arguments, so a student's function that writes into its
    inputs cannot change the reference's answer. The first case that fails decides the verdict.

    Args:
        exercise: Name printed in the verdict.
        student: The function the student wrote.
        reference: rfcore's function (or a reference built from rfcore), same signature.
        cases: Inputs to try, easy ones first.
        compare: Comparison of answers; :func:`compare_tensors` by default.

    Returns:
        The :class:`Verdict`.
    """
    compare = compare or compare_tensors
    verdict = _first_failure(exercise, student, reference, cases, compare) or Verdict(
        exercise, PASSED, f"{exercise}: passed all {len(cases)} cases: {'; '.join(c.name for c in cases)}."
    )
    print(verdict.message)
    return verdict


def _first_failure(exercise, student, reference, cases, compare) -> Verdict | None:
    for case in cases:
        expected = reference(*copy.deepcopy(case.args))
        try:
            got = student(*copy.deepcopy(case.args))
        except NotImplementedError:
            return Verdict(exercise, NOT_IMPLEMENTED,
                           f"{exercise}: not implemented yet. Replace the `raise NotImplementedError` with your "
                           "code and run the cell again.")
        except Exception as error:  # the student's bug, reported rather than raised
            problem = f"your function raised {type(error).__name__}: {error}"
            return Verdict(exercise, RAISED, _describe(exercise, case, reference, problem))
        difference = compare(expected, got)
        if difference:
            return Verdict(exercise, WRONG, _describe(exercise, case, reference, difference))
    return None


def _describe(exercise: str, case: Case, reference: Callable, problem: str) -> str:
    """The failure message: the case, its inputs named as the reference names them, the problem, the hint."""
    names = _argument_names(reference, len(case.args))
    inputs = "\n".join(f"    {name} = {format_value(arg)}" for name, arg in zip(names, case.args))
    hint = f"\n  hint: {case.hint}" if case.hint else ""
    return f"{exercise}: failed on the case '{case.name}'.\n  inputs:\n{inputs}\n  {problem}{hint}"


def _argument_names(function: Callable, count: int) -> list[str]:
    """The names of ``function``'s first ``count`` parameters, or ``argument 1``, ... if it has no signature."""
    try:
        names = list(inspect.signature(function).parameters)[:count]
    except (TypeError, ValueError):
        names = []
    return names if len(names) == count else [f"argument {i + 1}" for i in range(count)]


def format_value(value) -> str:
    """A short, rounded description of an argument or answer: shape and, if small, the values."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
        kind = "tensor" if isinstance(value, torch.Tensor) else "array"
        shown = f" {_rounded(array)}" if array.size <= SHOWN_VALUES else ""
        return f"{kind} {tuple(array.shape)} {array.dtype}{shown}"
    if isinstance(value, float):
        return repr(round(value, DIGITS))
    if isinstance(value, (tuple, list)) and len(value) <= SHOWN_VALUES:
        return "(" + ", ".join(format_value(v) for v in value) + ")"
    return repr(value)


def _rounded(array: np.ndarray):
    if array.dtype.kind == "f":
        return np.round(array.astype(np.float64), DIGITS).tolist()
    return array.tolist()


def compare_tensors(expected, got, atol: float = 1e-4, rtol: float = 1e-4) -> str | None:
    """Compare two answers made of tensors, arrays or numbers, or tuples of them.

    Args:
        expected: The reference's answer.
        got: The student's answer.
        atol, rtol: Tolerances of :func:`numpy.allclose`; booleans and integers must match exactly.

    Returns:
        ``None`` if they agree, else what differs: the type, the shape, or the first value that differs.
    """
    if isinstance(expected, tuple):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return f"expected a tuple of {len(expected)} values, got {format_value(got)}"
        for i, (e, g) in enumerate(zip(expected, got)):
            if difference := compare_tensors(e, g, atol, rtol):
                return f"in value {i} of the tuple: {difference}"
        return None
    if got is None:
        return f"expected {format_value(expected)}, got None: is a `return` missing?"
    want = _as_array(expected)
    try:
        have = _as_array(got)
    except (TypeError, ValueError, RuntimeError):
        return f"expected {format_value(expected)}, got {type(got).__name__} {got!r:.80}"
    if have.shape != want.shape:
        return f"expected shape {want.shape}, got shape {have.shape}"
    exact = want.dtype.kind in "biu"
    same = have == want if exact else np.isclose(have.astype(np.float64), want, atol=atol, rtol=rtol, equal_nan=True)
    if same.all():
        return None
    if want.ndim == 0:
        return f"expected {_rounded(want)}, got {_rounded(have)}"
    where = tuple(int(i) for i in np.argwhere(~same)[0])
    return (f"{int((~same).sum())} of {same.size} values differ; first at index {list(where)}: "
            f"expected {_rounded(want[where])}, got {_rounded(have[where])}\n"
            f"  expected {format_value(expected)}\n  got      {format_value(got)}")


def _as_array(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"not a number array: {array.dtype}")
    return array.astype(np.float64) if array.dtype.kind == "f" else array


def seeded(seed: int) -> torch.Generator:
    """A CPU generator with a fixed seed, so every run draws the same random cases."""
    return torch.Generator().manual_seed(seed)


def random_boxes(count: int, generator: torch.Generator, extent: float = 100.0, integer: bool = False) -> torch.Tensor:
    """``(count, 4)`` float32 boxes ``(x1, y1, x2, y2)`` inside ``[0, extent]`` with positive size.

    Args:
        count: Number of boxes.
        generator: Source of randomness (:func:`seeded`).
        extent: Side of the square that holds the boxes.
        integer: Whole-pixel corners, where a ``+1`` in a width changes the answer most.
    """
    corner = torch.rand(count, 2, generator=generator) * extent * 0.7
    size = 1 + torch.rand(count, 2, generator=generator) * extent * 0.3
    boxes = torch.cat([corner, corner + size], dim=1)
    return boxes.round() if integer else boxes
