"""Faces in video files: detect on the frames, draw them, write the annotated video.

:func:`process_video` runs ``rfcore detect VIDEO``: it reads the file (:mod:`rfcore.video_files`) in a thread
ahead of the per-frame loop (:func:`annotate_frames`: detect, reuse, draw) and encodes in a thread behind
it (:mod:`rfcore.video_threads`), summing up in a :class:`VideoSummary`. With ``stride=N`` the detector
runs on every N-th good frame (:func:`due_frames`); a frame between is drawn with the last detected faces,
and a broken frame repeats the previous output frame so the timing holds.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from rfcore.files import atomic_path, check_not_inputs
from rfcore.progress import progress_bar
from rfcore.video_files import Frame, VideoInfo, open_video, open_writer, read_frames
from rfcore.video_threads import ReadAhead, WriteBehind

STAGES = ("decode", "detect", "draw", "encode")
"""The timed stages of :func:`process_video`, in loop order."""


@dataclass(frozen=True)
class AnnotatedFrame:
    """A frame after :func:`annotate_frames`.

    Attributes:
        index: Position in the file.
        faces: The faces drawn on it (detected on this frame, or reused).
        detected: True if the detector ran on this frame.
        image: The drawing, ``(H, W, 3)`` uint8 RGB; for a broken frame the
            previous drawing (``None`` if there is none yet or when not drawing).
        error: Why the frame is broken; empty for a good frame.
    """

    index: int
    faces: list
    detected: bool
    image: np.ndarray | None
    error: str = ""

    def to_dict(self, fps: float) -> dict:
        """``{"frame": k, "time": seconds, "detected": bool, "faces": [...]}``, or ``{"frame", "time", "error"}``."""
        record = {"frame": self.index, "time": round(self.index / fps, 4)}
        if self.error:
            return record | {"error": self.error}
        return record | {"detected": self.detected, "faces": [face.to_dict() for face in self.faces]}


@dataclass
class VideoSummary:
    """What :func:`process_video` did.

    Attributes:
        frames: Frames processed (good and broken).
        detected: Frames the detector ran on.
        faces: Faces detected, summed over the detected frames.
        broken: Indices of the frames that could not be decoded.
        seconds: Wall time of the whole loop.
        stage_seconds: Time spent in each of :data:`STAGES`: ``decode`` is the
            detection loop's wait for the reader thread, ``detect`` the loop's
            own work, ``draw`` and ``encode`` the writer thread's work (which
            overlaps detection).
    """

    frames: int = 0
    detected: int = 0
    faces: int = 0
    broken: list[int] = field(default_factory=list)
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    def add(self, frame: AnnotatedFrame) -> None:
        """Count one frame of the loop."""
        self.frames += 1
        self.detected += frame.detected
        self.faces += len(frame.faces) if frame.detected else 0
        if frame.error:
            self.broken.append(frame.index)

    @property
    def fps(self) -> float:
        """Frames per second achieved end to end."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        """One line: frames, detections, frames per second and the milliseconds per frame of each stage."""
        per_frame = ", ".join(f"{name} {1000 * s / max(self.frames, 1):.1f}" for name, s in self.stage_seconds.items())
        broken = f", {len(self.broken)} broken" if self.broken else ""
        return (
            f"{self.frames} frames{broken}, detector run on {self.detected}, {self.faces} faces found; "
            f"{self.fps:.1f} frames/s end to end (ms per frame: {per_frame})"
        )


def annotate_frames(
    frames: Iterable[Frame], detect: Callable, stride: int = 1,
    draw: Callable[[np.ndarray, list], np.ndarray] | None = None, timings: dict[str, float] | None = None,
    batch: int = 1,
) -> Iterator[AnnotatedFrame]:
    """Detect on every ``stride``-th good frame, reuse the faces in between, draw them.

    Args:
        frames: :class:`Frame` objects in order (from :func:`read_frames`, or
            any iterable, e.g. in tests).
        detect: With ``batch=1``, RGB image -> faces, e.g.
            ``functools.partial(detector.detect, color="RGB")``; with a larger
            ``batch``, a list of RGB images -> one list of faces per image
            (the same call of a :class:`~rfcore.detector.Detector` does both).
        stride: Run the detector when at least this many frames have passed
            since it last ran (:func:`due_frames`).
        draw: ``(RGB image, faces) -> drawing``; ``None`` leaves
            :attr:`AnnotatedFrame.image` ``None``.
        timings: If given, seconds spent in ``"decode"`` (waiting for
            ``frames``), ``"detect"`` and ``"draw"`` are added to it.
        batch: Frames read before the detector runs once on those of them
            that are due; the results are those of one frame at a time.

    Yields:
        One :class:`AnnotatedFrame` per frame.
    """
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got {stride}")
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    timings = {} if timings is None else timings
    for name in ("decode", "detect", "draw"):
        timings.setdefault(name, 0.0)
    faces, last_detected, drawing = [], None, None
    iterator = iter(frames)
    while True:
        started = time.perf_counter()
        chunk = list(itertools.islice(iterator, batch))
        timings["decode"] += time.perf_counter() - started
        if not chunk:
            return
        started = time.perf_counter()
        due = due_frames(chunk, last_detected, stride)
        found = detect([frame.image for frame in due]) if batch > 1 and due else [detect(f.image) for f in due]
        detected = dict(zip((frame.index for frame in due), found))
        timings["detect"] += time.perf_counter() - started
        for frame in chunk:
            if frame.image is None:
                yield AnnotatedFrame(frame.index, faces, False, drawing, frame.error)
                continue
            if frame.index in detected:
                faces, last_detected = detected[frame.index], frame.index
            started = time.perf_counter()
            drawing = None if draw is None else draw(frame.image, faces)
            timings["draw"] += time.perf_counter() - started
            yield AnnotatedFrame(frame.index, faces, frame.index in detected, drawing)


def due_frames(chunk: list[Frame], last_detected: int | None, stride: int) -> list[Frame]:
    """The good frames of ``chunk`` the detector runs on, given the index it last ran on (``None``: never).

    A broken frame is not detected and does not count: the next good frame is detected once at least
    ``stride`` frames have passed since the last detection.
    """
    due = []
    for frame in chunk:
        if frame.image is not None and (last_detected is None or frame.index - last_detected >= stride):
            due.append(frame)
            last_detected = frame.index
    return due


def process_video(
    path, detect: Callable, out=None, stride: int = 1,
    on_frame: Callable[[AnnotatedFrame, VideoInfo], None] | None = None, progress: bool = True,
    draw: Callable[[np.ndarray, list], np.ndarray] | None = None, batch: int = 1,
) -> VideoSummary:
    """Read a video, detect faces, draw them and write the annotated video.

    Decoding runs in a thread ahead of detection, and drawing and encoding
    in a thread behind it (:mod:`rfcore.video_threads`), so the three overlap;
    frames stay in order and an error in either thread is raised here. The
    stage times of the summary say where the time went
    (:attr:`VideoSummary.stage_seconds`); ``on_frame`` sees each frame as
    read, before its faces are drawn.

    Args:
        path: Video file.
        detect: RGB image -> faces, e.g. ``functools.partial(detector.detect, color="RGB")``;
            with ``batch > 1`` a list of images -> faces per image (see :func:`annotate_frames`).
        out: Annotated video to write (``mp4v``, the input's frame rate and
            size; under a temporary name, renamed into place when complete),
            or ``None`` to only detect.
        stride: Detect every ``stride``-th frame (see the module docstring).
        on_frame: Called with each :class:`AnnotatedFrame` and the
            :class:`VideoInfo` (to print JSON lines, report broken frames).
        progress: Show a tqdm progress bar on stderr.
        draw: ``(RGB image, faces) -> drawing`` for the output video, e.g.
            :func:`rfcore.viz.draw.draw_faces`; ``None`` writes the frames as read.
        batch: Frames per detector call (:func:`annotate_frames`).

    Returns:
        A :class:`VideoSummary`, with the achieved frames per second.

    Raises:
        FileNotFoundError, IsADirectoryError, ValueError: For a file that is
            not a readable video, one without a single decodable frame, or
            an ``out`` that names the input.
        OSError: If ``out`` cannot be written.
    """
    check_not_inputs([path], [out])
    capture, info = open_video(path)
    summary = VideoSummary()
    started = time.perf_counter()
    # unwinds in reverse: the threads stop, then the writer closes, the file is renamed into place, capture released
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(capture.release)
        encoder, writer_seconds = None, {"draw": 0.0, "encode": 0.0}  # the writer thread's own timings
        if out is not None:
            writer = open_writer(cleanup.enter_context(atomic_path(out)), info.fps, info.size)
            cleanup.callback(writer.release)
            write = functools.partial(draw_and_write, writer, draw or frame_as_read, info.size, writer_seconds)
            encoder = cleanup.enter_context(WriteBehind(write))
        frames = cleanup.enter_context(ReadAhead(read_frames(capture, info.frame_count)))
        # frames pass on as read (the writer thread draws them), or without their images when nothing is written
        annotated = annotate_frames(frames, detect, stride, None if out is None else frame_as_read,
                                    summary.stage_seconds, batch)
        for frame in progress_bar(annotated, total=info.frame_count or None, unit="frame", disable=not progress,
                                  desc=Path(path).name):
            summary.add(frame)
            if on_frame is not None:
                on_frame(frame, info)
            if encoder is not None:
                encoder.put(frame)
        if summary.frames == len(summary.broken):  # raised inside the stack: no output file is left
            raise ValueError(f"{path} is not a readable video: no frame could be decoded")
    summary.seconds = time.perf_counter() - started
    summary.stage_seconds.update(writer_seconds)
    return summary


def frame_as_read(image: np.ndarray, faces: list) -> np.ndarray:
    """The ``draw`` of :func:`process_video` that draws nothing: the frame as read."""
    return image


def draw_and_write(
    writer: cv2.VideoWriter, draw: Callable[[np.ndarray, list], np.ndarray], size: tuple[int, int],
    seconds: dict[str, float], frame: AnnotatedFrame,
) -> None:
    """Draw a frame's faces on its image and write it (BGR), adding the seconds of each step to ``seconds``.

    A broken frame carries the previous frame's image and faces, so it
    repeats the previous drawing; black if there is none.
    """
    started = time.perf_counter()
    image = np.zeros((*size, 3), np.uint8) if frame.image is None else draw(frame.image, frame.faces)
    drawn = time.perf_counter()
    writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    seconds["draw"] += drawn - started
    seconds["encode"] += time.perf_counter() - drawn
