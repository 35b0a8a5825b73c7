"""rfcore.mesh.fit: analysis by synthesis recovers a face rendered from known parameters."""

import pytest
import torch

from rfcore.mesh.branch import render_mesh_params
from rfcore.mesh.decoder import MeshDecoder
from rfcore.mesh.fit import border_colour, fit_mesh
from rfcore.mesh.hierarchy import build_hierarchy

# raw P_cam: shift, distance, pitch, yaw, roll, focal
TRUE_CAMERA = [0.1, -0.1, 0.2, 0.15, 0.3, -0.1, 0.1]


@pytest.fixture(scope="module")
def decoder():
    torch.manual_seed(0)
    decoder = MeshDecoder(build_hierarchy(), channels=(16, 16, 8, 8), K=3)
    torch.nn.init.normal_(decoder.head.weight, std=0.01)  # an untrained decoder would ignore the code
    return decoder


@pytest.mark.slow
def test_fit_recovers_a_face_rendered_from_known_parameters(decoder):
    generator = torch.Generator().manual_seed(1)
    truth = torch.cat([torch.randn(1, 128, generator=generator), torch.tensor([TRUE_CAMERA]),
                       0.5 * torch.randn(1, 9, generator=generator)], dim=1)
    with torch.no_grad():
        crop = render_mesh_params(decoder, truth, (24, 24), background=0.3).image[0]
    weights = {name: value.clone() for name, value in decoder.state_dict().items()}
    result = fit_mesh(decoder, crop, steps=80, lr=0.02, background=0.3)
    assert len(result.losses) == 81 and result.params.shape == (144,) and result.rendered.shape == (3, 24, 24)
    assert result.losses[-1] < 0.15 * result.losses[0]
    pitch, yaw, roll = result.params[131:134]
    assert pitch > 0.05 and yaw > 0.15 and roll < 0  # the pose turns the right way
    # the decoder is left as it was, without gradients
    assert all(torch.equal(value, weights[name]) for name, value in decoder.state_dict().items())
    assert all(parameter.grad is None for parameter in decoder.parameters())


def test_zero_steps_render_the_mean_face_against_the_border_colour(decoder):
    crop = torch.rand(3, 16, 20, generator=torch.Generator().manual_seed(2))
    result = fit_mesh(decoder, crop, steps=0)
    assert result.losses == [pytest.approx(float((result.rendered - crop).abs().sum() / (16 * 20)))]
    assert torch.equal(result.params, torch.zeros(144))
    corner = result.rendered[:, 0, 0]  # no face there: the background
    assert torch.allclose(corner, border_colour(crop)[:, 0, 0])


def test_border_colour_by_hand():
    crop = torch.zeros(3, 4, 5)
    crop[:, 1:3, 1:4] = 1.0  # inside: ignored
    crop[0, 0, :] = 1.0  # top row red: 5 of the 14 border pixels
    assert torch.allclose(border_colour(crop)[:, 0, 0], torch.tensor([5 / 14, 0.0, 0.0]))


def test_fit_checks_its_input(decoder):
    with pytest.raises(ValueError, match=r"\(3, H, W\) crop"):
        fit_mesh(decoder, torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="steps must be >= 0"):
        fit_mesh(decoder, torch.zeros(3, 8, 8), steps=-1)
