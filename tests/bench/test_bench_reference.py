"""Tests of rfcore.bench.reference: the biubug6-style network computes exactly what rfcore's computes."""

import pytest
import torch

from rfcore.bench.reference import ReferenceRetinaFace, reference_model
from rfcore.config import get_config
from rfcore.model import RetinaFace
from rfcore.weights import load_model


def test_reference_has_the_public_checkpoint_keys_of_rfcore():
    ours = RetinaFace.from_config(get_config("mobilenet0.25")).state_dict()
    theirs = ReferenceRetinaFace().state_dict()
    assert list(theirs) == list(ours)
    assert all(theirs[key].shape == ours[key].shape for key in ours)


@pytest.mark.slow
def test_reference_gives_rfcores_outputs_with_rfcores_weights():
    plain = load_model(None, get_config("mobilenet0.25"))
    reference = reference_model(plain.state_dict())
    images = 60 * torch.randn(2, 3, 97, 130, generator=torch.Generator().manual_seed(0))  # odd sizes: ceil maps
    with torch.inference_mode():
        ours, theirs = plain(images), reference(images)
    for a, b in zip(ours[:3], theirs):
        assert a.shape == b.shape and torch.equal(a, b)
