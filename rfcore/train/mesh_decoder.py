"""Pre-training the mesh decoder on the synthetic face model [paper §4.2].

The paper decodes ``P_ST`` with a *pre-trained* shape and texture decoder (its reference 70), so that
``L_pixel`` only has to find each face's code, camera and light. rfcore's synthetic faces come from a
known face model (:mod:`rfcore.mesh.face_model`), and pre-training teaches
:class:`~rfcore.mesh.decoder.MeshDecoder` to generate exactly those faces, as the decoder half of an
autoencoder::

    P_ST = W [ (xyz - xyz_template) / SHAPE_SCALE , (rgb - rgb_template) / COLOUR_SCALE ]

    loss = mean_v ||xyz_v - xyz*_v|| / size + COLOUR_WEIGHT mean_v |rgb_v - rgb*_v|_1 + CODE_WEIGHT |P_ST|^2

with ``W`` a learnt ``128 x 6V`` matrix without bias (:class:`FaceEncoder`), so the template's code is 0,
and ``size`` the face's ``sqrt(w h)`` in model units, like the landmark NME; the small code penalty keeps
codes of order one. An autoencoder needs nothing but the generated meshes, so it works for any face data.
:func:`pretrain_decoder` runs it; ``rfcore mesh pretrain`` is the command.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from rfcore.data.synthetic import draw_faces
from rfcore.mesh.decoder import CODE_SIZE, DecodedMesh, MeshDecoder
from rfcore.mesh.face_model import face_model
from rfcore.mesh.hierarchy import build_hierarchy
from rfcore.progress import progress_bar
from rfcore.train.config import PretrainConfig
from rfcore.weights_io import load_weights

SHAPE_SCALE, COLOUR_SCALE = 0.05, 0.2
"""Typical offsets of a generated face from the template (model units, rgb): the encoder's input scale."""

COLOUR_WEIGHT, CODE_WEIGHT = 2.0, 1e-4
"""Weights of the colour error and of the code penalty in the pre-training loss."""


class ModelFaces(NamedTuple):
    """Faces of the synthetic face model, in model coordinates.

    Attributes:
        vertices: ``(F, V, 3)`` float32.
        colours: ``(F, V, 3)`` float32 albedo in ``[0, 1]``.
    """

    vertices: torch.Tensor
    colours: torch.Tensor


class DecoderErrors(NamedTuple):
    """How well decoded faces match their originals.

    Attributes:
        vertex: Mean vertex distance, as a fraction of each face's ``sqrt(w h)``.
        vertex_max: The largest single vertex distance, same unit.
        colour: Mean absolute colour difference per channel (rgb in ``[0, 1]``).
        colour_max: The largest single channel difference.
    """

    vertex: float
    vertex_max: float
    colour: float
    colour_max: float


class Pretrained(NamedTuple):
    """The outcome of :func:`pretrain_decoder`: both halves of the autoencoder and the held-out errors."""

    decoder: MeshDecoder
    encoder: FaceEncoder
    errors: DecoderErrors


class FaceEncoder(nn.Module):
    """Linear, bias-free map from a face's offsets to its code ``P_ST``.

    Args:
        num_vertices: ``V`` of the template.
        code_size: Length of the code.
    """

    def __init__(self, num_vertices: int, code_size: int = CODE_SIZE) -> None:
        super().__init__()
        self.linear = nn.Linear(6 * num_vertices, code_size, bias=False)
        template = face_model().mesh
        self.register_buffer("template_vertices", template.vertices.clone(), persistent=False)
        self.register_buffer("template_colours", template.colours.clone(), persistent=False)

    def forward(self, vertices: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
        """Codes ``(F, code_size)`` of ``(F, V, 3)`` vertices and ``(F, V, 3)`` colours."""
        offsets = torch.cat([(vertices - self.template_vertices) / SHAPE_SCALE,
                             (colours - self.template_colours) / COLOUR_SCALE], dim=-1)  # (F, V, 6)
        return self.linear(offsets.flatten(1))  # (F, V * 6) -> (F, code_size)


def model_faces(count: int, seed: int, stream: int) -> ModelFaces:
    """``count`` faces drawn from the synthetic face model (:func:`rfcore.data.synthetic.draw_faces`).

    Args:
        count: Number of faces ``F``.
        seed: Seed.
        stream: Independent stream of that seed (0 for training, 1 for held-out faces).
    """
    # sizes and poses are drawn too but play no part here
    draws = draw_faces(np.random.default_rng([seed, stream]), count, (16.0, 16.0), 0.0)
    return ModelFaces(draws.vertices.float(), draws.colours.float())


def face_sizes(vertices: torch.Tensor) -> torch.Tensor:
    """``(F,)`` ``sqrt(w h)`` of each face's ``(x, y)`` extent, for ``(F, V, 3)`` vertices."""
    extent = vertices[..., :2].amax(dim=1) - vertices[..., :2].amin(dim=1)  # (F, 2)
    return extent.prod(dim=1).sqrt()


def vertex_errors(decoded: torch.Tensor, vertices: torch.Tensor) -> torch.Tensor:
    """``(F, V)`` vertex distances as fractions of each true face's size, for two ``(F, V, 3)`` tensors."""
    return (decoded - vertices).norm(dim=-1) / face_sizes(vertices)[:, None]


def pretrain_loss(decoded: DecodedMesh, faces: ModelFaces, code: torch.Tensor) -> torch.Tensor:
    """The scalar loss of the module docstring for a batch."""
    vertex = vertex_errors(decoded.vertices, faces.vertices).mean()
    colour = (decoded.colours - faces.colours).abs().mean()
    return vertex + COLOUR_WEIGHT * colour + CODE_WEIGHT * code.pow(2).mean()


@torch.no_grad()
def evaluate(decoder: MeshDecoder, encoder: FaceEncoder, faces: ModelFaces) -> DecoderErrors:
    """Encode and decode ``faces`` and measure the :class:`DecoderErrors`."""
    decoded = decoder(encoder(*faces))
    distances = vertex_errors(decoded.vertices, faces.vertices)  # (F, V)
    colour = (decoded.colours - faces.colours).abs()  # (F, V, 3)
    return DecoderErrors(float(distances.mean()), float(distances.max()), float(colour.mean()), float(colour.max()))


def draw_batch(faces: ModelFaces, size: int, generator: torch.Generator) -> ModelFaces:
    """``size`` faces drawn with replacement."""
    index = torch.randint(len(faces.vertices), (size,), generator=generator)
    return ModelFaces(faces.vertices[index], faces.colours[index])


def pretrain_decoder(config: PretrainConfig = PretrainConfig(), progress: bool = False) -> Pretrained:
    """Train a :class:`MeshDecoder` over the default hierarchy as the decoder of an autoencoder.

    Uses the threads torch is set to.

    Args:
        config: Steps, batch, data sizes, learning rate and seed.
        progress: Show a progress bar on stderr.

    Returns:
        The decoder and encoder (eval mode) and their errors on held-out faces.
    """
    torch.manual_seed(config.seed)
    decoder = MeshDecoder(build_hierarchy())
    encoder = FaceEncoder(decoder.num_vertices[-1])
    train = model_faces(config.train_faces, config.seed, stream=0)
    optimizer = torch.optim.Adam([*decoder.parameters(), *encoder.parameters()], lr=config.lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=config.steps, pct_start=0.05)
    order = torch.Generator().manual_seed(config.seed)
    for _ in progress_bar(range(config.steps), desc="pre-training the mesh decoder", unit="step",
                          disable=not progress):
        batch = draw_batch(train, config.batch_size, order)
        code = encoder(*batch)
        loss = pretrain_loss(decoder(code), batch, code)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    decoder.eval()
    encoder.eval()
    held_out = model_faces(config.held_out_faces, config.seed, stream=1)
    return Pretrained(decoder, encoder, evaluate(decoder, encoder, held_out))



def load_encoder(path) -> FaceEncoder:
    """The :class:`FaceEncoder` saved by ``rfcore mesh pretrain`` (``mesh_encoder.safetensors``), in eval mode."""
    encoder = FaceEncoder(face_model().mesh.num_vertices)
    load_weights(encoder, path)
    return encoder.eval()


class CodeDistribution(NamedTuple):
    """The codes of the face model's faces as a Gaussian: ``P_ST = mean + root z``, ``z ~ N(0, I)``.

    The faces have fewer degrees of freedom than the code has entries, so
    the covariance is singular; ``root`` (``root root^T`` = covariance) still
    draws codes that vary only as real faces' codes do.

    Attributes:
        mean: ``(C,)`` mean code.
        root: ``(C, C)`` square root of the codes' covariance.
    """

    mean: torch.Tensor
    root: torch.Tensor

    @property
    def std(self) -> torch.Tensor:
        """``(C,)`` standard deviation of each code entry."""
        return self.root.pow(2).sum(dim=1).sqrt()

    def sample(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """``(count, C)`` codes drawn from the Gaussian."""
        normal = torch.randn(count, len(self.mean), generator=generator)
        return self.mean + normal @ self.root.T  # (count, C) @ (C, C)


@torch.no_grad()
def code_distribution(encoder: FaceEncoder, faces: ModelFaces) -> CodeDistribution:
    """Mean and covariance root of the codes of ``faces``."""
    codes = encoder(*faces).double()  # (F, C)
    values, vectors = torch.linalg.eigh(torch.cov(codes.T))
    root = vectors * values.clamp(min=0).sqrt()  # (C, C): root @ root.T = covariance
    return CodeDistribution(codes.mean(dim=0).float(), root.float())
