"""Exercises with checkers: the student writes a small function, a checker says whether it is right.

A notebook cell holds a stub and the checker call::

    from rfcore.exercises.anchors import check_iou

    def iou(boxes1, boxes2):
        raise NotImplementedError  # your code here

    check_iou(iou)

The checker runs the student's function and rfcore's own on the same random and edge-case inputs and
prints a verdict instead of raising: "not implemented yet" for the stub, the passed cases, or the first
case that fails with its inputs, the expected and the obtained values and a hint. ``show_solution("iou")``
prints the solution from :mod:`rfcore.exercises.solutions`. Every input is drawn from a fixed seed and
numbers are rounded, so a verdict is the same on every machine.

Modules, in the order of the notebooks:

* :mod:`rfcore.exercises.check`: the shared core (:class:`~rfcore.exercises.check.Case`,
  :func:`~rfcore.exercises.check.run_check`, :func:`~rfcore.exercises.check.compare_tensors`);
* :mod:`rfcore.exercises.anchors`: IoU, the anchors of one level (notebook 01);
* :mod:`rfcore.exercises.loss`: smooth-L1 and its gradient, OHEM (notebook 02);
* :mod:`rfcore.exercises.encoding`: box and landmark targets, decoding (notebook 03);
* :mod:`rfcore.exercises.mesh`: one Chebyshev filter (notebook 04);
* :mod:`rfcore.exercises.network`: the receptive field of a stack of layers, the FPN's top-down merge
  (notebook 05);
* :mod:`rfcore.exercises.training`: the faces a crop keeps, the flip of faces, the learning-rate schedule
  (notebook 06);
* :mod:`rfcore.exercises.evaluation`: NMS, VOC AP (notebook 07);
* :mod:`rfcore.exercises.solutions`: one solution per exercise.

Adding a checker takes about ten lines in the topic's module: a reference with the exercise's
signature (rfcore's function, or a thin wrapper around it), a few :class:`~rfcore.exercises.check.Case`
inputs from easy to random (a seeded generator, :func:`~rfcore.exercises.check.seeded`), each with a hint
naming the mistake it catches, and :func:`~rfcore.exercises.check.run_check`::

    def check_cxcywh(student) -> Verdict:
        cases = [
            Case("a unit box", (torch.tensor([[0.0, 0.0, 1.0, 1.0]]),), "the centre is the mean of the corners"),
            Case("five random boxes", (random_boxes(5, seeded(10)),)),
        ]
        return run_check("cxcywh", student, xyxy_to_cxcywh, cases)

then a solution written from the formula in :mod:`rfcore.exercises.solutions` under the exercise's name
(``check_<name>`` checks ``solutions.<name>``). ``tests/exercises/test_exercises.py`` finds every ``check_*`` of the
package by itself and runs it on its solution, on a stub and on a function that raises; add the typical
mistake the checker must catch to the list of mistakes there.
Answers that are not tensors, arrays or numbers need their own ``compare(expected, got) -> str | None``.
"""

from __future__ import annotations

import inspect

from rfcore.exercises import solutions


def show_solution(name: str) -> None:
    """Print the source of the solution of exercise ``name``.

    Raises:
        ValueError: If there is no such solution; the message lists the exercises.
    """
    solution = getattr(solutions, name, None)
    if not inspect.isfunction(solution) or solution.__module__ != solutions.__name__:
        known = sorted(n for n, f in vars(solutions).items()
                       if inspect.isfunction(f) and f.__module__ == solutions.__name__)
        raise ValueError(f"no solution named {name!r}; exercises: {', '.join(known)}")
    print(inspect.getsource(solution))
