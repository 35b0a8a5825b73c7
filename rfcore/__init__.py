"""rfcore: RetinaFace (Deng et al., 2019) you can read, run and learn from.

The core, in the order data flows through it: :mod:`rfcore.config` (presets), :mod:`rfcore.anchors`,
:mod:`rfcore.boxes` and :mod:`rfcore.matching` (anchors, IoU, encoding, training targets);
:mod:`rfcore.image` and :mod:`rfcore.data` (images, WIDER FACE, synthetic faces, augmentation);
:mod:`rfcore.model` and :mod:`rfcore.mesh` (the network and its self-supervised mesh branch); then
training (:mod:`rfcore.loss`, :mod:`rfcore.train`) or inference (:mod:`rfcore.detector`,
:mod:`rfcore.align`, :mod:`rfcore.video`, :mod:`rfcore.evaluation`). Beside them: weights files
(:mod:`rfcore.weights_io`, :mod:`rfcore.weights`, :mod:`rfcore.convert`, :mod:`rfcore.export`),
:mod:`rfcore.assets`, :mod:`rfcore.files` (every write), :mod:`rfcore.progress`, and WIDER FACE's download
(:mod:`rfcore.download`, :mod:`rfcore.widerface_archives`). On top, never imported by the core:
:mod:`rfcore.exercises`, :mod:`rfcore.viz`, :mod:`rfcore.bench` and :mod:`rfcore.cli`.

``rfcore.detect(image, ...)`` finds faces (:func:`rfcore.detector.detect`); it is imported on first use, so
``import rfcore`` stays light.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # rfcore.detect is the detector's function, imported on first use
    if name == "detect":
        from rfcore.detector import detect

        return detect
    raise AttributeError(f"module 'rfcore' has no attribute {name!r}")
