"""Timings of the mesh branch, for ``rfcore bench mesh``.

Measures, at a given thread count, the decoder forward pass and the
renderer forward and forward + backward passes (32 x 32 crops by default)
for each batch size, with random codes, cameras and lights, against the
goals of :data:`GOALS_MS` (render forward + backward at 32 x 32).

Then what the mesh adds to detection (:func:`bench_mesh_detect`):
:meth:`rfcore.detector.Detector.detect` on one 640 x 480 image with ten
faces, with and without ``mesh=True``, timed in alternating rounds,
against :data:`DETECT_GOAL`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import cv2
import torch

from rfcore.bench.timing import interleaved_medians, median_seconds
from rfcore.mesh.camera import CAMERA_PARAMS, LIGHT_PARAMS, camera_from_params, light_from_params
from rfcore.mesh.decoder import MeshDecoder
from rfcore.mesh.hierarchy import build_hierarchy
from rfcore.mesh.render import render

GOALS_MS = {1: 50.0, 16: 600.0}
"""Render forward + backward goals at 32 x 32 by batch size."""

DETECT_GOAL = 1.10
"""Largest ratio of detection time with the mesh to without, per image with up to 10 faces."""

DETECT_SIZE = (480, 640)
"""``(height, width)`` the detection image is resized to: VGA, as :mod:`rfcore.bench.detect`."""


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


def bench_mesh_detect(weights=None, threads: int = 1, repeats: int = 50) -> dict:
    """Time detection with and without the mesh on group.jpg resized to 640 x 480 (ten faces).

    Both run the same network object (:meth:`rfcore.detector.Detector.without_mesh`;
    :class:`~rfcore.detector.Detector` defaults, fused network, the image
    as an RGB array), alternately in rounds (:func:`rfcore.bench.timing.interleaved_medians`), so load on a
    shared machine hits both alike.

    Args:
        weights: Detector weights with a mesh head beside them (default: the shipped files).
        threads: ``torch.set_num_threads`` during the measurement (restored after).
        repeats: Timed runs of each detector.

    Returns:
        ``{"threads", "size", "faces", "without_ms", "with_ms", "ratio", "goal"}``: medians in
        milliseconds, ``faces`` found (with meshes) and ``ratio = with_ms / without_ms``.
    """
    from rfcore.assets import IMAGES, load_image
    from rfcore.detector import Detector

    height, width = DETECT_SIZE
    image = cv2.resize(load_image(IMAGES / "group.jpg"), (width, height), interpolation=cv2.INTER_AREA)
    meshed = Detector(weights, mesh=True)
    plain = meshed.without_mesh()  # the same network object: two copies can differ in speed by several percent
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        faces = meshed.detect(image, color="RGB")
        runs = {"without": functools.partial(plain.detect, image, "RGB"),
                "with": functools.partial(meshed.detect, image, "RGB")}
        medians = interleaved_medians(runs, repeats)
    finally:
        torch.set_num_threads(previous)
    return {"threads": threads, "size": DETECT_SIZE, "faces": sum(face.mesh is not None for face in faces),
            "without_ms": 1000 * medians["without"], "with_ms": 1000 * medians["with"],
            "ratio": medians["with"] / medians["without"], "goal": DETECT_GOAL}


def format_mesh_detect_report(result: dict) -> str:
    """The lines of :func:`bench_mesh_detect`: both times, the ratio and the goal's verdict."""
    height, width = result["size"]
    verdict = "met" if result["ratio"] < result["goal"] else "MISSED"
    return "\n".join([
        (f"detection with the mesh: group.jpg at {width}x{height}, {result['faces']} faces, {result['threads']} "
         f"threads; medians in alternating rounds"),
        f"  Detector.detect without mesh{result['without_ms']:>10.1f} ms",
        f"  Detector.detect, mesh=True  {result['with_ms']:>10.1f} ms",
        (f"goal: the mesh adds < {result['goal'] - 1:.0%} per image with up to 10 faces: "
         f"+{result['ratio'] - 1:.1%}, {verdict}"),
    ])
