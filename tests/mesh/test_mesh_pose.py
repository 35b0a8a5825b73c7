"""rfcore.mesh.camera.camera_from_pose: a camera from physical values agrees with the raw-parameter map."""

import math

import pytest
import torch

from rfcore.mesh.camera import FOCAL, MAX_ANGLE, camera_from_params, camera_from_pose


def test_pose_camera_equals_the_raw_map_at_the_same_values():
    raw = torch.tensor([[0.2, -0.3, 0.4, 0.5, -0.6, 0.7, 0.1]])
    expected = camera_from_params(raw)
    bounded = torch.tanh(raw)
    angles = MAX_ANGLE * bounded[:, 3:6]
    distance = -expected.translation[:, 2]
    camera = camera_from_pose(angles, distance, expected.focal, expected.translation[:, :2])
    for got, want in zip(camera, expected):
        assert torch.allclose(got, want, atol=1e-6)


def test_pose_camera_defaults_to_a_centred_face_at_the_default_focal():
    camera = camera_from_pose(torch.tensor([[0.0, math.pi / 2, 0.0]] * 2), torch.tensor([3.0, 5.0]))
    assert camera.translation.tolist() == [[0, 0, -3], [0, 0, -5]]
    assert torch.allclose(camera.focal, torch.full((2,), FOCAL))
    # a quarter turn of yaw sends the face's +z (its nose) to the image's +x
    assert torch.allclose(camera.rotation[0] @ torch.tensor([0.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 0.0]), atol=1e-6)


def test_pose_camera_checks_shapes():
    with pytest.raises(ValueError, match=r"\(B, 3\) angles and \(B,\) distances"):
        camera_from_pose(torch.zeros(2, 3), torch.zeros(3))
