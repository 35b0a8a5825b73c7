"""rfcore.evaluation.photographs: the bundled photographs as an evaluation set, and ``--val photographs``."""

import json

import pytest

from rfcore.assets import IMAGES
from rfcore.evaluation.photographs import photograph_samples, score_weights
from rfcore.train.validation import validation_samples
from rfcore.weights import DEFAULT_WEIGHTS


def test_the_bundled_photographs_are_read_with_their_faces():
    samples = photograph_samples()
    names = sorted(path.name for path in IMAGES.glob("*.json"))
    assert [sample.path for sample in samples] == [name.replace(".json", ".jpg") for name in names]
    faces = sum(len(json.loads((IMAGES / name).read_text())["faces"]) for name in names)
    assert sum(len(sample.boxes) for sample in samples) == faces >= 12
    assert all(sample.image.ndim == 3 and sample.has_landmarks.all() for sample in samples)
    assert [s.path for s in validation_samples("photographs")] == [s.path for s in samples]


def test_an_empty_folder_is_refused_by_name(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        photograph_samples(tmp_path)


def test_the_shipped_wider_face_weights_find_the_bundled_faces():
    """A real-face detector scores high on the photographs: the scoring itself works (rfcore's own
    from-scratch synthetic detector scores far lower, notebook 06)."""
    result = score_weights(DEFAULT_WEIGHTS, photograph_samples())
    assert result["faces"]["all"] == 12 and result["ap"]["all"] >= 0.9
    assert result["nme"]["all"] < 0.1


def test_face_scores_give_each_true_face_its_best_detection(monkeypatch):
    """Hand-made detections: the best score among those at IoU >= 0.5 counts, a face with none scores 0."""
    from types import SimpleNamespace

    import numpy as np

    from rfcore.data.sample import FaceSample
    from rfcore.evaluation import photographs

    faces = [SimpleNamespace(box=(10.0, 10.0, 50.0, 50.0), score=0.4),  # on face 0 exactly
             SimpleNamespace(box=(12.0, 10.0, 52.0, 50.0), score=0.9),  # on face 0, IoU 0.905
             SimpleNamespace(box=(100.0, 100.0, 130.0, 130.0), score=0.8),  # IoU 0.5625 with face 1 (30 x 30 in 40 x 40)
             SimpleNamespace(box=(60.0, 0.0, 90.0, 30.0), score=0.99)]  # on no face

    class Stub:
        def __init__(self, **options):
            assert options["threshold"] == photographs.SCORE_THRESHOLD and options["max_size"] is None

        def detect(self, image, color):
            return faces

    monkeypatch.setattr(photographs, "Detector", Stub)
    boxes = np.array([[10, 10, 50, 50], [95, 95, 135, 135], [150, 150, 190, 160]], dtype=np.float32)
    sample = FaceSample(np.zeros((200, 200, 3), np.uint8), boxes, np.zeros((3, 5, 2), np.float32), "stub.jpg")
    scores = photographs.face_scores("unused.safetensors", [sample])
    assert [(s.image, s.width) for s in scores] == [("stub.jpg", 40.0)] * 3
    assert [round(s.score, 4) for s in scores] == [0.9, 0.8, 0.0]
    faces.clear()
    assert [s.score for s in photographs.face_scores("unused.safetensors", [sample])] == [0.0, 0.0, 0.0]


def test_face_scores_of_the_shipped_weights_find_every_bundled_face():
    from rfcore.evaluation.photographs import face_scores

    scores = face_scores(DEFAULT_WEIGHTS, photograph_samples())
    assert len(scores) == 12 and min(s.score for s in scores) > 0.5
    assert max(s.width for s in scores) > 200 and min(s.width for s in scores) < 20


def test_a_second_pass_at_half_size_finds_the_large_photographed_faces():
    """The joint run's detector, trained on 160-pixel synthetic images, finds its synthetic faces wider than 160
    pixels (notebook 06) but scores the two photographed faces that large lowest at their own size; a second pass
    at about half size (short side 270 of 512 and 540) finds them, merged by box voting."""
    from rfcore.assets import SYNTHETIC_TO_REAL_MESH_RUN
    from rfcore.detect_config import TTAConfig

    weights, samples = SYNTHETIC_TO_REAL_MESH_RUN / "weights.safetensors", photograph_samples()
    one_pass = score_weights(weights, samples)
    two_sizes = score_weights(weights, samples, tta=TTAConfig(flip=False, scales=(None, 270)))
    assert one_pass["ap"]["large"] < 0.8 and two_sizes["ap"]["large"] > 0.9
    assert two_sizes["ap"]["all"] > one_pass["ap"]["all"] + 0.1
