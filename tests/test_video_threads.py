"""Tests of rfcore.video_threads and the threaded, batched video loop: order kept, errors surfaced, same faces."""

import threading

import numpy as np
import pytest

from rfcore.video import annotate_frames, due_frames, process_video
from rfcore.video_files import Frame, first_frame, write_pan_video
from rfcore.video_threads import ReadAhead, WriteBehind


def test_read_ahead_keeps_order_and_runs_in_another_thread():
    threads = set()

    def items():
        for k in range(50):
            threads.add(threading.get_ident())
            yield k

    with ReadAhead(items(), size=3) as ahead:
        assert list(ahead) == list(range(50))
    assert threads and threading.get_ident() not in threads


def test_read_ahead_raises_the_readers_error_where_it_happened():
    def items():
        yield 1
        yield 2
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"), ReadAhead(items()) as ahead:
        got.extend(ahead)
    assert got == [1, 2]


def test_read_ahead_stops_its_thread_when_the_consumer_stops_early():
    with pytest.raises(ValueError, match="stop"), ReadAhead(iter(range(10**6)), size=2) as ahead:
        for item in ahead:
            if item == 5:
                raise ValueError("stop")
    assert not ahead.thread.is_alive()


def test_write_behind_consumes_in_order_and_waits_for_the_last_item():
    seen = []
    with WriteBehind(seen.append, size=2) as behind:
        for k in range(100):
            behind.put(k)
    assert seen == list(range(100)) and not behind.thread.is_alive()


def test_write_behind_raises_the_writers_error():
    def consume(item):
        if item == 3:
            raise OSError("cannot write frame 3")

    with pytest.raises(OSError, match="cannot write frame 3"), WriteBehind(consume) as behind:
        for k in range(5):
            behind.put(k)
    assert not behind.thread.is_alive()


class BatchCounter:
    """A detector of lists of images: one 'face' per image, numbered by call; records the batch sizes."""

    def __init__(self):
        self.sizes = []

    def __call__(self, images):
        self.sizes.append(len(images))
        return [[f"call {len(self.sizes)} image {k}"] for k in range(len(images))]


def test_batches_detect_the_frames_one_at_a_time_would_detect():
    image = np.zeros((8, 8, 3), np.uint8)
    frames = [Frame(k, None, "could not be decoded") if k == 4 else Frame(k, image) for k in range(11)]
    single = list(annotate_frames(frames, lambda image: ["face"], stride=2))
    detector = BatchCounter()
    batched = list(annotate_frames(frames, detector, stride=2, batch=4))
    assert [a.detected for a in batched] == [a.detected for a in single]
    assert [a.index for a in batched] == list(range(11))
    assert detector.sizes == [2, 2, 1]  # chunks 0-3, 4-7, 8-10: frames 0, 2 | 5 (4 is broken), 7 | 9
    assert batched[3].faces == ["call 1 image 1"] and batched[4].error  # frame 3 reuses frame 2's faces


def test_due_frames_and_a_bad_batch():
    image = np.zeros((2, 2, 3), np.uint8)
    chunk = [Frame(k, image) for k in range(5, 9)]
    assert [f.index for f in due_frames(chunk, last_detected=3, stride=3)] == [6]
    assert [f.index for f in due_frames(chunk, last_detected=None, stride=1)] == [5, 6, 7, 8]
    with pytest.raises(ValueError, match="batch must be at least 1"):
        list(annotate_frames(chunk, BatchCounter(), batch=0))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from rfcore.assets import IMAGES, load_image

    return write_pan_video(tmp_path_factory.mktemp("pipeline") / "pan.mp4", load_image(IMAGES / "group.jpg"), 9,
                           (96, 128), fps=10)


def test_process_video_with_batches_gives_the_faces_of_single_frames(video, tmp_path):
    from rfcore.detector import Detector

    detector = Detector()
    records = {1: [], 4: []}
    for batch, found in records.items():
        process_video(video, lambda images: detector.detect(images, color="RGB"), tmp_path / f"out{batch}.mp4",
                      on_frame=lambda frame, info, found=found: found.append(frame.faces), progress=False,
                      batch=batch)
    assert len(records[1]) == 9 and sum(map(len, records[1])) > 0
    for single, batched in zip(records[1], records[4]):
        assert len(single) == len(batched)
        for a, b in zip(single, batched):
            assert np.abs(np.subtract(a.box, b.box)).max() < 1e-3
    assert np.array_equal(first_frame(tmp_path / "out1.mp4"), first_frame(tmp_path / "out4.mp4"))


def test_a_failing_detector_leaves_no_video_and_stops_the_threads(video, tmp_path):
    def detect(image):
        raise RuntimeError("detector broke")

    before = threading.active_count()
    out = tmp_path / "never.mp4"
    with pytest.raises(RuntimeError, match="detector broke"):
        process_video(video, detect, out, progress=False)
    assert not out.exists() and not list(tmp_path.glob(".never*"))
    assert threading.active_count() == before
