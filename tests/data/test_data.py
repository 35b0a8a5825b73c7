"""rfcore.data.widerface and rfcore.data.collate on tiny label files written to tmp_path."""

import re
import warnings

import cv2
import numpy as np
import pytest
import torch

from rfcore.boxes import POSITIVE
from rfcore.config import get_config
from rfcore.data import FaceSample, TrainTransform, WiderFace, collate_faces, face_loader, read_label_file
from rfcore.loss import multitask_loss
from rfcore.matching import TargetAssigner
from rfcore.model.retinaface import RetinaFaceOutput

FACE_1 = "10 12 20 30 15 20 0.0 25 21 0.0 20 26 1.0 16 33 0.0 24 34 0.0 0.82"
FACE_NO_POINTS = "40 5 10 10 " + "-1.0 " * 15 + "0.3"
MEAN_BGR = (104.0, 117.0, 123.0)


def write_dataset(root, label_text: str, images=None):
    """Write ``label.txt`` and random PNG images ``{relative path: (height, width)}`` under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "label.txt").write_text(label_text)
    (root / "images").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for name, (height, width) in (images or {}).items():
        path = root / "images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    return root


def lines(*rows: str) -> str:
    return "\n".join(rows) + "\n"


def test_train_layout_reads_boxes_and_five_landmarks(tmp_path):
    root = write_dataset(
        tmp_path, lines("# a/1.png", FACE_1, FACE_NO_POINTS, "# b/2.png"), {"a/1.png": (60, 80), "b/2.png": (30, 40)}
    )
    dataset = WiderFace(root)

    assert len(dataset) == 2 and dataset.skipped == [] and dataset.dropped_boxes == 0
    sample = dataset[0]
    assert sample.image.shape == (60, 80, 3) and sample.image.dtype == np.uint8
    np.testing.assert_array_equal(sample.boxes, [[10, 12, 30, 42], [40, 5, 50, 15]])  # x y w h -> x1 y1 x2 y2
    np.testing.assert_array_equal(sample.landmarks[0], [[15, 20], [25, 21], [20, 26], [16, 33], [24, 34]])
    assert (sample.landmarks[1] == -1).all()
    assert sample.has_landmarks.tolist() == [True, False]
    assert sample.path.endswith("a/1.png")
    assert dataset[1].boxes.shape == (0, 4) and dataset[1].landmarks.shape == (0, 5, 2)


def test_a_face_whose_first_landmark_x_is_negative_has_no_landmarks(tmp_path):
    face = "1 1 9 9 -1 -1 -1 5 5 0 4 4 0 3 7 0 6 7 0 0.5"  # only the first point is -1
    root = write_dataset(tmp_path, lines("# x.png", face), {"x.png": (10, 10)})
    sample = WiderFace(root)[0]
    assert (sample.landmarks == -1).all() and not sample.has_landmarks.any()


def test_val_layout_has_boxes_only(tmp_path):
    root = write_dataset(tmp_path, lines("# x.png", "1 2 3 4", "5 6 7 8"), {"x.png": (20, 20)})
    sample = WiderFace(root)[0]
    np.testing.assert_array_equal(sample.boxes, [[1, 2, 4, 6], [5, 6, 12, 14]])
    assert sample.landmarks.shape == (2, 5, 2) and (sample.landmarks == -1).all()


def test_images_are_rgb(tmp_path):
    root = write_dataset(tmp_path, lines("# blue.png"))
    bgr_blue = np.zeros((4, 5, 3), np.uint8)
    bgr_blue[..., 0] = 255
    cv2.imwrite(str(root / "images" / "blue.png"), bgr_blue)
    assert WiderFace(root)[0].image[0, 0].tolist() == [0, 0, 255]


def test_any_folder_in_the_layout_and_a_label_file_path(tmp_path):
    root = write_dataset(tmp_path / "mine", lines("# deep/er/face.png", "1 1 5 5"), {"deep/er/face.png": (10, 10)})
    pictures = tmp_path / "pictures"
    (root / "images").rename(pictures)
    dataset = WiderFace(root / "label.txt", images=pictures)
    assert len(dataset) == 1 and dataset[0].boxes.tolist() == [[1, 1, 6, 6]]


def test_header_fields_after_the_path_are_ignored(tmp_path):
    root = write_dataset(tmp_path, lines("# x.png 20 30", "1 2 3 4"), {"x.png": (30, 20)})
    assert WiderFace(root).entries[0].image == "x.png"


@pytest.mark.parametrize(
    "text, message",
    [
        (lines("# x.png", FACE_1, "1 2 3 4 5 6 7 8 9 10 11 12 13"),
         r"label\.txt:3: expected 20 numbers per face \(x y w h, five 'lx ly flag' triples, score\) "
         r"like line 2, got 13"),
        (lines("# x.png", "1 2 3 4", FACE_1),
         r"label\.txt:3: expected 4 numbers per face \(x y w h\) like line 2, got 20"),
        (lines("# x.png", "1 2 3"), r"label\.txt:2: expected 4 \(x y w h\) or 20 .* numbers per face, got 3"),
        (lines("# x.png", "1 2 abc 4"), r"label\.txt:2: value 3 is not a finite number: 'abc'"),
        (lines("# x.png", "1 2 nan 4"), r"label\.txt:2: value 3 is not a finite number: 'nan'"),
        (lines("# x.png", "1 2 3 4", "", "7 8 -5 4"), r"label\.txt:4: negative box size w=-5, h=4"),
        (lines("# x.png", "1 2 3 -0.5"), r"label\.txt:2: negative box size w=3, h=-0\.5"),
        (lines("1 2 3 4", "# x.png"), r"label\.txt:1: a face line before any image header"),
        (lines("# x.png", "1 2 3 4", "#", "1 2 3 4"), r"label\.txt:3: a '#' header without an image path"),
    ],
)
def test_malformed_lines_name_the_file_and_line(tmp_path, text, message):
    root = write_dataset(tmp_path, text, {"x.png": (20, 20)})
    with pytest.raises(ValueError, match=message):
        WiderFace(root)
    with pytest.raises(ValueError, match=message):
        read_label_file(root / "label.txt")


def test_binary_label_file_is_a_clear_error(tmp_path):
    (tmp_path / "label.txt").write_bytes(b"# x.png\n\xff\xfe\x00")
    with pytest.raises(ValueError, match=r"label\.txt: not a UTF-8 text file"):
        read_label_file(tmp_path / "label.txt")


def test_boxes_wholly_outside_their_image_are_dropped_and_named(tmp_path):
    root = write_dataset(tmp_path, lines("# x.png", "1 2 3 4", "25 2 3 4", "-9 2 5 4", "18 18 10 10"),
                         {"x.png": (20, 20)})
    with pytest.warns(UserWarning, match=re.escape(
            f"dropped 2 box(es) lying wholly outside their image, first: {root / 'label.txt'}:1: x.png box "
            "[25.0, 2.0, 28.0, 6.0] in a 20x20 image; check the label file")):
        dataset = WiderFace(root)
    assert dataset[0].boxes.tolist() == [[1, 2, 4, 6], [18, 18, 28, 28]]  # one cut by the border stays
    assert len(dataset.outside_boxes) == 2


def test_degenerate_boxes_are_dropped_with_a_count(tmp_path):
    root = write_dataset(tmp_path, lines("# x.png", "1 2 0 4", "1 2 3 4", "5 5 3 0", "# y.png", "0 0 0 0"),
                         {"x.png": (20, 20), "y.png": (20, 20)})
    with pytest.warns(UserWarning, match=r"dropped 3 box\(es\) of zero width or height"):
        dataset = WiderFace(root)
    assert dataset.dropped_boxes == 3 and len(dataset) == 2
    assert dataset[0].boxes.tolist() == [[1, 2, 4, 6]]
    assert dataset[1].boxes.shape == (0, 4)


def test_missing_image_is_reported_by_path(tmp_path):
    root = write_dataset(tmp_path, lines("# x.png", "1 2 3 4", "# gone/y.png", "1 2 3 4"), {"x.png": (20, 20)})
    expected = re.escape(f"label.txt:3: image {root / 'images' / 'gone' / 'y.png'} does not exist")
    with pytest.raises(FileNotFoundError, match=expected):
        WiderFace(root)


def test_unreadable_image_is_reported_by_path(tmp_path):
    root = write_dataset(tmp_path, lines("# x.png", "1 2 3 4", "# notes.jpg"), {"x.png": (20, 20)})
    (root / "images" / "notes.jpg").write_text("not an image")
    with pytest.raises(ValueError, match=re.escape(f"image {root / 'images' / 'notes.jpg'} is not a readable image")):
        WiderFace(root)


def test_a_damaged_header_is_refused_when_the_dataset_is_built(tmp_path):
    root = write_dataset(tmp_path, lines("# broken.png"))
    (root / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(ValueError, match=re.escape(f"label.txt:1: image {root / 'images' / 'broken.png'} is a PNG "
                                                   "file whose header is damaged")):
        WiderFace(root)


def test_corrupt_image_data_fails_on_load_with_its_path(tmp_path):
    root = write_dataset(tmp_path, lines("# broken.png"))
    header = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR" + (2).to_bytes(4, "big") * 2 + b"\x08\x02\x00\x00\x00"
    (root / "images" / "broken.png").write_bytes(header + b"garbage" * 10)
    dataset = WiderFace(root)  # the header looks fine
    with pytest.raises(ValueError, match=re.escape(f"{root / 'images' / 'broken.png'} is not a readable image")):
        dataset[0]


def test_missing_label_file_or_images_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"label file .*label\.txt does not exist"):
        WiderFace(tmp_path)
    (tmp_path / "label.txt").write_text("")
    with pytest.raises(FileNotFoundError, match=r"images folder .*images does not exist"):
        WiderFace(tmp_path)


def test_skip_bad_counts_skipped_images_and_warns_once(tmp_path):
    text = lines(
        "# good.png", "1 2 3 4",
        "# bad_line.png", "1 2 3 4", "1 two 3 4",
        "# missing.png", "1 2 3 4",
        "# negative.png", "1 2 -3 4",
        "# notes.jpg",
        "# good2.png", "1 2 0 4",
    )
    images = {name: (10, 10) for name in ("good.png", "bad_line.png", "negative.png", "good2.png")}
    root = write_dataset(tmp_path, text, images)
    (root / "images" / "notes.jpg").write_text("text")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = WiderFace(root, skip_bad=True)

    assert [entry.image for entry in dataset.entries] == ["good.png", "good2.png"]
    assert len(dataset.skipped) == 4
    assert [re.search(r"label\.txt:(\d+):", m).group(1) for m in dataset.skipped] == ["5", "9", "6", "10"]
    assert dataset.dropped_boxes == 1
    skipped_warnings = [w for w in caught if "skipped 4 bad image(s)" in str(w.message)]
    assert len(skipped_warnings) == 1
    assert len(caught) == 2  # one for the skipped images, one for the dropped box


def test_augmentation_is_deterministic_for_a_seed_and_epoch(tmp_path):
    root = write_dataset(tmp_path, lines("# x.png", FACE_1, FACE_NO_POINTS), {"x.png": (60, 80)})
    transform = TrainTransform(size=32)

    def draw(seed, epoch=0):
        dataset = WiderFace(root, transform, seed=seed)
        dataset.set_epoch(epoch)
        return dataset[0]

    first, again = draw(3), draw(3)
    assert np.array_equal(first.image, again.image) and np.array_equal(first.boxes, again.boxes)
    assert np.array_equal(first.landmarks, again.landmarks)
    assert first.image.shape == (32, 32, 3)
    assert not np.array_equal(first.image, draw(3, epoch=1).image)
    assert not np.array_equal(first.image, draw(4).image)


def test_workers_do_not_change_the_batches(tmp_path):
    names = [f"{k}.png" for k in range(6)]
    text = lines(*[row for name in names for row in (f"# {name}", FACE_1)])
    root = write_dataset(tmp_path, text, {name: (50, 60) for name in names})
    dataset = WiderFace(root, TrainTransform(size=24), seed=0)

    def batches(workers):
        return list(face_loader(dataset, get_config("mobilenet0.25"), batch_size=4, num_workers=workers, seed=1))

    in_process, with_workers = batches(0), batches(2)
    assert [len(b.paths) for b in in_process] == [4, 2]
    for a, b in zip(in_process, with_workers):
        assert a.paths == b.paths
        assert torch.equal(a.images, b.images) and torch.equal(a.faces.boxes, b.faces.boxes)


def sample(height, width, boxes=(), landmarks=None, fill=0):
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    points = np.full((len(boxes), 5, 2), -1, np.float32) if landmarks is None else np.array(landmarks, np.float32)
    return FaceSample(np.full((height, width, 3), fill, np.uint8), boxes, points, f"img{fill}")


def test_collate_with_an_image_without_faces():
    points = np.arange(10, dtype=np.float32).reshape(1, 5, 2)
    samples = [
        sample(8, 8, [[1, 1, 5, 5]], points, fill=1),
        sample(8, 8, fill=2),
        sample(8, 8, [[0, 0, 2, 2], [3, 3, 7, 8]], fill=3),
    ]
    samples[0].image[0, 0] = [10, 20, 30]

    batch = collate_faces(samples, MEAN_BGR)

    assert batch.images.shape == (3, 3, 8, 8) and batch.images.dtype == torch.float32
    assert batch.images[0, :, 0, 0].tolist() == [30 - 104, 20 - 117, 10 - 123]  # RGB -> BGR minus the mean
    assert batch.faces.num_images == 3
    assert batch.faces.image_index.tolist() == [0, 2, 2]
    assert batch.faces.boxes.tolist() == [[1, 1, 5, 5], [0, 0, 2, 2], [3, 3, 7, 8]]
    assert batch.faces.has_landmarks.tolist() == [True, False, False]
    assert batch.paths == ["img1", "img2", "img3"]


def test_collate_batch_without_faces_trains_negatives_only():
    cfg = get_config("mobilenet0.25")
    batch = collate_faces([sample(64, 64), sample(64, 64)], cfg.pixel_mean_bgr)
    targets = TargetAssigner(cfg, (64, 64))(batch.faces)
    assert targets.labels.shape[0] == 2 and not (targets.labels == POSITIVE).any()

    num_anchors = targets.labels.shape[1]
    output = RetinaFaceOutput(*(torch.randn(2, num_anchors, k) for k in (2, 4, 10)))
    terms = multitask_loss(output, targets, cfg)
    assert terms.box == 0 and terms.pts == 0 and terms.cls > 0


def test_collate_rejects_mixed_sizes():
    with pytest.raises(ValueError, match=r"cannot batch images of different shapes \[\(8, 8, 3\), \(8, 9, 3\)\]"):
        collate_faces([sample(8, 8), sample(8, 9)], MEAN_BGR)


def test_a_truncated_jpeg_is_named_with_its_label_line(tmp_path):
    root = write_dataset(tmp_path, lines("# a.jpg", "1 2 3 4", "# b.png", "1 2 3 4"), {"b.png": (20, 20)})
    whole = cv2.imencode(".jpg", np.full((40, 40, 3), 90, np.uint8))[1].tobytes()
    (root / "images" / "a.jpg").write_bytes(whole[: len(whole) - 40])
    with pytest.raises(ValueError, match=re.escape(f"{root / 'label.txt'}:1: image {root / 'images' / 'a.jpg'} is a "
                                                   "truncated JPEG")):
        WiderFace(root)
    with pytest.warns(UserWarning, match="skipped 1 bad image"):
        assert len(WiderFace(root, skip_bad=True)) == 1
