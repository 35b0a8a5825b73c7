"""rfcore.viz.evaluation: the NMS picture, precision-recall and CED figures."""

import numpy as np
import pytest

from rfcore.detector import Face
from rfcore.evaluation import GroundTruth, ImagePredictions, evaluate
from rfcore.evaluation.truth import no_landmarks
from rfcore.viz.draw import FACE_COLOR, iou_colors
from rfcore.viz.evaluation import draw_nms, plot_ced, plot_pr_curves


def curves(scores):
    """Curves of subsets "a" (both faces) and "b" (the first) for detections on two faces with ``scores``."""
    boxes = np.array([[0, 0, 20, 20], [50, 0, 20, 20]], float)
    truth = GroundTruth(("i",), ("i.jpg",), (boxes,), {"a": (np.ones(2, bool),), "b": (np.array([True, False]),)},
                        (no_landmarks(boxes),))
    return evaluate(truth, {"i": ImagePredictions(boxes, np.array(scores, float))})


def test_pr_curves_one_panel_per_subset_one_line_per_run():
    fig = plot_pr_curves({"first": curves([0.9, 0.5]), "second": curves([0.5, 0.9])}, title="t")
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["a (2 faces)", "b (1 faces)"]
    assert all(len(ax.get_lines()) == 2 for ax in axes)
    labels = [text.get_text() for text in axes[0].get_legend().get_texts()]
    assert labels == ["first: 1.000", "second: 1.000"]
    recall, precision = axes[0].get_lines()[0].get_data()
    assert recall.min() > 0 and precision.max() == 1.0  # thresholds above every score are left out


def test_pr_curves_need_the_same_subsets():
    with pytest.raises(ValueError, match="run 'other' has no curve for"):
        plot_pr_curves({"first": curves([0.9, 0.5]), "other": {"a": curves([0.9, 0.5])["a"]}})
    with pytest.raises(ValueError, match="no runs"):
        plot_pr_curves({})


def test_ced_one_line_per_run_with_failure_rates():
    fig = plot_ced({"good": np.array([0.01, 0.02]), "bad": np.array([0.05, 0.3])}, max_error=0.2)
    (ax,) = fig.axes
    assert len(ax.get_lines()) == 3  # two runs and the failure limit
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == ["good: 2 faces, 0.0% fail", "bad: 2 faces, 50.0% fail"]
    x, share = ax.get_lines()[1].get_data()
    assert x[-1] == pytest.approx(0.2) and share[-1] == 0.5


def test_nms_panels_show_candidates_best_on_top_and_kept_faces():
    image = np.zeros((40, 60, 3), np.uint8)
    candidates = np.array([[10, 10, 30, 30], [10, 10, 30, 30], [40, 5, 55, 20]], float)  # first two coincide
    scores = np.array([0.9, 0.3, 0.6])
    kept = [Face((10.0, 10.0, 30.0, 30.0), 0.9, ((15.0, 15.0),) * 5)]
    picture = draw_nms(image, candidates, scores, kept)
    assert picture.shape == (40, 2 * 60 + 4, 3)
    before, after = picture[:, :60], picture[:, 64:]
    assert (before[20, 10] == iou_colors([0.9])[0]).all()  # the 0.9 box drawn over the 0.3 one
    assert (before[12, 40] == iou_colors([0.6])[0]).all()
    assert (after[20, 10] == FACE_COLOR).all() and (after[12, 40] == 0).all()  # only the kept face
    assert (image == 0).all()  # input untouched


def test_nms_panels_cut_to_a_region():
    image = np.zeros((40, 60, 3), np.uint8)
    picture = draw_nms(image, np.array([[10, 10, 30, 30]], float), np.array([0.8]), [], region=(5, 5, 35, 25))
    assert picture.shape == (20, 2 * 30 + 4, 3)
    assert (picture[5, 5] == iou_colors([0.8])[0]).all()  # box corner (10, 10) at (5, 5) of the region
