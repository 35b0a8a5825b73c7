"""rfcore.bench.evaluation: the vectorised protocol and the slow loop reference agree."""

import numpy as np
import pytest

from rfcore.bench.evaluation import generated_set, loop_evaluate
from rfcore.cli import main
from rfcore.evaluation import GroundTruth, ImagePredictions, evaluate
from rfcore.evaluation.truth import no_landmarks


def with_edge_cases(truth: GroundTruth, predictions: dict) -> GroundTruth:
    """Add an image without faces, one without detections and one whose faces count nowhere."""
    extra = {
        "x/no_faces": (np.zeros((0, 4)), ImagePredictions(np.array([[5.0, 5, 20, 20]]), np.array([0.7]))),
        "x/no_detections": (np.array([[5.0, 5, 20, 20]]), ImagePredictions(np.zeros((0, 4)), np.zeros(0))),
        "x/ignored": (np.array([[5.0, 5, 20, 20]]), ImagePredictions(np.array([[5.0, 5, 20, 20], [90, 90, 9, 9]]),
                                                                     np.array([0.6, 0.61]))),
    }
    predictions.update({name: p for name, (_, p) in extra.items()})
    boxes = [b for b, _ in extra.values()]
    counts = [np.ones(len(boxes[0]), bool), np.ones(1, bool), np.zeros(1, bool)]
    return GroundTruth(
        truth.names + tuple(extra),
        truth.image_files + tuple(f"{name}.jpg" for name in extra),
        truth.boxes + tuple(boxes),
        {name: masks + tuple(counts) for name, masks in truth.subsets.items()},
        truth.landmarks + tuple(map(no_landmarks, boxes)),
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_vectorised_protocol_matches_the_loop_over_thresholds(seed):
    truth, predictions = generated_set(images=25, faces=12, detections=30, seed=seed)
    truth = with_edge_cases(truth, predictions)
    fast = {name: curve.ap for name, curve in evaluate(truth, predictions).items()}
    slow = loop_evaluate(truth, predictions)
    assert list(fast) == ["easy", "medium", "hard"]
    assert fast == pytest.approx(slow, abs=1e-12)
    assert 0.05 < fast["easy"] < fast["hard"] < 0.95  # a set where the details matter


def test_generated_set_has_ties_duplicates_and_nested_subsets():
    truth, predictions = generated_set(images=5, faces=40, detections=200, seed=3)
    assert len(truth) == 5 and all(len(p) == 200 for p in predictions.values())
    scores = np.concatenate([p.scores for p in predictions.values()])
    assert len(np.unique(scores)) < len(scores)
    for easy, medium, hard in zip(*truth.subsets.values()):
        assert (easy <= medium).all() and (medium <= hard).all() and not hard.all()


@pytest.mark.slow
def test_bench_eval_command_reports_both_and_the_ratio(capsys):
    args = ["bench", "eval", "--num-images", "20", "--faces", "5", "--detections", "10", "--repeats", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "20 generated images, 5 faces and 10 detections each" in out
    assert "loop over thresholds (peer)" in out and "speed-up" in out and "the same from both" in out
