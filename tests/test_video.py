"""Tests of rfcore.video and of `rfcore detect` on videos, on small generated videos."""

import json

import cv2
import numpy as np
import pytest

from rfcore.assets import IMAGES, load_image
from rfcore.bench.detect import bench_video, video_lines
from rfcore.cli import main
from rfcore.detector import Detector, Face
from rfcore.video import annotate_frames, process_video
from rfcore.video_files import (
    MAX_FAILURES_IN_A_ROW,
    Frame,
    first_frame,
    is_video,
    open_video,
    read_frames,
    write_pan_video,
)
from rfcore.viz.draw import draw_faces

SIZE = (180, 240)  # (height, width): small, the largest faces still about 60 px
FRAMES = 10
IMAGE = str(IMAGES / "grace_hopper.jpg")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def group():
    return load_image(IMAGES / "group.jpg")


@pytest.fixture(scope="module")
def pan_video(tmp_path_factory, group):
    return write_pan_video(tmp_path_factory.mktemp("video") / "pan.mp4", group, FRAMES, SIZE, fps=10)


def damaged_video(path, image, broken_frames):
    """An MJPG .avi (one JPEG per frame) whose ``broken_frames`` have their JPEG data zeroed."""
    path = write_pan_video(path, image, FRAMES, SIZE, fps=10)
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 2) if data[i : i + 3] == b"\xff\xd8\xff"]  # JPEG start markers
    assert len(starts) == FRAMES
    for k in broken_frames:
        data[starts[k] : starts[k] + 600] = bytes(600)
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def broken_video(tmp_path_factory, group):
    return damaged_video(tmp_path_factory.mktemp("video") / "broken.avi", group, [4])


@pytest.fixture(scope="module")
def detector():
    return Detector()


def count_frames(path):
    capture = cv2.VideoCapture(str(path))
    count, size = 0, None
    while True:
        ok, frame = capture.read()
        if not ok:
            return count, size
        count, size = count + 1, frame.shape[:2]


def json_lines(text):
    return [json.loads(line) for line in text.splitlines()]


def fake_face(k):
    return Face((k, 0.0, k + 10.0, 10.0), 0.9, ((1.0, 1.0),) * 5)


class CountingDetector:
    """Returns one face whose box encodes how many times it was called."""

    def __init__(self):
        self.calls = 0

    def __call__(self, image):
        self.calls += 1
        return [fake_face(self.calls)]


class ScriptedCapture:
    """Stands in for cv2.VideoCapture: ``read`` succeeds or fails as scripted."""

    def __init__(self, script):
        self.script = list(script)

    def read(self):
        if self.script and self.script.pop(0):
            return True, np.zeros((4, 6, 3), np.uint8)
        return False, None


# ---------------------------------------------------------------- reading


def test_is_video():
    assert is_video("a/b.MP4") and is_video("c.webm") and is_video("d.avi")
    assert not is_video("e.jpg") and not is_video("mp4")


def test_open_and_read_a_generated_video(pan_video):
    capture, info = open_video(pan_video)
    frames = list(read_frames(capture, info.frame_count))
    assert info.fps == 10 and info.size == SIZE and info.frame_count == FRAMES
    assert [f.index for f in frames] == list(range(FRAMES))
    assert all(f.image.shape == (*SIZE, 3) and f.image.dtype == np.uint8 and not f.error for f in frames)
    assert not np.array_equal(frames[0].image, frames[-1].image)  # the view pans


@pytest.mark.parametrize(
    "script, count, broken, good",
    [
        ([1, 1, 0, 1, 0, 0], 6, [2, 4, 5], [0, 1, 3]),  # broken in the middle and at the announced end
        ([1, 1, 0, 1, 0, 0], 4, [2], [0, 1, 3]),  # failures past the announced count end the video
        ([1, 0, 1], 0, [], [0]),  # unknown count: the first failure ends it
        ([1, 0, 1, 1], 0, [], [0]),
    ],
)
def test_read_frames_tells_broken_frames_from_the_end(script, count, broken, good):
    frames = list(read_frames(ScriptedCapture(script), count))
    assert [f.index for f in frames if f.image is None] == broken
    assert [f.index for f in frames if f.image is not None] == good
    assert all(f.error == "could not be decoded" for f in frames if f.image is None)


def test_read_frames_gives_up_after_many_failures_in_a_row():
    frames = list(read_frames(ScriptedCapture([1] + [0] * 200), 1000))
    assert len(frames) == 1 + MAX_FAILURES_IN_A_ROW
    assert "gave up on the rest" in frames[-1].error


# ---------------------------------------------------------------- the per-frame loop


def test_stride_detects_every_nth_frame_and_reuses_faces_in_between():
    frames = [Frame(k, np.zeros((8, 8, 3), np.uint8)) for k in range(7)]
    annotated = list(annotate_frames(frames, CountingDetector(), stride=3, draw=None))
    assert [a.detected for a in annotated] == [True, False, False, True, False, False, True]
    assert [a.faces[0].box[0] for a in annotated] == [1, 1, 1, 2, 2, 2, 3]
    assert all(a.image is None for a in annotated)


def test_a_broken_frame_is_reported_and_the_loop_goes_on():
    image = np.full((8, 8, 3), 50, np.uint8)
    frames = [Frame(k, None, "could not be decoded") if k == 2 else Frame(k, image) for k in range(6)]
    timings = {}
    annotated = list(annotate_frames(frames, CountingDetector(), stride=2, draw=draw_faces, timings=timings))
    assert [a.index for a in annotated] == list(range(6))
    assert [a.error for a in annotated] == ["", "", "could not be decoded", "", "", ""]
    assert [a.detected for a in annotated] == [True, False, False, True, False, True]  # 3: two frames after 0
    assert annotated[2].image is annotated[1].image  # the broken frame repeats the previous drawing
    assert annotated[3].image.shape == (8, 8, 3) and (annotated[3].image != 50).any()  # faces drawn
    assert set(timings) == {"decode", "detect", "draw"}
    record = annotated[2].to_dict(fps=4.0)
    assert record == {"frame": 2, "time": 0.5, "error": "could not be decoded"}


def test_annotate_frames_rejects_a_bad_stride():
    with pytest.raises(ValueError, match="stride must be at least 1"):
        list(annotate_frames([], CountingDetector(), stride=0))


def test_process_video_writes_every_frame(pan_video, detector, tmp_path):
    records = []
    out = tmp_path / "out" / "annotated.mp4"
    summary = process_video(
        pan_video, lambda image: detector.detect(image, color="RGB"), out,
        on_frame=lambda frame, info: records.append(frame.to_dict(info.fps)), progress=False,
    )
    assert count_frames(out) == (FRAMES, SIZE)
    assert (summary.frames, summary.detected, summary.broken) == (FRAMES, FRAMES, [])
    assert summary.faces == sum(len(r["faces"]) for r in records) > FRAMES  # several faces per frame
    assert [r["frame"] for r in records] == list(range(FRAMES)) and records[3]["time"] == 0.3
    assert summary.fps > 0 and "frames/s end to end" in summary.describe()


def test_a_video_without_a_good_frame_is_an_error(tmp_path, group, detector):
    path = damaged_video(tmp_path / "ruined.avi", group, range(FRAMES))
    out = tmp_path / "out.mp4"
    with pytest.raises(ValueError, match="ruined.avi is not a readable video: no frame could be decoded"):
        process_video(path, detector.detect, out, progress=False)
    assert not out.exists()
    with pytest.raises(ValueError, match="no frame could be decoded"):
        first_frame(path)


def test_first_frame_skips_broken_frames(broken_video, pan_video):
    frame = first_frame(broken_video)
    assert frame.shape == (*SIZE, 3) and frame.dtype == np.uint8
    assert np.abs(frame.astype(int) - first_frame(pan_video)).mean() < 10  # same picture, MJPG vs mp4v


def test_process_video_names_unreadable_files(tmp_path, detector):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(ValueError, match="notes.mp4 is not a readable video"):
        process_video(text, detector.detect, progress=False)
    with pytest.raises(FileNotFoundError, match="missing.mp4 does not exist"):
        process_video(tmp_path / "missing.mp4", detector.detect, progress=False)


# ---------------------------------------------------------------- the command line


def test_cli_video_to_out_file_with_json(pan_video, tmp_path, capsys):
    out = tmp_path / "faces.mp4"
    assert main(["detect", str(pan_video), "--out", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    records = json_lines(captured.out)
    assert [r["frame"] for r in records] == list(range(FRAMES))
    assert all(r["video"] == str(pan_video) and r["detected"] and r["faces"] for r in records)
    assert set(records[0]["faces"][0]) == {"box", "score", "landmarks"}
    assert "frames/s end to end" in captured.err and f"wrote {out}" in captured.err  # summary off stdout
    assert count_frames(out) == (FRAMES, SIZE)


def test_cli_video_stride_and_json_file(pan_video, tmp_path, capsys):
    lines = tmp_path / "frames.jsonl"
    assert main(["detect", str(pan_video), "--stride", "4", "--json-file", str(lines), "--out", str(tmp_path)]) == 0
    records = json_lines(lines.read_text())
    assert [r["detected"] for r in records] == [k % 4 == 0 for k in range(FRAMES)]
    assert records[1]["faces"] == records[0]["faces"] and records[5]["faces"] == records[4]["faces"]
    out = capsys.readouterr().out
    assert "detector run on 3" in out and "frames/s" in out  # summary on stdout when JSON goes to a file
    assert count_frames(tmp_path / "pan_faces.mp4") == (FRAMES, SIZE)


def test_cli_keeps_going_past_a_broken_frame(broken_video, tmp_path, capsys):
    out = tmp_path / "faces.mp4"
    assert main(["detect", str(broken_video), "--out", str(out), "--json"]) == 1
    captured = capsys.readouterr()
    assert f"{broken_video}: frame 4 could not be decoded; skipped" in captured.err
    records = json_lines(captured.out)
    assert [r["frame"] for r in records] == list(range(FRAMES))
    assert records[4]["error"] == "could not be decoded" and "faces" not in records[4]
    assert all(r["faces"] for r in records[5:])
    assert count_frames(out) == (FRAMES, SIZE)  # the broken frame repeats the previous one


def test_cli_reports_a_corrupt_video_and_still_does_the_image(tmp_path, capsys):
    corrupt = tmp_path / "clip.mov"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    assert main(["detect", str(corrupt), str(tmp_path / "gone.mkv"), IMAGE, "--json"]) == 1
    captured = capsys.readouterr()
    assert "clip.mov is not a readable video" in captured.err and "gone.mkv does not exist" in captured.err
    assert "Traceback" not in captured.err
    assert [r["image"] for r in json_lines(captured.out)] == [IMAGE]


@pytest.mark.parametrize(
    "args, message",
    [([IMAGE, "--out", "one.mp4"], "--out one.mp4 names one video file"),
     (["--stride", "0"], "argument --stride: must be between 1 and 10,000, got 0")],
)
def test_cli_rejects_bad_video_options(pan_video, args, message, capsys):
    try:
        status = main(["detect", str(pan_video), *args])
    except SystemExit as exit:  # argparse's own checks
        status = exit.code
    assert status == 2
    assert message in capsys.readouterr().err


# ---------------------------------------------------------------- benchmark


@pytest.mark.slow
def test_bench_video_reports_end_to_end_and_model_alone(detector):
    result = bench_video(detector, frames=3, repeats=1, rounds=1)
    assert result["frames"] == 3 and result["size"] == (480, 640)
    assert result["fps"] == pytest.approx(1000 / result["end_to_end_ms"])
    assert set(result["stage_ms"]) == {"decode", "detect", "draw", "encode"}
    stages = result["stage_ms"]  # drawing and encoding overlap detection in the writer thread
    assert all(ms > 0 for ms in stages.values()) and stages["decode"] + stages["detect"] <= result["end_to_end_ms"]
    assert result["model_ms"] > 0
    text = "\n".join(video_lines(result))
    assert "640x480 video at 1 thread" in text and "of 60 frames/s end to end" in text and "[paper Tab. 5]" in text
