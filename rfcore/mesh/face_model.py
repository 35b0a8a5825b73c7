"""The synthetic face model: the template deformed, stretched, recoloured and lit at random.

A face of the model is the template of :mod:`rfcore.mesh.template` moved along
the smoothest eigenvectors of its Laplacian (:mod:`rfcore.mesh.laplacian`) and
stretched in width and depth, recoloured to a skin tone between
:data:`SKIN_TONES` with smooth colour variation, and lit by a point light in
:data:`LIGHT_BOX` and an ambient light. Every face is seen by the camera a zero
mesh-head output describes (``DISTANCE`` of :mod:`rfcore.mesh.camera`,
``FOCAL`` of :mod:`rfcore.mesh.camera`); only its pose changes.

It offers the constants of those draws, :class:`FaceModel` and
:func:`face_model` (the template with its bases), and :func:`skin_colours`.
The images drawn from it are :mod:`rfcore.data.synthetic`'s; the decoder is
pre-trained on its faces (:mod:`rfcore.train.mesh_decoder`).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch

from rfcore.mesh.hierarchy import adjacency_matrix
from rfcore.mesh.laplacian import eigenbasis, laplacian
from rfcore.mesh.template import SKIN, Mesh, face_template

SHAPE_MODES, SHAPE_AMPLITUDE = 12, (0.08, 0.08, 0.2)
"""Smooth eigenvectors that deform a face, and the spread of their coefficients in x, y and z.

The eigenvectors have unit length over 289 vertices (entries of about 0.06,
up to 0.2 at the outline), so a face moves by a few hundredths of its
2-unit height: more in depth than in outline."""

COLOUR_MODES, COLOUR_AMPLITUDE = 6, 0.6
"""Smooth eigenvectors that vary the skin colour, and the spread of their coefficients."""

WIDTH_RANGE, DEPTH_RANGE = (0.85, 1.1), (0.7, 1.3)
"""Factors on the template's width (x) and depth (z)."""

SKIN_TONES = ((0.98, 0.82, 0.70), (0.36, 0.23, 0.16))
"""Lightest and darkest skin albedo; a face's tone lies between them."""

AMBIENT_RANGE, LIGHT_INTENSITY, LIGHT_TINT = (0.25, 0.6), (0.3, 0.9), (0.85, 1.0)
"""Ambient light and point-light intensity per face, and the range of each channel's share of it."""

LIGHT_BOX = ((-3.0, -3.0, -4.5), (3.0, 3.0, 1.5))
"""Point lights are uniform in this view-space box (camera at the origin, faces at ``z = -4``)."""


class FaceModel(NamedTuple):
    """The template and the smooth bases faces are drawn from.

    Attributes:
        mesh: The face template.
        basis: ``(V, M)`` float64 eigenvectors of the template's Laplacian
            with the smallest non-zero eigenvalues (the constant one skipped).
    """

    mesh: Mesh
    basis: torch.Tensor


@functools.cache
def face_model() -> FaceModel:
    """The built-in template and its smoothest Laplacian eigenvectors (computed once)."""
    mesh = face_template()
    _, vectors = eigenbasis(laplacian(adjacency_matrix(mesh.faces, mesh.num_vertices)))
    modes = max(SHAPE_MODES, COLOUR_MODES)
    return FaceModel(mesh, vectors[:, 1 : modes + 1])


def skin_colours(model: FaceModel, tone: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """Template colours recoloured to a skin tone with smooth variation.

    Args:
        model: The face model.
        tone: ``(F,)`` in ``[0, 1]`` from the lightest to the darkest of :data:`SKIN_TONES`.
        coefficients: ``(F, COLOUR_MODES, 3)`` standard normal colour-variation weights.

    Returns:
        ``(F, V, 3)`` albedo in ``[0, 1]``.
    """
    light, dark = torch.tensor(SKIN_TONES, dtype=tone.dtype)
    skin = light + tone[:, None] * (dark - light)  # (F, 3)
    # (F, V, 3): eyes and lips keep their contrast
    base = model.mesh.colours.to(tone.dtype) * (skin / torch.tensor(SKIN, dtype=tone.dtype))[:, None]
    variation = torch.einsum("vm,fmc->fvc", model.basis[:, :COLOUR_MODES], COLOUR_AMPLITUDE * coefficients)
    return (base * (1 + variation)).clamp(0, 1)
