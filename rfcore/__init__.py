"""rfcore: RetinaFace (Deng et al., 2019) you can read, run and learn from.

The core, in the order data flows through it:

* :mod:`rfcore.config` (presets) -> :mod:`rfcore.anchors` (anchor grids),
  :mod:`rfcore.boxes` (IoU, matching, encoding, flips) and
  :mod:`rfcore.matching` (batched training targets);
* :mod:`rfcore.image` (image files within a memory budget, colour order,
  input size, preprocessing) and :mod:`rfcore.data` (WIDER FACE, synthetic
  faces, augmentation, batching);
* :mod:`rfcore.model` (the network) and :mod:`rfcore.mesh` (the
  self-supervised mesh branch);
* then either training: :mod:`rfcore.loss` (the multi-task loss of Eq. 1)
  and :mod:`rfcore.train` (config, training model, loop, checkpoints);
* or inference: :mod:`rfcore.detector` (decoding, suppression, test-time
  augmentation, :class:`~rfcore.detector.Detector`), :mod:`rfcore.align`
  (aligned crops for a recogniser), :mod:`rfcore.video` (faces in videos)
  and :mod:`rfcore.evaluation` (the WIDER FACE protocol, landmark NME).

Beside them: :mod:`rfcore.weights` (safetensors, the default weights,
loading a network with or without its mesh head), :mod:`rfcore.convert`
(public checkpoints and ONNX in), :mod:`rfcore.export` (ONNX out),
:mod:`rfcore.assets` (the bundled samples), :mod:`rfcore.files` (every
write: outputs that are never inputs, files that appear whole) and
:mod:`rfcore.progress` (progress bars for terminals and logs);
:mod:`rfcore.download` and :mod:`rfcore.widerface_archives` (WIDER FACE
fetched, checked and arranged, only when ``rfcore data`` asks).

On top of the core, which never imports them: :mod:`rfcore.viz` (pictures
and widgets for the notebooks), :mod:`rfcore.bench` (benchmarks) and
:mod:`rfcore.cli` (the ``rfcore`` command).

``rfcore.detect(image, ...)`` finds faces (:func:`rfcore.detector.detect`);
it is imported on first use, so ``import rfcore`` stays light.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # rfcore.detect is the detector's function, imported on first use
    if name == "detect":
        from rfcore.detector import detect

        return detect
    raise AttributeError(f"module 'rfcore' has no attribute {name!r}")
