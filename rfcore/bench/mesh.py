"""Timings of the mesh branch, for ``rfcore bench mesh``.

Measures, at a given thread count, the decoder forward pass and the
renderer forward and forward + backward passes (32 x 32 crops by default)
for each batch size, with random codes, cameras and lights. The goals of
issue 4: render forward + backward at 32 x 32 with about 500 triangles
under 50 ms at batch 1 and under 600 ms at batch 16.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from rfcore.bench.timing import median_seconds
from rfcore.mesh.camera import CAMERA_PARAMS, LIGHT_PARAMS, camera_from_params, light_from_params
from rfcore.mesh.decoder import MeshDecoder
from rfcore.mesh.hierarchy import build_hierarchy
from rfcore.mesh.render import render

GOALS_MS = {1: 50.0, 16: 600.0}
"""Render forward + backward goals at 32 x 32 by batch size."""


def bench_mesh(
    batches: Sequence[int] = (1, 16),
    size: int = 32,
    threads: int = 2,
    repeats: int = 10,
    method: str = "windowed",
    seed: int = 0,
) -> list[dict]:
    """Time the decoder and the renderer.

    Args:
        batches: Batch sizes (faces) to measure.
        size: Side of the square rendered crops.
        threads: ``torch.set_num_threads`` during the measurement (restored after).
        repeats: Timed runs per figure (the median is reported).
        method: Rasteriser, ``"windowed"`` or ``"dense"``.
        seed: Seed of the random inputs.

    Returns:
        One dict per batch size: ``batch``, ``vertices``, ``triangles``,
        ``decoder_ms``, ``render_forward_ms``, ``render_backward_ms``
        (forward + backward) and ``goal_ms`` (``None`` without a goal).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        decoder = MeshDecoder(build_hierarchy())
        return [_bench_batch(decoder, batch, size, repeats, method) for batch in batches]
    finally:
        torch.set_num_threads(previous)


def _bench_batch(decoder: MeshDecoder, batch: int, size: int, repeats: int, method: str) -> dict:
    """The figures of :func:`bench_mesh` for one batch size."""
    code = torch.randn(batch, decoder.code_size)
    with torch.no_grad():
        mesh = decoder(code)
    vertices = mesh.vertices.requires_grad_()
    colours = mesh.colours.requires_grad_()
    camera_raw = (0.3 * torch.randn(batch, CAMERA_PARAMS)).requires_grad_()
    light_raw = torch.randn(batch, LIGHT_PARAMS).requires_grad_()

    def forward():
        camera, light = camera_from_params(camera_raw), light_from_params(light_raw)
        return render(vertices, colours, decoder.faces, camera, light, (size, size), method=method).image

    return {
        "batch": batch,
        "vertices": vertices.shape[1],
        "triangles": len(decoder.faces),
        "decoder_ms": 1000 * median_seconds(_without_grad(lambda: decoder(code)), repeats),
        "render_forward_ms": 1000 * median_seconds(_without_grad(forward), repeats),
        "render_backward_ms": 1000 * median_seconds(lambda: forward().sum().backward(), repeats),
        "goal_ms": GOALS_MS.get(batch) if size == 32 else None,
    }


def _without_grad(fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` run under :func:`torch.no_grad`."""

    def run():
        with torch.no_grad():
            return fn()

    return run


def format_mesh_report(results: list[dict], size: int = 32, threads: int = 2) -> str:
    """A plain-text table of :func:`bench_mesh` results."""
    first = results[0] if results else {"vertices": 0, "triangles": 0}
    lines = [
        f"mesh branch: {first['vertices']} vertices, {first['triangles']} triangles, {size}x{size} crops, "
        f"torch {torch.__version__}, {threads} threads; medians",
        f"{'batch':>5}{'decoder ms':>12}{'render fwd ms':>15}{'fwd+bwd ms':>12}{'goal ms':>9}",
    ]
    for r in results:
        goal = "-" if r["goal_ms"] is None else f"{r['goal_ms']:.0f}"
        lines.append(
            f"{r['batch']:>5}{r['decoder_ms']:>12.1f}{r['render_forward_ms']:>15.1f}{r['render_backward_ms']:>12.1f}"
            f"{goal:>9}"
        )
    return "\n".join(lines)
