"""The shared core of the checkers: run cases, compare answers, say what is wrong.

A checker runs the student's function and a reference on the same :class:`Case` inputs, compares the
two answers with a comparison function (:func:`compare_tensors` unless told otherwise) and returns a
:class:`Verdict` after printing its message. It never raises because of the student's code
(:func:`call_student`): a stub that raises ``NotImplementedError`` gets "not implemented yet"; any other
exception (even ``SystemExit``, ``KeyboardInterrupt`` or one whose message cannot be printed), a case
that runs over :data:`TIME_LIMIT` seconds, or a wrong answer (values, shape, type or dtype) gets the case,
the inputs, the expected and the obtained values.

The time limit is a ``SIGALRM`` timer (``signal.setitimer``) where there is one and the checker runs in
the main thread, as in a notebook: it interrupts a Python loop that never ends between two bytecodes,
though not a single C call that never returns. Elsewhere (Windows, a worker thread) the function runs in
a daemon thread that the checker stops waiting for; that thread cannot be killed and runs on unseen.
"""

from __future__ import annotations

import copy
import inspect
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

PASSED, NOT_IMPLEMENTED, WRONG, RAISED, TIMED_OUT = (
    "passed", "not implemented yet", "wrong", "raised an error", "timed out")
"""The five outcomes of a check."""

TIME_LIMIT = 20.0
"""Seconds the student's function may take on one case; the reference solutions take milliseconds."""

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
    time_limit: float = TIME_LIMIT,
) -> Verdict:
    """Check ``student`` against ``reference`` on every case, print the verdict and return it.

    Each function gets its own deep copy of the arguments, so a student's function that writes into its
    inputs cannot change the reference's answer. The first case that fails decides the verdict.

    A checker is about ten lines in its topic's module: a reference with the exercise's signature (rfcore's
    function or a thin wrapper), a few :class:`Case` s from easy to random (:func:`seeded`), each with a hint
    naming the mistake it catches, then this function::

        def check_cxcywh(student) -> Verdict:
            cases = [
                Case("a unit box", (torch.tensor([[0.0, 0.0, 1.0, 1.0]]),), "the centre is the mean of the corners"),
                Case("five random boxes", (random_boxes(5, seeded(10)),)),
            ]
            return run_check("cxcywh", student, xyxy_to_cxcywh, cases)

    The solution goes in :mod:`rfcore.exercises.solutions` under the exercise's name, an entry in
    :data:`rfcore.exercises.ANSWERED_BY`, and the typical mistake in the list of
    ``tests/exercises/test_exercises.py``, which runs every ``check_*`` on its solution, a stub and a
    function that raises. Answers that are not tensors, arrays or numbers need their own ``compare``.

    Args:
        exercise: Name printed in the verdict.
        student: The function the student wrote.
        reference: rfcore's function (or a reference built from rfcore), same signature.
        cases: Inputs to try, easy ones first.
        compare: Comparison of answers; :func:`compare_tensors` by default.
        time_limit: Seconds the student's function may take per case (:func:`call_student`).

    Returns:
        The :class:`Verdict`.
    """
    compare = compare or compare_tensors
    verdict = _first_failure(exercise, student, reference, cases, compare, time_limit) or Verdict(
        exercise, PASSED, f"{exercise}: passed all {len(cases)} cases: {'; '.join(c.name for c in cases)}."
    )
    print(verdict.message)
    return verdict


class TimeLimitReached(BaseException):
    """The student's function ran over its time limit.

    A ``BaseException``, so a catch-all ``except Exception`` in the student's code cannot swallow it.
    """


def call_student(function: Callable, args: tuple, time_limit: float = TIME_LIMIT) -> tuple[Any, BaseException | None]:
    """Call ``function(*args)`` within ``time_limit`` seconds, turning whatever happens into a value or an error.

    Returns:
        ``(answer, None)``, or ``(None, error)`` for anything it raised (any ``BaseException``) and
        :class:`TimeLimitReached` when it ran over the limit (see the module docstring for how).
    """
    if hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread():
        return _call_with_timer(function, args, time_limit)
    return _call_in_thread(function, args, time_limit)


def _call_with_timer(function: Callable, args: tuple, time_limit: float) -> tuple[Any, BaseException | None]:
    def over_time(signum, frame):
        raise TimeLimitReached

    started = time.monotonic()
    handler = signal.signal(signal.SIGALRM, over_time)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, time_limit)  # an enclosing timer (pytest-timeout) is restored
    try:
        return function(*args), None
    except BaseException as error:  # the student's code: anything becomes a verdict
        return None, error
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, handler)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - started), 1e-3))


def _call_in_thread(function: Callable, args: tuple, time_limit: float) -> tuple[Any, BaseException | None]:
    outcome: list = [None, TimeLimitReached()]

    def run() -> None:
        try:
            outcome[:] = [function(*args), None]
        except BaseException as error:  # the student's code: anything becomes a verdict
            outcome[:] = [None, error]

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(time_limit)
    return (None, TimeLimitReached()) if worker.is_alive() else tuple(outcome)


def _first_failure(exercise, student, reference, cases, compare, time_limit=TIME_LIMIT) -> Verdict | None:
    for case in cases:
        expected = reference(*copy.deepcopy(case.args))
        got, error = call_student(student, copy.deepcopy(case.args), time_limit)
        if isinstance(error, NotImplementedError):
            return Verdict(exercise, NOT_IMPLEMENTED,
                           f"{exercise}: not implemented yet. Replace the `raise NotImplementedError` with your "
                           "code and run the cell again.")
        if isinstance(error, TimeLimitReached):
            problem = (f"your function did not return within {time_limit:g} s: is there a loop that never ends, "
                       "or a loop over every element where a tensor operation would do?")
            return Verdict(exercise, TIMED_OUT, _describe(exercise, case, reference, problem))
        if error is not None:
            return Verdict(exercise, RAISED, _describe(exercise, case, reference, _raised(error)))
        try:
            difference = compare(expected, got)
        except Exception as failure:  # an answer whose comparison fails (a strange object) is wrong, not a crash
            difference = f"your answer could not be compared with the expected one ({_raised(failure)})"
        if difference:
            return Verdict(exercise, WRONG, _describe(exercise, case, reference, difference))
    return None


def _raised(error: BaseException) -> str:
    """``"your function raised ValueError: ..."``, even for an exception whose message cannot be printed."""
    try:
        message = str(error)
    except Exception:
        message = "(its message could not be printed)"
    if isinstance(error, SystemExit):
        return f"your function called sys.exit({message}): return the answer instead"
    if isinstance(error, KeyboardInterrupt):
        return "your function was interrupted (KeyboardInterrupt: Ctrl-C or the notebook's stop button)"
    return f"your function raised {type(error).__name__}: {message}"


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
    try:
        return repr(value)
    except Exception:  # a student's object whose repr fails
        return f"a {type(value).__name__} that cannot be printed"


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
    for kind in (torch.Tensor, np.ndarray):
        if isinstance(expected, kind) and not isinstance(got, kind):
            return f"expected {format_value(expected)}, got {type(got).__name__} {format_value(got):.80}"
    if difference := _dtype_difference(expected, got):
        return difference
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


def _dtype_difference(expected, got) -> str | None:
    """For tensors and arrays: booleans and integers need the exact dtype, floating point any floating dtype."""
    if not isinstance(expected, (torch.Tensor, np.ndarray)):
        return None
    if expected.dtype == got.dtype or (_is_float(expected) and _is_float(got)):
        return None
    return f"expected dtype {expected.dtype}, got {got.dtype} ({format_value(got):.80})"


def _is_float(value) -> bool:
    return value.is_floating_point() if isinstance(value, torch.Tensor) else value.dtype.kind == "f"


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
