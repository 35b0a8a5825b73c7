"""Pictures for the notebooks: pure functions that return images or figures, and the widgets that drive them.

This layer sits on the core: nothing outside ``rfcore.viz``, ``rfcore.bench`` and ``rfcore.cli`` imports it.
After the shared primitives (:mod:`rfcore.viz.draw`, :mod:`rfcore.viz.source` with
:func:`~rfcore.viz.source.show_source`) come one module per notebook topic: :mod:`rfcore.viz.detection`
(00), :mod:`rfcore.viz.anchors` (01), :mod:`rfcore.viz.loss` (02), :mod:`rfcore.viz.landmarks` (03),
:mod:`rfcore.viz.mesh`, :mod:`rfcore.viz.mesh_render` and :mod:`rfcore.viz.mesh_overlay` (04, ``rfcore detect --mesh``),
:mod:`rfcore.viz.network` and :mod:`rfcore.viz.augment` (05), :mod:`rfcore.viz.train` (06),
:mod:`rfcore.viz.evaluation` (07), and :mod:`rfcore.viz.widgets`, sliders wired to the ``render_*`` functions.

Images are ``(H, W, 3)`` uint8 RGB arrays, inputs never modified; plots are
:class:`matplotlib.figure.Figure` objects built without ``pyplot``. A ``render_*`` function returns a
:class:`~rfcore.viz.draw.Rendering` and never raises on input a control can produce: its ``message``
says what is wrong and its ``image`` is the input, dimmed, with that message across the top; input no
control can produce (an image that is not ``(H, W, 3)`` uint8) raises ``ValueError``.
"""
