"""Joint shape and texture decoder: 128-d code -> coloured mesh [paper §3.2].

From the code ``P_ST`` predicted for an anchor, a linear layer makes
features on the coarsest mesh; each level then applies a Chebyshev graph
convolution (:class:`~rfcore.mesh.chebconv.ChebConv`) and an ELU and
up-samples to the next level (CoMA-style). On the finest level a last
convolution predicts six numbers per vertex, added to the template:

    xyz = template_xyz + d_xyz        rgb = sigmoid(logit(template_rgb) + d_rgb)

The colour stays in ``(0, 1)`` whatever the network says. The last layer
starts at zero, so an untrained decoder outputs the template itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from rfcore.mesh.chebconv import ChebConv, scaled_laplacian
from rfcore.mesh.hierarchy import MeshHierarchy, vertex_matmul
from rfcore.mesh.template import LANDMARK_NAMES

CODE_SIZE = 128
"""Length of the shape and texture code ``P_ST`` [paper §3.2]."""

COLOUR_EPS = 1e-3
"""Template colours are clamped to ``[eps, 1 - eps]`` before the logit."""


class DecodedMesh(NamedTuple):
    """Per-vertex output of :class:`MeshDecoder`.

    Attributes:
        vertices: ``(B, V, 3)`` model coordinates.
        colours: ``(B, V, 3)`` rgb in ``(0, 1)``.
    """

    vertices: torch.Tensor
    colours: torch.Tensor


class MeshDecoder(nn.Module):
    """Decode shape and texture codes into coloured meshes.

    Args:
        hierarchy: Mesh levels, coarsest first (:func:`~rfcore.mesh.hierarchy.build_hierarchy`).
        channels: Feature channels on each level, coarsest first;
            ``len(channels) == len(hierarchy.meshes)``.
        K: Chebyshev terms per convolution (CoMA uses 6).
        code_size: Length of the input code.

    Attributes:
        landmark_vertices: Indices of the template's five landmark vertices, in the order of
            :data:`~rfcore.mesh.template.LANDMARK_NAMES`; ``None`` if the template does not name them all.
    """

    def __init__(
        self,
        hierarchy: MeshHierarchy,
        channels: Sequence[int] = (64, 32, 32, 16),
        K: int = 6,
        code_size: int = CODE_SIZE,
    ) -> None:
        super().__init__()
        if len(channels) != len(hierarchy.meshes):
            raise ValueError(f"need one channel count per level ({len(hierarchy.meshes)}), got {tuple(channels)}")
        self.code_size = code_size
        self.channels = tuple(channels)
        self.K = K
        self.num_vertices = hierarchy.num_vertices
        laplacians = [scaled_laplacian(adjacency) for adjacency in hierarchy.adjacency]
        self.linear = nn.Linear(code_size, self.num_vertices[0] * channels[0])
        self.convs = nn.ModuleList(
            ChebConv(c_in, c_out, K, laplacian) for c_in, c_out, laplacian in zip(channels, channels[1:], laplacians)
        )
        self.head = ChebConv(channels[-1], 6, K, laplacians[-1])
        nn.init.zeros_(self.head.weight)
        for level, matrix in enumerate(hierarchy.upsampling):
            self.register_buffer(f"upsampling{level}", matrix, persistent=False)
        template = hierarchy.template
        self.register_buffer("faces", template.faces.clone(), persistent=False)
        self.register_buffer("template_vertices", template.vertices.clone(), persistent=False)
        colour_logits = torch.logit(template.colours, eps=COLOUR_EPS)
        self.register_buffer("template_colour_logits", colour_logits, persistent=False)
        named = [template.landmarks.get(name) for name in LANDMARK_NAMES]
        self.landmark_vertices = None if None in named else tuple(named)

    @property
    def layout(self) -> str:
        """The architecture in one line, e.g. ``"vertices 9-25-81-289, channels 64-32-32-16, K 6, code 128"``.

        Saved decoders record it in their metadata, so a file meets only a
        decoder it fits (:func:`rfcore.weights.load_mesh_decoder`).
        """
        def dashed(numbers):
            return "-".join(map(str, numbers))

        return f"vertices {dashed(self.num_vertices)}, channels {dashed(self.channels)}, K {self.K}, code {self.code_size}"

    def forward(self, code: torch.Tensor) -> DecodedMesh:
        """Decode.

        Args:
            code: ``(B, code_size)`` shape and texture codes ``P_ST``.

        Returns:
            :class:`DecodedMesh` with ``V`` = vertices of the template.

        Raises:
            ValueError: If ``code`` is not ``(B, code_size)``.
        """
        if code.ndim != 2 or code.shape[1] != self.code_size:
            raise ValueError(f"expected (B, {self.code_size}) codes, got {tuple(code.shape)}")
        # (B, V_0 * C_0) -> (B, V_0, C_0)
        x = self.linear(code).reshape(len(code), self.num_vertices[0], self.channels[0])
        for level, conv in enumerate(self.convs):
            x = vertex_matmul(getattr(self, f"upsampling{level}"), nn.functional.elu(conv(x)))
        return self.mesh_from_offsets(self.head(x))  # (B, V, 6) offsets

    def mesh_from_offsets(self, offsets: torch.Tensor) -> DecodedMesh:
        """The template moved and recoloured by the last convolution's ``(B, V, 6)`` output (module docstring)."""
        vertices = self.template_vertices + offsets[..., :3]
        colours = torch.sigmoid(self.template_colour_logits + offsets[..., 3:])
        return DecodedMesh(vertices, colours)
