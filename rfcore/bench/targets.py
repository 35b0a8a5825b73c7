"""``rfcore bench targets``: batched target assignment against a loop over images.

:class:`rfcore.matching.TargetAssigner` labels and encodes the anchors of a
whole batch at once, looking only at the anchors that can reach the negative
IoU threshold; the peer, :func:`rfcore.matching.per_image_targets`, matches
one image at a time with the dense IoU matrix. Both give identical targets
(checked on every run).
"""

from __future__ import annotations

import math

import torch

from rfcore.anchors import make_anchors
from rfcore.bench.timing import median_seconds
from rfcore.config import get_config
from rfcore.matching import TargetAssigner, per_image_targets


def random_faces(
    batch: int, faces: int, image_size: tuple[int, int], seed: int = 0
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Random faces for benchmarks and tests: a WIDER-like spread of sizes.

    Sides are log-uniform between 6 and 400 px, heights 1.0-1.4 times the
    width, centres anywhere in the image (faces may cross the border), and
    the five landmarks placed inside the box; one face in five has none
    (all ``-1``).

    Args:
        batch: Number of images.
        faces: Faces per image.
        image_size: ``(height, width)``.
        seed: Seed of the generator; the same seed gives the same faces.

    Returns:
        Per image ``(faces, 4)`` boxes and ``(faces, 5, 2)`` landmarks.
    """
    gen = torch.Generator().manual_seed(seed)
    height, width = image_size
    boxes, points = [], []
    layout = torch.tensor([[0.3, 0.35], [0.7, 0.35], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]])
    for _ in range(batch):
        side = torch.exp(torch.empty(faces).uniform_(math.log(6), math.log(400), generator=gen))
        size = torch.stack([side, side * torch.empty(faces).uniform_(1.0, 1.4, generator=gen)], dim=1)
        centre = torch.rand(faces, 2, generator=gen) * torch.tensor([width, height])
        corner = centre - size / 2
        boxes.append(torch.cat([corner, corner + size], dim=1))
        jitter = 0.05 * torch.randn(faces, 5, 2, generator=gen)
        image_points = corner[:, None] + (layout + jitter) * size[:, None]
        image_points[torch.rand(faces, generator=gen) < 0.2] = -1.0
        points.append(image_points)
    return boxes, points


def bench_targets(
    presets: list[str], batch: int = 32, faces: int = 50, size: int = 640, repeats: int = 5, seed: int = 0
) -> list[dict]:
    """Time batched target assignment against the per-image peer.

    Args:
        presets: Preset names to measure.
        batch: Images per batch.
        faces: Faces per image.
        size: Square image side in pixels.
        repeats: Timed runs per method (the median is reported).
        seed: Seed of the random faces.

    Returns:
        One dict per preset: ``preset``, ``anchors``, ``batched_ms``,
        ``per_image_ms``, ``speedup`` and ``identical`` (both methods gave
        the same targets).
    """
    image_size = (size, size)
    boxes, points = random_faces(batch, faces, image_size, seed)
    results = []
    for name in presets:
        cfg = get_config(name)
        assign = TargetAssigner(cfg, image_size)
        anchors = make_anchors(cfg, image_size)
        fast = assign(boxes, points)
        peer = per_image_targets(cfg, anchors, boxes, points)
        identical = all(torch.equal(a, b) for a, b in zip(fast, peer))
        batched = median_seconds(lambda: assign(boxes, points), repeats)
        per_image = median_seconds(lambda: per_image_targets(cfg, anchors, boxes, points), repeats)
        results.append(
            {
                "preset": name,
                "anchors": len(anchors),
                "batched_ms": 1000 * batched,
                "per_image_ms": 1000 * per_image,
                "speedup": per_image / batched,
                "identical": identical,
            }
        )
    return results


def format_targets_report(results: list[dict], batch: int, faces: int, size: int) -> str:
    """A plain-text table of :func:`bench_targets` results."""
    lines = [
        f"target assignment: batch {batch} x {size}x{size}, {faces} faces per image, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; medians",
        f"{'preset':<15}{'anchors':>9}{'batched ms':>12}{'per-image ms':>14}{'speed-up':>10}  identical",
    ]
    for r in results:
        lines.append(
            f"{r['preset']:<15}{r['anchors']:>9}{r['batched_ms']:>12.1f}{r['per_image_ms']:>14.1f}"
            f"{r['speedup']:>9.1f}x  {'yes' if r['identical'] else 'NO'}"
        )
    return "\n".join(lines)

