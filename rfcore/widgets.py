"""Interactive explorers for the notebooks: ipywidgets controls wired to :mod:`rfcore.viz`.

Each explorer connects a few controls to one ``render_*`` function and shows
the :class:`~rfcore.viz.Rendering` it returns: the picture in an
``ipywidgets.Image`` and the caption (or, for bad input, the message) below
it. Everything else, including what bad input looks like, lives in
:mod:`rfcore.viz`.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Callable

import ipywidgets as widgets

from rfcore.config import RetinaFaceConfig
from rfcore.viz import Rendering, check_image, render_anchor_level, render_moved_face, to_png


@dataclass
class Explorer:
    """Controls, picture and caption of one explorer; displays as its ``view``.

    Attributes:
        controls: The input widgets by the name of the render argument they set.
        image: Shows the rendered picture (PNG).
        caption: Shows the rendering's caption, or its message on bad input.
        view: The whole layout.
    """

    controls: dict[str, widgets.ValueWidget]
    image: widgets.Image
    caption: widgets.HTML
    view: widgets.VBox

    def _repr_mimebundle_(self, **kwargs):
        return self.view._repr_mimebundle_(**kwargs)


def anchor_explorer(image, face_box, cfg: RetinaFaceConfig, level=0) -> Explorer:
    """Pick a pyramid level, an anchor size and a position; see the anchor and its IoU.

    Wires :func:`rfcore.viz.render_anchor_level`.

    Args:
        image: ``(H, W, 3)`` uint8 RGB image.
        face_box: ``(4,)`` face ``(x1, y1, x2, y2)``.
        cfg: Preset with the anchor layout.
        level: Initially selected level, name or index.

    Returns:
        An :class:`Explorer` with controls ``level``, ``size_index``, ``x`` and ``y``.
    """
    height, width = check_image(image).shape[:2]
    x1, y1, x2, y2 = (float(v) for v in face_box)
    names = list(cfg.level_names)
    controls = {
        "level": widgets.Dropdown(options=names, value=names[level] if isinstance(level, int) else level,
                                  description="level"),
        "size_index": widgets.IntSlider(value=0, min=0, max=cfg.anchors_per_location - 1, description="anchor size"),
        "x": widgets.IntSlider(value=round((x1 + x2) / 2), min=0, max=width - 1, description="x"),
        "y": widgets.IntSlider(value=round((y1 + y2) / 2), min=0, max=height - 1, description="y"),
    }
    return _explorer(
        controls, lambda level, size_index, x, y: render_anchor_level(image, face_box, cfg, level, size_index, (x, y))
    )


def landmark_explorer(image, face_box, landmarks, cfg: RetinaFaceConfig) -> Explorer:
    """Move and scale a face; see its best anchor and the normalised box and landmark targets.

    Wires :func:`rfcore.viz.render_moved_face`.

    Args:
        image: ``(H, W, 3)`` uint8 RGB image.
        face_box: ``(4,)`` face ``(x1, y1, x2, y2)``.
        landmarks: ``(5, 2)`` points of that face.
        cfg: Preset with the anchor layout and variances.

    Returns:
        An :class:`Explorer` with controls ``x``, ``y`` (new face centre) and ``scale``.
    """
    height, width = check_image(image).shape[:2]
    x1, y1, x2, y2 = (float(v) for v in face_box)
    controls = {
        "x": widgets.IntSlider(value=round((x1 + x2) / 2), min=0, max=width - 1, description="centre x"),
        "y": widgets.IntSlider(value=round((y1 + y2) / 2), min=0, max=height - 1, description="centre y"),
        "scale": widgets.FloatLogSlider(value=1.0, base=2, min=-4, max=1, step=0.05, description="scale"),
    }
    return _explorer(
        controls, lambda x, y, scale: render_moved_face(image, face_box, landmarks, cfg, (x, y), scale)
    )


def _explorer(controls: dict[str, widgets.ValueWidget], render: Callable[..., Rendering]) -> Explorer:
    """Lay out ``controls`` above a picture and re-render whenever one of them changes."""
    image = widgets.Image(format="png")
    caption = widgets.HTML()

    def update(_change=None) -> None:
        rendering = render(**{name: control.value for name, control in controls.items()})
        image.value = to_png(rendering.image)
        text = rendering.message if rendering.message else rendering.caption
        caption.value = f"<pre>{html.escape(text)}</pre>"

    for control in controls.values():
        control.observe(update, names="value")
    update()
    view = widgets.VBox([widgets.HBox(list(controls.values())[:2]), widgets.HBox(list(controls.values())[2:]),
                         image, caption])
    return Explorer(controls, image, caption, view)
