"""Training: the settings of a run, the network with its losses, the loop, and checkpoints.

Modules, in the order a run uses them:

* :mod:`rfcore.train.config`: :class:`~rfcore.train.config.TrainConfig`, the paper's recipe as defaults;
* :mod:`rfcore.train.model`: :class:`~rfcore.train.model.TrainingModel`, the network plus Eq. 1 (and
  ``L_pixel`` through the mesh branch) in one module, as DistributedDataParallel wants it;
* :mod:`rfcore.train.schedule`: SGD and the paper's warm-up and step learning-rate schedule;
* :mod:`rfcore.train.data`: the training images of a config and the batches of each epoch;
* :mod:`rfcore.train.loop`: :func:`~rfcore.train.loop.train_step` and :func:`~rfcore.train.loop.train`,
  with its log, exact resume and torchrun support, and :mod:`rfcore.train.run_folder`, its output folder;
* :mod:`rfcore.train.checkpoint`: atomic, fsync'd checkpoints.
* :mod:`rfcore.train.mesh_decoder`: the mesh decoder, pre-trained as an autoencoder of the synthetic face model;
* :mod:`rfcore.train.mesh_head`: the mesh head of a frozen detector, trained with ``L_pixel`` alone.

The package imports none of them, so ``from rfcore.train.config import TrainConfig`` stays light; the command
line that fills a config is :mod:`rfcore.cli.train`.
"""
