"""The mesh decoder's inference form: each graph convolution one dense matrix product.

A Chebyshev convolution on a fixed mesh (:mod:`rfcore.mesh.chebconv`) is
linear in its input, and so is the up-sampling ``U`` before it
(:mod:`rfcore.mesh.hierarchy`). Together they are

    y = sum_k T_k(L~) U x theta_k + b = sum_k M_k (x theta_k) + b,    M_k = T_k(L~) U

where the ``K`` matrices ``M_k`` ``(V, V_in)`` depend on the mesh alone
(``U`` is the identity on the coarsest level). Computed once and laid side
by side as one dense ``(V, K V_in)`` matrix, they turn each layer of
:class:`~rfcore.mesh.decoder.MeshDecoder` into two small dense products:
``x theta_k`` for every ``k`` at the input level, then ``M``. That replaces
``K - 1`` sparse products, a ``K``-term contraction and an up-sampling on
the finer level, each a pass over memory for a handful of numbers per
vertex, which is what the decoder's time goes to for a few faces. The
outputs are the decoder's up to float rounding; the ELUs between the layers
stay. :class:`rfcore.detector.Detector` decodes detected faces with it.
"""

from __future__ import annotations

import torch
from torch import nn

from rfcore.mesh.chebconv import ChebConv, chebyshev_recursion
from rfcore.mesh.decoder import DecodedMesh, MeshDecoder


def chebyshev_matrices(laplacian: torch.Tensor, count: int) -> torch.Tensor:
    """``T_k(L~)`` for ``k = 0 .. count - 1`` as dense float64 matrices: sparse ``(V, V)`` -> ``(count, V, V)``."""
    scaled = laplacian.to_dense().double()
    return chebyshev_recursion(torch.eye(len(scaled), dtype=torch.float64), scaled.matmul, count)


class FoldedConv(nn.Module):
    """An up-sampling and a :class:`~rfcore.mesh.chebconv.ChebConv` as two dense products.

    Args:
        conv: The convolution.
        upsampling: Sparse ``(V, V_in)`` up-sampling applied before it, or ``None``.
    """

    def __init__(self, conv: ChebConv, upsampling: torch.Tensor | None = None) -> None:
        super().__init__()
        folded = chebyshev_matrices(conv.laplacian, conv.K)  # (K, V, V)
        if upsampling is not None:
            folded = folded @ upsampling.to_dense().double()  # (K, V, V_in): M_k = T_k(L~) U
        with torch.no_grad():
            # (K, V, V_in) -> (V, V_in, K) -> (V, V_in K): M, columns in the order of `weighted` below
            self.register_buffer("operator", folded.permute(1, 2, 0).flatten(1).float(), persistent=False)
            # (K, C_in, C_out) -> (C_in, K, C_out) -> (C_in, K C_out): theta_k side by side
            self.register_buffer("theta", conv.weight.transpose(0, 1).flatten(1).clone(), persistent=False)
            self.register_buffer("bias", conv.bias.clone(), persistent=False)
        self.terms, self.out_channels = conv.K, conv.weight.shape[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, V_in, C_in) -> (B, V, C_out)``."""
        batch, num_in, _ = x.shape
        rows, channels = num_in * self.terms, self.out_channels
        weighted = (x @ self.theta).reshape(batch, rows, channels)  # (B, V_in, K C_out) -> (B, V_in K, C_out)
        # (B, V_in K, C_out) -> (V_in K, B C_out): the faces side by side, so that M multiplies them all at once
        stacked = weighted.transpose(0, 1).reshape(rows, batch * channels)
        # (V, B C_out) -> (V, B, C_out) -> (B, V, C_out)
        return (self.operator @ stacked).unflatten(1, (batch, channels)).transpose(0, 1) + self.bias


class InferenceDecoder(nn.Module):
    """A trained :class:`~rfcore.mesh.decoder.MeshDecoder` for inference, each layer folded (:class:`FoldedConv`).

    Args:
        decoder: The decoder; its weights are copied, so fold again after
            changing them.
    """

    def __init__(self, decoder: MeshDecoder) -> None:
        super().__init__()
        self.decoder = decoder
        upsampling = [None] + [getattr(decoder, f"upsampling{level}") for level in range(len(decoder.convs))]
        convs = [*decoder.convs, decoder.head]
        self.layers = nn.ModuleList(FoldedConv(conv, up) for conv, up in zip(convs, upsampling))

    def forward(self, code: torch.Tensor) -> DecodedMesh:
        """Decode ``(B, code_size)`` codes as the decoder does: :class:`~rfcore.mesh.decoder.DecodedMesh`.

        Raises:
            ValueError: If ``code`` is not ``(B, code_size)``.
        """
        decoder = self.decoder
        if code.ndim != 2 or code.shape[1] != decoder.code_size:
            raise ValueError(f"expected (B, {decoder.code_size}) codes, got {tuple(code.shape)}")
        # (B, V_0 * C_0) -> (B, V_0, C_0)
        x = decoder.linear(code).reshape(len(code), decoder.num_vertices[0], decoder.channels[0])
        for layer in self.layers[:-1]:
            x = nn.functional.elu(layer(x))
        return decoder.mesh_from_offsets(self.layers[-1](x))  # (B, V, 6) offsets
