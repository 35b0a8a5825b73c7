"""rfcore.evaluation: the WIDER FACE protocol on hand-made ground truth with APs worked out by hand."""

import math

import numpy as np
import pytest
from builders import write_wider_mat

from rfcore.data import SyntheticFaces
from rfcore.detector import Face
from rfcore.evaluation import (
    ALL_FACES,
    GroundTruth,
    ImagePredictions,
    ced_curve,
    evaluate,
    evaluate_all,
    evaluate_landmarks,
    evaluate_samples,
    failure_rate,
    landmark_nme,
    load_label_file,
    load_wider_mat,
    read_prediction_file,
    read_predictions,
    truth_from_samples,
    voc_ap,
    wider_iou,
    write_predictions,
)
from rfcore.evaluation.protocol import normalise_scores
from rfcore.evaluation.truth import no_landmarks

A, B, C = [10, 10, 40, 50], [100, 10, 40, 50], [200, 10, 40, 50]  # faces x y w h, far apart
ELSEWHERE = [300, 200, 40, 50]  # overlaps no face


def one_image(faces, counts=None, landmarks=None, name="e/img") -> GroundTruth:
    """Ground truth of one image; ``counts`` marks the faces of subset "s" (default: all)."""
    boxes = np.array(faces, float).reshape(-1, 4)
    counts = np.ones(len(boxes), bool) if counts is None else np.array(counts, bool)
    points = no_landmarks(boxes) if landmarks is None else np.array(landmarks, float)
    return GroundTruth((name,), (f"{name}.jpg",), (boxes,), {"s": (counts,)}, (points,))


def dets(*rows) -> ImagePredictions:
    """Detections from ``(box x y w h, score)`` pairs."""
    boxes = np.array([box for box, _ in rows], float).reshape(-1, 4)
    return ImagePredictions(boxes, np.array([score for _, score in rows], float))


def ap(truth, predictions, subset="s") -> float:
    return evaluate(truth, predictions)[subset].ap


# ---------------------------------------------------------------- IoU, normalisation, VOC AP


def test_iou_counts_both_corners_as_pixels():
    box = np.array([[0, 0, 10, 10]], float)
    shifted = np.array([[5, 0, 10, 10], [10, 0, 10, 10], [11, 0, 10, 10], [0, 0, 10, 10]], float)
    # widths are w + 1: overlap 6 x 11 of 11 x 11 boxes; touching boxes share one pixel column
    np.testing.assert_allclose(wider_iou(box, shifted), [[66 / 176, 11 / 231, 0.0, 1.0]])
    assert wider_iou(np.zeros((0, 4)), box).shape == (0, 1)


def test_scores_are_min_max_normalised_over_the_whole_set():
    low, high, empty = normalise_scores([np.array([0.2, 0.6]), np.array([1.0]), np.array([])])
    np.testing.assert_allclose(low, [0.0, 0.5])
    np.testing.assert_allclose(high, [1.0])
    assert empty.shape == (0,)
    (same,) = normalise_scores([np.array([0.3, 0.3])])
    np.testing.assert_array_equal(same, [1.0, 1.0])


def test_voc_ap_is_the_area_under_the_precision_envelope():
    # points (recall, precision): (0.5, 1), (0.5, 0.5), (1, 2/3): envelope 1 up to recall 0.5, then 2/3
    assert voc_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])) == pytest.approx(5 / 6)
    # a precision dip followed by a rise: the envelope takes the later, higher precision
    assert voc_ap(np.array([0.25, 0.5, 1.0]), np.array([0.5, 0.4, 0.8])) == pytest.approx(0.8)
    assert math.isnan(voc_ap(np.full(3, np.nan), np.zeros(3)))


# ---------------------------------------------------------------- the protocol by hand


def test_perfect_detections_give_ap_one():
    truth = one_image([A, B, C])
    assert ap(truth, {"e/img": dets((A, 0.9), (B, 0.8), (C, 0.7))}) == pytest.approx(1.0)


def test_a_duplicate_detection_is_a_false_positive():
    truth = one_image([A, B])
    assert ap(truth, {"e/img": dets((A, 0.9), (B, 0.7))}) == pytest.approx(1.0)
    # normalised scores 1, 0.5, 0: (recall, precision) (1/2, 1), (1/2, 1/2), (1, 2/3) -> 1/2 + 1/2 * 2/3
    assert ap(truth, {"e/img": dets((A, 0.9), (A, 0.8), (B, 0.7))}) == pytest.approx(5 / 6)


def test_a_detection_on_an_ignored_face_changes_nothing():
    truth = one_image([A, B, C], counts=[True, False, True])
    without = dets((A, 0.9), (ELSEWHERE, 0.8), (C, 0.6))
    with_ignored = dets((A, 0.9), (ELSEWHERE, 0.8), (B, 0.7), (C, 0.6))
    assert ap(truth, {"e/img": without}) == pytest.approx(5 / 6)
    assert ap(truth, {"e/img": with_ignored}) == pytest.approx(5 / 6)
    # when B counts it is a true positive: (1/3, 1), (1/3, 1/2), (2/3, 2/3), (1, 3/4)
    assert ap(one_image([A, B, C]), {"e/img": with_ignored}) == pytest.approx(1 / 3 + 2 / 3 * 3 / 4)


def test_a_detection_takes_its_best_face_without_falling_back():
    wide = [10, 10, 44, 50]  # IoU 0.91 with A, 0.96 with the ignored face
    truth = one_image([[12, 10, 42, 50], A], counts=[False, True])
    assert wider_iou(np.array([wide], float), truth.boxes[0]).argmax() == 0
    curve = evaluate(truth, {"e/img": dets((wide, 0.9))})["s"]
    assert curve.ap == 0.0 and curve.recall.max() == 0.0 and curve.precision.max() == 0.0


def test_iou_of_exactly_one_half_finds_the_face():
    face = [0, 0, 9, 9]  # 10 x 10 pixels in the inclusive convention
    half = [0, 0, 9, 4]  # its top 10 x 5 pixels: IoU 50 / 100
    assert wider_iou(np.array([half], float), np.array([face], float))[0, 0] == 0.5
    assert ap(one_image([face]), {"e/img": dets((half, 0.5))}) == pytest.approx(1.0)


@pytest.mark.parametrize("false_first", [False, True])
def test_tied_scores_enter_together_in_any_order(false_first):
    truth = one_image([A, B])
    tied = [(A, 0.9), (ELSEWHERE, 0.9)]
    rows = [*(tied[::-1] if false_first else tied), (B, 0.5)]
    # both at the top threshold: (1/2, 1/2), then (1, 2/3); envelope 2/3 everywhere
    assert ap(truth, {"e/img": dets(*rows)}) == pytest.approx(2 / 3)
    assert ap(truth, {"e/img": dets((A, 0.9), (ELSEWHERE, 0.8), (B, 0.5))}) == pytest.approx(5 / 6)


def test_images_without_faces_are_skipped_and_every_counted_face_counts():
    truth = GroundTruth(
        ("e/faces", "e/empty", "e/missed", "e/ignored"),
        ("e/faces.jpg", "e/empty.jpg", "e/missed.jpg", "e/ignored.jpg"),
        (np.array([A, B], float), np.zeros((0, 4)), np.array([C], float), np.array([A], float)),
        {"s": (np.ones(2, bool), np.zeros(0, bool), np.ones(1, bool), np.zeros(1, bool))},
        (no_landmarks(np.zeros((2, 4))), no_landmarks(np.zeros((0, 4))), no_landmarks(np.zeros((1, 4))),
         no_landmarks(np.zeros((1, 4)))),
    )
    predictions = {
        "e/faces": dets((A, 0.9), (B, 0.5)),
        "e/empty": dets((A, 0.8)),  # no ground truth at all: not a false positive
        "e/missed": dets(),  # its face still counts: recall reaches 2/3 only
        "e/ignored": dets((ELSEWHERE, 0.4)),  # faces, none counted: a stray detection is a false positive
    }
    curve = evaluate(truth, predictions)["s"]
    assert curve.faces == 3
    # normalised scores: A 1, (empty 0.8), B 0.2, stray 0: (1/3, 1), (2/3, 1), (2/3, 2/3)
    assert curve.ap == pytest.approx(2 / 3)
    assert curve.recall[-1] == pytest.approx(2 / 3) and curve.precision[-1] == pytest.approx(2 / 3)


def test_pr_curve_has_one_point_per_threshold():
    curve = evaluate(one_image([A, B]), {"e/img": dets((A, 0.9), (B, 0.1))})["s"]
    assert curve.thresholds.shape == curve.precision.shape == curve.recall.shape == (1000,)
    assert curve.thresholds[0] == pytest.approx(0.999) and curve.thresholds[-1] == 0.0
    assert (np.diff(curve.recall) >= 0).all()
    assert curve.recall[0] == 0.5 and curve.recall[-1] == 1.0


def test_missing_predictions_are_named():
    with pytest.raises(KeyError, match="no predictions for 1 of 1 images, e.g. 'e/img'"):
        evaluate(one_image([A]), {})


def test_a_subset_without_faces_has_no_ap():
    curve = evaluate(one_image([A], counts=[False]), {"e/img": dets((A, 0.9))})["s"]
    assert curve.faces == 0 and math.isnan(curve.ap)


# ---------------------------------------------------------------- the official .mat files


FACES = {
    "0--Parade/p_1": [A, B, C],
    "0--Parade/p_2": [A],
    "1--Handshaking/h_1": [B, C],
}
SUBSETS = {
    "easy": {"0--Parade/p_1": [1]},
    "medium": {"0--Parade/p_1": [1, 2], "1--Handshaking/h_1": [2]},
    "hard": {"0--Parade/p_1": [1, 2, 3], "0--Parade/p_2": [1], "1--Handshaking/h_1": [1, 2]},
}


@pytest.fixture
def gt_dir(tmp_path):
    return write_wider_mat(tmp_path / "ground_truth", FACES, SUBSETS)


def test_official_mat_files_load_in_event_order(gt_dir):
    truth = load_wider_mat(gt_dir)
    assert truth.names == tuple(FACES)
    assert truth.image_files == ("0--Parade/p_1.jpg", "0--Parade/p_2.jpg", "1--Handshaking/h_1.jpg")
    np.testing.assert_array_equal(truth.boxes[0], [A, B, C])
    assert list(truth.subsets) == ["easy", "medium", "hard"]
    assert [m.tolist() for m in truth.subsets["medium"]] == [[True, True, False], [False], [False, True]]
    assert [truth.face_count(s) for s in truth.subsets] == [1, 3, 6]
    assert not truth.has_landmarks()
    assert truth.head(2).names == tuple(FACES)[:2] and truth.head(2).face_count("hard") == 4


def test_official_protocol_end_to_end_through_prediction_files(gt_dir, tmp_path):
    truth = load_wider_mat(gt_dir)
    perfect = {name: dets(*[(box, 0.9 - 0.1 * k) for k, box in enumerate(FACES[name])]) for name in truth.names}
    write_predictions(tmp_path / "pred", truth, perfect)
    curves = evaluate(truth, read_predictions(tmp_path / "pred", truth))
    assert {name: c.ap for name, c in curves.items()} == pytest.approx({"easy": 1.0, "medium": 1.0, "hard": 1.0})
    # a lower duplicate of B in p_1 is a false positive in medium, where B counts; easy ignores B
    perfect["0--Parade/p_1"] = dets((A, 0.9), (B, 0.8), (B, 0.85), (C, 0.7))
    curves = evaluate(truth, perfect)
    assert curves["easy"].ap == pytest.approx(1.0)
    assert curves["medium"].ap < 1.0


def test_missing_mat_files_are_all_named(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_wider_mat(tmp_path)
    for name in ("wider_face_val.mat", "wider_easy_val.mat", "wider_medium_val.mat", "wider_hard_val.mat"):
        assert str(tmp_path / name) in str(info.value)


def test_a_file_that_is_not_matlab_is_named(gt_dir):
    (gt_dir / "wider_easy_val.mat").write_text("not a mat file")
    with pytest.raises(ValueError, match=r"wider_easy_val\.mat: cannot be read as a MATLAB \.mat file"):
        load_wider_mat(gt_dir)


def test_an_out_of_range_face_index_names_file_and_image(tmp_path):
    gt_dir = write_wider_mat(tmp_path, FACES, {**SUBSETS, "hard": {"1--Handshaking/h_1": [3]}})
    with pytest.raises(ValueError, match=r"wider_hard_val\.mat: gt_list of 1--Handshaking/h_1 holds face 3, "
                                         r"but the image has faces 1\.\.2"):
        load_wider_mat(gt_dir)


def test_a_missing_variable_is_named(gt_dir):
    from scipy.io import savemat

    savemat(gt_dir / "wider_medium_val.mat", {"other": np.zeros(2)})
    with pytest.raises(ValueError, match=r"wider_medium_val\.mat: no variable gt_list \(found other\)"):
        load_wider_mat(gt_dir)


# ---------------------------------------------------------------- prediction files


def test_prediction_files_round_trip(tmp_path):
    truth = GroundTruth(("0--Parade/a", "1--Handshaking/b"), ("0--Parade/a.jpg", "1--Handshaking/b.jpg"),
                        (np.array([A], float), np.array([B, C], float)), {"s": (np.ones(1, bool), np.ones(2, bool))},
                        (no_landmarks(np.zeros((1, 4))), no_landmarks(np.zeros((2, 4)))))
    predictions = {"0--Parade/a": dets((A, 0.75)), "1--Handshaking/b": dets((B, 0.5), ([1.25, 2.5, 30.75, 4], 0.125))}
    paths = write_predictions(tmp_path, truth, predictions)
    assert paths == [tmp_path / "0--Parade" / "a.txt", tmp_path / "1--Handshaking" / "b.txt"]
    lines = paths[1].read_text().splitlines()
    assert lines == ["1--Handshaking/b.jpg", "2", "100.00 10.00 40.00 50.00 0.50000000",
                     "1.25 2.50 30.75 4.00 0.12500000"]
    back = read_predictions(tmp_path, truth)
    for name in truth.names:
        np.testing.assert_array_equal(back[name].boxes, predictions[name].boxes)
        np.testing.assert_array_equal(back[name].scores, predictions[name].scores)
    assert evaluate(truth, back)["s"].ap == evaluate(truth, predictions)["s"].ap


def test_official_files_with_trailing_spaces_and_no_faces_read(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("x\n2\n1 2 3 4 0.9 \n5 6 7 8 0.1 \n\n")
    predictions = read_prediction_file(path)
    np.testing.assert_array_equal(predictions.boxes, [[1, 2, 3, 4], [5, 6, 7, 8]])
    path.write_text("x\n0\n")
    assert len(read_prediction_file(path)) == 0 and read_prediction_file(path).boxes.shape == (0, 4)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", ":1: expected the image name on line 1 and the number of faces on line 2"),
        ("x.jpg\n", ":2: expected the image name on line 1"),
        ("x.jpg\ntwo\n", ":2: expected the number of faces (a whole number >= 0), got 'two'"),
        ("x.jpg\n-1\n", ":2: expected the number of faces"),
        ("x.jpg\n2\n1 2 3 4 0.5\n", ":4: line 2 announces 2 faces, the file has 1 face lines"),
        ("x.jpg\n1\n1 2 3 4 0.5\n5 6 7 8 0.4\n", ":4: more face lines than the 1 announced on line 2"),
        ("x.jpg\n1\n1 2 3 0.5\n", ":3: expected 5 numbers 'x y w h score', got 4: '1 2 3 0.5'"),
        ("x.jpg\n1\n1 2 w 4 0.5\n", ":3: value 3 is not a finite number: 'w'"),
        ("x.jpg\n1\n1 2 3 4 nan\n", ":3: value 5 is not a finite number: 'nan'"),
        ("x.jpg\n1\n1 2 -3 4 0.5\n", ":3: negative box size w=-3, h=4"),
    ],
)
def test_malformed_prediction_files_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "event" / "image.txt"
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        read_prediction_file(path)
    assert str(info.value).startswith(f"{path}{message}")


def test_missing_prediction_files_are_named(tmp_path):
    truth = one_image([A], name="0--Parade/a")
    with pytest.raises(FileNotFoundError, match="1 of 1 prediction files are missing"):
        read_predictions(tmp_path, truth)
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "0--Parade" / "a.txt")):
        read_predictions(tmp_path, truth)


# ---------------------------------------------------------------- label.txt sets and synthetic faces


def test_label_file_sets_count_every_face(tmp_path):
    points = "15 20 0.0 25 21 0.0 20 26 1.0 16 33 0.0 24 34 0.0 0.8"
    (tmp_path / "label.txt").write_text(f"# a/1.jpg\n10 12 20 30 {points}\n40 5 10 10 {'-1 ' * 15}0.3\n# b/2.png\n")
    truth = load_label_file(tmp_path / "label.txt")
    assert truth.names == ("a/1", "b/2") and truth.image_files == ("a/1.jpg", "b/2.png")
    assert list(truth.subsets) == [ALL_FACES] and truth.face_count(ALL_FACES) == 2
    np.testing.assert_array_equal(truth.boxes[0], [[10, 12, 20, 30], [40, 5, 10, 10]])
    assert truth.landmarks[0][0, 2].tolist() == [20, 26] and (truth.landmarks[0][1] == -1).all()
    perfect = {"a/1": dets(([10, 12, 20, 30], 0.9), ([40, 5, 10, 10], 0.8)), "b/2": dets()}
    assert evaluate(truth, perfect)[ALL_FACES].ap == pytest.approx(1.0)


def test_label_file_names_must_differ_beyond_the_extension(tmp_path):
    (tmp_path / "label.txt").write_text("# a/1.jpg\n1 1 5 5\n# a/1.png\n1 1 5 5\n")
    with pytest.raises(ValueError, match="two images are named 'a/1' apart from their extension"):
        load_label_file(tmp_path / "label.txt")


class PerfectDetector:
    """Stands in for rfcore.detector.Detector: returns the sample's own faces, landmarks shifted by ``shift`` px."""

    def __init__(self, samples, shift=0.0):
        self.faces = {id(s.image): s for s in samples}
        self.shift = shift

    def detect(self, image, color=None):
        sample = self.faces[id(image)]
        return [Face(tuple(box), 0.9, tuple(map(tuple, points + self.shift)))
                for box, points in zip(sample.boxes.tolist(), sample.landmarks)]


def test_synthetic_faces_evaluate_with_the_same_metric():
    samples = [SyntheticFaces(3, 96, faces=(1, 3), min_face=16, seed=5)[i] for i in range(3)]
    truth = truth_from_samples(samples)
    assert truth.names == ("000000", "000001", "000002") and truth.has_landmarks()
    result = evaluate_samples(PerfectDetector(samples, shift=3.0), samples)
    faces = sum(len(s.boxes) for s in samples)
    assert result.images == 3 and result.detections == faces
    assert result.curves[ALL_FACES].ap == pytest.approx(1.0)
    sizes = np.concatenate([np.sqrt(b[:, 2] * b[:, 3]) for b in truth.boxes])
    np.testing.assert_allclose(np.sort(result.landmarks.errors), np.sort(3 * math.sqrt(2) / sizes), rtol=1e-5)
    assert result.landmarks.annotated == faces
    summary = result.summary()
    assert summary["subsets"] == {"all": {"ap": pytest.approx(1.0), "faces": faces}}
    assert summary["landmarks"]["measured_faces"] == faces


# ---------------------------------------------------------------- landmarks


def test_nme_is_the_mean_point_error_over_sqrt_of_the_box_area():
    truth_points = np.zeros((1, 5, 2))
    points = truth_points.copy()
    points[0, 1] = [6.0, 8.0]  # one point 10 px off, the mean 2 px
    np.testing.assert_allclose(landmark_nme(points, truth_points, np.array([[0, 0, 4, 16.0]])), [2 / 8])


def test_landmarks_are_measured_on_the_true_positive_of_annotated_faces():
    points = np.arange(10, dtype=float).reshape(5, 2)
    truth = one_image([A, B, C], landmarks=[points + 20, points + 100, np.full((5, 2), -1.0)])
    predictions = ImagePredictions(
        np.array([A, A, C, ELSEWHERE], float),
        np.array([0.9, 0.95, 0.8, 0.99]),
        np.stack([points + 20, points + 22, points, points]),  # the 0.95 detection is A's true positive: 2 px off
    )
    result = evaluate_landmarks(truth, {"e/img": predictions})
    # B is not found, C has no annotation
    np.testing.assert_allclose(result.errors, [2 * math.sqrt(2) / math.sqrt(40 * 50)])
    assert result.annotated == 2
    assert result.failure_rate == 0.0
    assert evaluate_all(truth, {"e/img": predictions}).landmarks.errors.shape == (1,)
    assert evaluate_all(truth, {"e/img": dets((A, 0.9))}).landmarks is None  # predictions without landmarks


def test_ced_and_failure_rate_by_hand():
    errors = np.array([0.05, 0.1, 0.3])
    x, share = ced_curve(errors, max_error=0.2, points=5)  # x = 0, 0.05, 0.1, 0.15, 0.2
    np.testing.assert_allclose(share, [0, 1 / 3, 2 / 3, 2 / 3, 2 / 3])
    assert failure_rate(errors) == pytest.approx(1 / 3)  # only NME strictly above 10% fails
    assert math.isnan(failure_rate(np.zeros(0)))
