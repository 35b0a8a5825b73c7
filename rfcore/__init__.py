"""rfcore: RetinaFace (Deng et al., 2019) you can read, run and learn from.

Modules, in the order data flows through them: :mod:`rfcore.config` (presets),
:mod:`rfcore.anchors` (anchor grids), :mod:`rfcore.boxes` (IoU, matching,
encoding), :mod:`rfcore.matching` (batched training targets).
"""

__version__ = "0.1.0"
