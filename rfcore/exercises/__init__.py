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
* :mod:`rfcore.exercises.anchors`: IoU, the anchors of one level; anchors with aspect ratios, DIoU,
  densified anchors (notebook 01);
* :mod:`rfcore.exercises.loss`: smooth-L1 and its gradient, OHEM; the focal, quality focal, GIoU
  and CIoU losses (notebook 02);
* :mod:`rfcore.exercises.encoding`: box and landmark targets, decoding; side distances, the Wing loss,
  the soft-argmax of a heat map (notebook 03);
* :mod:`rfcore.exercises.mesh`: one Chebyshev filter; its gain, Kipf and Welling's graph convolution
  (notebook 04);
* :mod:`rfcore.exercises.network`: the receptive field of a stack of layers and its centre, the FPN's
  top-down merge, nearest and bilinear (notebook 05);
* :mod:`rfcore.exercises.training`: the faces a crop keeps, the flip of faces, the learning-rate schedule
  and two variants, cosine annealing and warm restarts (notebook 06);
* :mod:`rfcore.exercises.evaluation`: NMS, box voting, the protocol's matching, VOC AP; soft-NMS, DIoU-NMS,
  the 11-point AP, the inter-ocular NME, Matrix NMS (notebook 07);
* :mod:`rfcore.exercises.detector`: matching with the forced best anchor, Eq. 1 for one image, decoding
  (notebook 08);
* :mod:`rfcore.exercises.solutions`: one solution per exercise;
* :mod:`rfcore.exercises.capstone`: the learner's parts train and evaluate a detector (notebook 08), and
  :mod:`rfcore.exercises.mistakes`: one plausible mistake per part.

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
Every exercise also gets an entry in :data:`ANSWERED_BY`, so that no notebook shows its answer before asking.
"""

from __future__ import annotations

import inspect

from rfcore.exercises import solutions

ANSWERED_BY: dict[str, tuple[str, ...]] = {
    "iou": (),
    "level_anchors": ("rfcore.anchors.AnchorLevel.anchors",),
    "ratio_anchors": (),
    "diou": (),
    "dense_anchors": (),
    "smooth_l1": (),
    "smooth_l1_grad": (),
    "ohem_select": ("rfcore.loss.ohem_select",),
    "focal_loss": (),
    "giou_loss": (),
    "ciou_loss": (),
    "quality_focal_loss": (),
    "encode_boxes": ("rfcore.boxes.encode_boxes",),
    "encode_landmarks": ("rfcore.boxes.encode_landmarks",),
    "decode_landmarks": ("rfcore.boxes.decode_landmarks",),
    "encode_ltrb": (),
    "wing_loss": (),
    "soft_argmax": (),
    "chebyshev_filter": ("rfcore.mesh.chebconv.chebyshev_recursion", "rfcore.mesh.chebconv.ChebConv.chebyshev_terms",
                         "rfcore.mesh.chebconv.ChebConv.forward"),
    "chebyshev_gain": ("rfcore.mesh.chebconv.chebyshev_response",),
    "gcn_layer": (),
    "receptive_field": ("rfcore.model.receptive.ReceptiveField.after", "rfcore.model.receptive.stack_receptive_field"),
    "receptive_field_start": (),
    "top_down": ("rfcore.model.fpn.FPN.forward",),
    "top_down_bilinear": (),
    "crop_boxes": ("rfcore.data.augment.crop",),
    "flip": ("rfcore.boxes.flip_boxes", "rfcore.boxes.flip_landmarks", "rfcore.data.augment.hflip"),
    "learning_rate": ("rfcore.train.loop.learning_rate",),
    "cosine_learning_rate": (),
    "warm_restart_learning_rate": (),
    "nms": (),
    "box_vote": ("rfcore.postprocess.box_vote",),
    "match_detections": ("rfcore.evaluation.protocol.match_image",),
    "voc_ap": ("rfcore.evaluation.protocol.voc_ap",),
    "soft_nms": (),
    "diou_nms": (),
    "voc_ap_11point": (),
    "nme_interocular": (),
    "matrix_nms": (),
    "match": ("rfcore.boxes.match_anchors", "rfcore.boxes.label_anchors", "rfcore.boxes.best_anchor_per_face"),
    "match_forcing_floor": (),
    "image_loss": ("rfcore.loss.multitask_loss", "rfcore.loss.classification_loss"),
    "decode": ("rfcore.boxes.decode_boxes", "rfcore.boxes.decode_landmarks"),
    "balanced_l1": (),
}
"""Exercise name -> the rfcore functions (``module.qualname``) whose source answers it.

A notebook may show these functions' source only after the exercise has asked for them (predict, then
reveal); ``tests/exercises/test_exercises.py`` walks the notebooks to hold them to it. An exercise whose answer rfcore
does not hold (a variant, or one checked against torchvision) has an empty tuple.
"""


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
