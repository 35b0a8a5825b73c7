"""rfcore: RetinaFace (Deng et al., 2019) you can read, run and learn from.

Modules, in the order data flows through them: :mod:`rfcore.config` (presets),
:mod:`rfcore.anchors` (anchor grids), :mod:`rfcore.boxes` (IoU, matching,
encoding), :mod:`rfcore.matching` (batched training targets),
:mod:`rfcore.model` (the network), :mod:`rfcore.mesh` (the self-supervised
mesh branch), :mod:`rfcore.loss` (the multi-task loss), :mod:`rfcore.data`
(WIDER FACE and synthetic faces), :mod:`rfcore.files` (every write: outputs
that are never inputs, files that appear whole), :mod:`rfcore.train`
(training), :mod:`rfcore.weights` (weights on disk), :mod:`rfcore.imread`
(image files within a memory budget), :mod:`rfcore.detect` (finding
faces), :mod:`rfcore.align` (aligned crops for a recogniser),
:mod:`rfcore.video` (faces in videos), :mod:`rfcore.export` (ONNX). On top of
them: :mod:`rfcore.draw` (drawing primitives), :mod:`rfcore.viz` and the
other ``viz_*`` modules, :mod:`rfcore.widgets` (pictures and notebook
controls), :mod:`rfcore.evaluation` (WIDER FACE evaluation), :mod:`rfcore.progress`
(progress bars for terminals and logs), :mod:`rfcore.cli`.

``rfcore.detect(image, ...)`` finds faces (see :mod:`rfcore.detect`); the
module is imported on first use, so ``import rfcore`` stays light.
"""

import importlib

__version__ = "0.1.0"


def __getattr__(name: str):
    # Only rfcore.detect is reachable as an attribute before it is imported.
    if name == "detect":
        return importlib.import_module("rfcore.detect")
    raise AttributeError(f"module 'rfcore' has no attribute {name!r}")
