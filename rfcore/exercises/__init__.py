"""Exercises with checkers: the learner writes a small function, a checker says whether it is right.

A notebook cell holds a stub and the checker call (``check_iou(iou)``). The checker runs the learner's
function and rfcore's own on the same seeded and edge-case inputs and prints a verdict instead of raising:
"not implemented yet", the passed cases, or the first failing case with its inputs, the expected and
obtained values and a hint; ``show_solution("iou")`` prints :mod:`rfcore.exercises.solutions`' answer.
:mod:`rfcore.exercises.check` is the shared core (how to add a checker: :func:`~rfcore.exercises.check.run_check`);
one module per topic follows the notebooks: :mod:`~rfcore.exercises.anchors` (01), :mod:`~rfcore.exercises.loss`
(02), :mod:`~rfcore.exercises.encoding` (03), :mod:`~rfcore.exercises.mesh` (04), :mod:`~rfcore.exercises.network`
(05), :mod:`~rfcore.exercises.training` (06), :mod:`~rfcore.exercises.evaluation` (07),
:mod:`~rfcore.exercises.detector` and :mod:`~rfcore.exercises.capstone` with its :mod:`~rfcore.exercises.mistakes`
(08). :data:`ANSWERED_BY` names the rfcore functions that answer each exercise, so that no notebook shows
an answer before asking.
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
    "learning_rate": ("rfcore.train.schedule.learning_rate",),
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
