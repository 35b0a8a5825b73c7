"""Interactive explorers for the notebooks: ipywidgets controls wired to :mod:`rfcore.viz`.

Each explorer connects a few controls to one ``render_*`` function and shows the
:class:`~rfcore.viz.draw.Rendering` it returns: the picture in an ``ipywidgets.Image`` and the caption
(or, for bad input, the message) below it. Everything else, including what bad input looks like, lives in
:mod:`rfcore.viz`. A widget needs a running kernel, which a notebook read on GitHub or nbviewer lacks, so
an explorer displays as three alternatives and each front end picks the one it can show: the live
explorer (``application/vnd.jupyter.widget-view+json``, which JupyterLab ranks first in trusted outputs),
a still ``image/jpeg`` of it (nbconvert and nbviewer, which skip a widget view whose state the notebook
does not hold, and JupyterLab for an untrusted notebook), and the caption as ``text/plain``.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from typing import Callable

import ipywidgets as widgets

from rfcore.config import RetinaFaceConfig
from rfcore.mesh.template import Mesh
from rfcore.viz.anchors import render_anchor_level
from rfcore.viz.detection import render_threshold
from rfcore.viz.draw import Rendering, check_image, to_jpeg, to_png
from rfcore.viz.landmarks import render_moved_face
from rfcore.viz.loss import render_loss
from rfcore.viz.mesh_render import render_face


@dataclass
class Explorer:
    """Controls, picture and caption of one explorer; displays as its ``view`` and a still picture of it.

    Attributes:
        controls: The input widgets by the name of the render argument they set.
        image: Shows the rendered picture (PNG).
        caption: Shows the rendering's caption, or its message on bad input.
        view: The whole layout.
        rendering: What ``image`` and ``caption`` show now.
    """

    controls: dict[str, widgets.ValueWidget]
    image: widgets.Image
    caption: widgets.HTML
    view: widgets.VBox
    rendering: Rendering | None = None

    def show(self, rendering: Rendering) -> None:
        """Put ``rendering``'s picture and caption (or message) on screen."""
        self.rendering = rendering
        self.image.value = to_png(rendering.image)
        self.caption.value = f"<pre>{html.escape(_text(rendering))}</pre>"

    def _repr_mimebundle_(self, **kwargs):
        """The live widget, the picture it shows now as a still (JPEG, base64) and its caption as text."""
        return {
            **self.view._repr_mimebundle_(**kwargs),
            "image/jpeg": base64.b64encode(to_jpeg(self.rendering.image)).decode("ascii"),
            "text/plain": _text(self.rendering),
        }


def anchor_explorer(image, face_box, cfg: RetinaFaceConfig, level=0) -> Explorer:
    """Pick a pyramid level, an anchor size and a position; see the anchor and its IoU.

    Wires :func:`rfcore.viz.anchors.render_anchor_level`.

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

    Wires :func:`rfcore.viz.landmarks.render_moved_face`.

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


def threshold_explorer(image, faces, truth_boxes=None, lowest: float = 0.02, value: float = 0.5) -> Explorer:
    """Move the score threshold; see which faces pass it and, with an annotation, which are right.

    Wires :func:`rfcore.viz.detection.render_threshold`.

    Args:
        image: ``(H, W, 3)`` uint8 RGB image.
        faces: Faces detected on it at threshold ``lowest`` (e.g.
            ``rfcore.detect(path, threshold=0.02)``).
        truth_boxes: Optional ``(T, 4)`` annotated faces.
        lowest: The detection threshold of ``faces``: the slider's minimum.
        value: Initial threshold.

    Returns:
        An :class:`Explorer` with the control ``threshold``.
    """
    controls = {
        "threshold": widgets.FloatSlider(value=value, min=lowest, max=0.99, step=0.01, readout_format=".2f",
                                         description="threshold"),
    }
    return _explorer(controls, lambda threshold: render_threshold(image, faces, threshold, truth_boxes))


def mesh_render_explorer(mesh: Mesh, size: int = 192) -> Explorer:
    """Turn a face mesh and move its light; see what the renderer makes of it.

    Wires :func:`rfcore.viz.mesh_render.render_face`; the camera sliders sit on the
    first row, the light sliders on the second.

    Args:
        mesh: A coloured mesh, e.g. :func:`rfcore.mesh.template.face_template`.
        size: Side of the rendered picture in pixels.

    Returns:
        An :class:`Explorer` with controls ``pitch``, ``yaw``, ``roll``
        (degrees), ``distance``, ``light_x``, ``light_y``, ``light_z`` and ``ambient``.
    """
    def angle(name):
        return widgets.FloatSlider(value=0.0, min=-60, max=60, step=1, description=f"{name} (deg)")

    def light(axis):
        return widgets.FloatSlider(value=0.0, min=-4, max=4, step=0.1, description=f"light {axis}")

    controls = {
        "pitch": angle("pitch"), "yaw": angle("yaw"), "roll": angle("roll"),
        "distance": widgets.FloatSlider(value=4.0, min=2.5, max=8.0, step=0.1, description="distance"),
        "light_x": light("x"), "light_y": light("y"), "light_z": light("z"),
        "ambient": widgets.FloatSlider(value=0.4, min=0.0, max=1.0, step=0.05, description="ambient"),
    }

    def show(pitch, yaw, roll, distance, light_x, light_y, light_z, ambient):
        return render_face(mesh.vertices, mesh.colours, mesh.faces, pitch, yaw, roll, distance,
                           (light_x, light_y, light_z), ambient, size)

    explorer = _explorer(controls, show)
    sliders = list(controls.values())
    explorer.view.children = (widgets.HBox(sliders[:4]), widgets.HBox(sliders[4:]), explorer.image, explorer.caption)
    return explorer


def loss_explorer(image, output, faces, landmarks, cfg: RetinaFaceConfig, pixel=None) -> Explorer:
    """Change the weights λ1..λ3 of Eq. 1 and the OHEM ratio; see the terms and the mined negatives.

    Wires :func:`rfcore.viz.loss.render_loss`.

    Args:
        image: ``(H, W, 3)`` uint8 RGB image.
        output: The network's output for it (batch of one).
        faces: ``(F, 4)`` annotated faces.
        landmarks: ``(F, 5, 2)`` their landmarks, or ``None``.
        cfg: Preset with the anchor layout, thresholds and the initial weights and ratio.
        pixel: ``L_pixel`` as a scalar tensor, or ``None`` without a mesh branch.

    Returns:
        An :class:`Explorer` with controls ``lambda_box``, ``lambda_pts``, ``lambda_pixel`` and ``ohem_ratio``.
    """
    controls = {
        "lambda_box": widgets.FloatSlider(value=cfg.lambda_box, min=0, max=max(4.0, cfg.lambda_box), step=0.05,
                                          description="λ1 box"),
        "lambda_pts": widgets.FloatSlider(value=cfg.lambda_pts, min=0, max=max(4.0, cfg.lambda_pts), step=0.05,
                                          description="λ2 points"),
        "lambda_pixel": widgets.FloatSlider(value=cfg.lambda_pixel, min=0, max=max(0.1, cfg.lambda_pixel),
                                            step=0.001, readout_format=".3f", description="λ3 pixel"),
        "ohem_ratio": widgets.IntSlider(value=cfg.ohem_ratio, min=0, max=max(20, cfg.ohem_ratio),
                                        description="OHEM ratio"),
    }
    return _explorer(controls, lambda **weights: render_loss(image, output, faces, landmarks, cfg, pixel=pixel,
                                                             **weights))


def _explorer(controls: dict[str, widgets.ValueWidget], render: Callable[..., Rendering]) -> Explorer:
    """Lay out ``controls`` above a picture and re-render whenever one of them changes."""
    # flex-start: shown at its own size; by default the VBox stretches (and blurs) it to the notebook's width
    image = widgets.Image(format="png", layout=widgets.Layout(align_self="flex-start"))
    caption = widgets.HTML()
    view = widgets.VBox([widgets.HBox(list(controls.values())[:2]), widgets.HBox(list(controls.values())[2:]),
                         image, caption])
    explorer = Explorer(controls, image, caption, view)

    def update(_change=None) -> None:
        explorer.show(render(**{name: control.value for name, control in controls.items()}))

    for control in controls.values():
        control.observe(update, names="value")
    update()
    return explorer


def _text(rendering: Rendering) -> str:
    """The caption under the picture: the rendering's caption, or its message on bad input."""
    return rendering.message if rendering.message else rendering.caption
