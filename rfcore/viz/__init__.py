"""Pictures for the notebooks: pure functions that return images or figures, and the widgets that drive them.

This layer sits on the core: nothing outside ``rfcore.viz``, ``rfcore.bench`` and ``rfcore.cli``
imports it. Modules, one per notebook topic after the shared primitives:

* :mod:`rfcore.viz.draw`: colours, drawing primitives, :class:`~rfcore.viz.draw.Rendering`, input checks;
* :mod:`rfcore.viz.source`: the rfcore code under a formula, :func:`~rfcore.viz.source.show_source`;
* :mod:`rfcore.viz.detection`: faces above a threshold, aligned crops (notebook 00);
* :mod:`rfcore.viz.anchors`: anchors, IoU and matching labels (notebook 01);
* :mod:`rfcore.viz.loss`: the anchors behind each term of Eq. 1 (notebook 02);
* :mod:`rfcore.viz.landmarks`: normalised box and landmark targets (notebook 03);
* :mod:`rfcore.viz.mesh`: meshes, signals on them, renderings and fits (notebook 04);
* :mod:`rfcore.viz.mesh_overlay`: meshes drawn on images (`rfcore detect --mesh`, notebooks 00 and 04);
* :mod:`rfcore.viz.network`: the FPN merge, SSH branches, deformable sampling grids, receptive and effective
  fields, the training augmentation (notebook 05);
* :mod:`rfcore.viz.train`: loss curves of a run (notebook 06);
* :mod:`rfcore.viz.evaluation`: NMS, PR curves, CED (notebook 07);
* :mod:`rfcore.viz.widgets`: the explorers, sliders wired to the ``render_*`` functions.

Conventions:

* Images are ``(H, W, 3)`` uint8 RGB numpy arrays, drawn with the
  primitives of :mod:`rfcore.viz.draw`; inputs are never modified.
* Plots are :class:`matplotlib.figure.Figure` objects built without
  ``pyplot``: no global figure state, nothing to close, nothing shown until
  the caller displays the figure.

Bad input. The ``render_*`` functions are what sliders call, so input that
a control can produce (a face box outside the image or of zero size, an
unknown pyramid level or anchor size, inverted thresholds) never raises.
Every ``render_*`` returns a :class:`~rfcore.viz.draw.Rendering`; on bad input its
``message`` says what is wrong and its ``image`` is the input image, dimmed,
with that message written across the top. An argument no control can
produce (an image that is not ``(H, W, 3)`` uint8) raises ``ValueError``.
"""
