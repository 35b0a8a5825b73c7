"""Faces in video files: read frames, detect, draw, write the annotated video.

:func:`process_video` runs ``rfcore detect VIDEO``: it decodes in a thread ahead of the per-frame loop
(:func:`annotate_frames`: detect, reuse, draw) and encodes in a thread behind it
(:mod:`rfcore.video_threads`). Its parts are tested alone: :func:`open_video` (OpenCV's FFmpeg; frame
rate, size, announced frame count), :func:`read_frames` (RGB :class:`Frame` s, a frame that cannot be
decoded yielded as broken instead of ending the video), :func:`open_writer` (MPEG-4 Part 2, which every
opencv-python wheel can encode). With ``stride=N`` the detector runs on every N-th good frame
(:func:`due_frames`); a frame between is drawn with the last detected faces, and a broken frame repeats
the previous output frame so the timing holds.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from rfcore.files import atomic_path, check_file, check_not_inputs
from rfcore.progress import progress_bar
from rfcore.video_threads import ReadAhead, WriteBehind

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
"""File name endings ``rfcore detect`` treats as videos (any letter case)."""

BROKEN = "could not be decoded"
"""The error of a frame that fails to decode."""

MAX_FAILURES_IN_A_ROW = 50
"""Unreadable frames in a row after which :func:`read_frames` gives up on the rest of a file."""

DEFAULT_FPS = 25.0
"""Frame rate written when a file announces none."""

STAGES = ("decode", "detect", "draw", "encode")
"""The timed stages of :func:`process_video`, in loop order."""


def is_video(path) -> bool:
    """True if ``path`` ends in one of :data:`VIDEO_EXTENSIONS`."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


class VideoInfo(NamedTuple):
    """What a video file announces.

    Attributes:
        fps: Frames per second (:data:`DEFAULT_FPS` if the file gives none).
        size: ``(height, width)`` of a frame.
        frame_count: Announced number of frames; 0 when unknown.
    """

    fps: float
    size: tuple[int, int]
    frame_count: int


@dataclass(frozen=True)
class Frame:
    """One frame of a video.

    Attributes:
        index: Position in the file, from 0.
        image: ``(H, W, 3)`` uint8 RGB, or ``None`` for a frame that could
            not be decoded.
        error: Why the frame is broken; empty for a good frame.
    """

    index: int
    image: np.ndarray | None
    error: str = ""


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


# ---------------------------------------------------------------- reading and writing


def open_video(path) -> tuple[cv2.VideoCapture, VideoInfo]:
    """Open a video file for reading.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        IsADirectoryError: If it is a directory.
        ValueError: If OpenCV cannot open it as a video.
    """
    path = check_file(path, "a video")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"{path} is not a readable video (OpenCV could not open it: corrupt or unsupported format)")
    fps = capture.get(cv2.CAP_PROP_FPS)
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    size = (int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)))
    info = VideoInfo(fps if 0 < fps < 1000 else DEFAULT_FPS, size, int(count) if count > 0 else 0)
    return capture, info


def read_frames(capture: cv2.VideoCapture, frame_count: int) -> Iterator[Frame]:
    """The frames of an open video as RGB, with undecodable frames as broken :class:`Frame` objects.

    Containers announce a frame count (``CAP_PROP_FRAME_COUNT``) that may be missing or wrong: a frame that
    fails to decode before it is broken, a failure at or past it ends the video, and after
    :data:`MAX_FAILURES_IN_A_ROW` failures in a row the rest of the file is given up as unreadable.

    Args:
        capture: From :func:`open_video`.
        frame_count: Announced frame count (0: unknown, so the first failure ends the video).

    Yields:
        :class:`Frame` objects in file order, each index once.
    """
    index, pending = 0, []  # pending: failed indices, broken if a later frame decodes or the count covers them
    while len(pending) < MAX_FAILURES_IN_A_ROW:
        ok, bgr = capture.read()
        if ok:
            yield from (Frame(k, None, BROKEN) for k in pending)
            pending = []
            yield Frame(index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        elif index >= frame_count:
            break
        else:
            pending.append(index)
        index += 1
    gave_up = f"; gave up on the rest after {MAX_FAILURES_IN_A_ROW} unreadable frames in a row"
    for k in pending:
        last = len(pending) == MAX_FAILURES_IN_A_ROW and k == pending[-1]
        yield Frame(k, None, BROKEN + (gave_up if last else ""))


def first_frame(path) -> np.ndarray:
    """The first decodable frame of a video as ``(H, W, 3)`` uint8 RGB."""
    capture, info = open_video(path)
    try:
        frame = next((f for f in read_frames(capture, info.frame_count) if f.image is not None), None)
    finally:
        capture.release()
    if frame is None:
        raise ValueError(f"{path} is not a readable video: no frame could be decoded")
    return frame.image


def open_writer(path, fps: float, size: tuple[int, int], codec: str = "mp4v") -> cv2.VideoWriter:
    """A video writer for BGR frames of ``size = (height, width)``, creating the folder.

    Raises:
        OSError: If OpenCV cannot create the file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (size[1], size[0]))
    if not writer.isOpened():
        raise OSError(f"could not write video {path}")
    return writer


def write_pan_video(path, image: np.ndarray, frames: int, size: tuple[int, int], fps: float = 25.0) -> Path:
    """A synthetic test video: a window with the aspect of ``size`` panned across ``image``.

    The window spans the image's full height and moves from its left edge to
    its right edge in equal steps; each view is resized to ``size``.

    Args:
        path: Destination, ``.mp4`` (mp4v) or ``.avi`` (MJPG, one JPEG per
            frame, so single frames can be damaged for tests).
        image: ``(H, W, 3)`` uint8 RGB, wider than ``H * width / height``.
        frames: Number of frames (>= 1).
        size: ``(height, width)`` of the video.
        fps: Frame rate written in the file.

    Returns:
        ``path``.
    """
    height, width = size
    window = round(image.shape[0] * width / height)
    if frames < 1 or window > image.shape[1]:
        raise ValueError(f"need frames >= 1 and an image wider than {window} px, got {frames}, {image.shape}")
    path = Path(path)
    with atomic_path(path) as tmp:
        writer = open_writer(tmp, fps, size, "MJPG" if path.suffix.lower() == ".avi" else "mp4v")
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        for left in np.linspace(0, image.shape[1] - window, frames).round().astype(int).tolist():
            writer.write(cv2.resize(bgr[:, left : left + window], (width, height), interpolation=cv2.INTER_AREA))
        writer.release()
    return path


# ---------------------------------------------------------------- the per-frame loop


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
            since it last ran (see the module docstring).
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
