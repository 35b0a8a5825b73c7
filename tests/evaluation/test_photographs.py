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
