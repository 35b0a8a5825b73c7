"""Video files: open and read them frame by frame, write them, make a test video.

:func:`open_video` opens a file with OpenCV's FFmpeg and reads what it announces (:class:`VideoInfo`);
:func:`read_frames` yields RGB :class:`Frame` s, a frame that cannot be decoded in the middle of the file
as a broken frame instead of the end of the video; :func:`first_frame` reads one; :func:`open_writer`
writes MPEG-4 Part 2 (``mp4v``), which the FFmpeg inside every opencv-python wheel can encode; and
:func:`write_pan_video` makes a test video by panning across a picture. The detection loop over the
frames is :mod:`rfcore.video`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from rfcore.files import atomic_path, check_file

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
"""File name endings ``rfcore detect`` treats as videos (any letter case)."""

BROKEN = "could not be decoded"
"""The error of a frame that fails to decode."""

MAX_FAILURES_IN_A_ROW = 50
"""Unreadable frames in a row after which :func:`read_frames` gives up on the rest of a file."""

DEFAULT_FPS = 25.0
"""Frame rate written when a file announces none."""


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
