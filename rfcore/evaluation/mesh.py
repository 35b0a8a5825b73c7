"""How right the detected meshes are, against the exact ground truth of synthetic faces.

Every synthetic face (:mod:`rfcore.data.synthetic`) comes with the image
position of each of its template vertices and its pose, so a detector with
``mesh=True`` can be measured without any 3D label of its own:

* dense-vertex NME: the mean distance between detected and true vertices,
  divided by ``sqrt(w h)`` of the true box, like the landmark NME [paper
  §4.5], per face, then averaged;
* the same for a baseline that knows only the box: the mean template seen
  from the front, stretched to fill the detected box (:func:`template_in_boxes`);
* pose error: absolute differences of pitch, yaw and roll in degrees,
  between the mesh head's camera (:func:`rfcore.mesh.camera.angles_from_params`)
  and the face's true pose.

A face counts as found when a detection overlaps it with IoU above 0.5;
the errors are over the found faces.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torchvision.ops import box_iou

from rfcore.data.synthetic import SyntheticFaces
from rfcore.detector import Detector
from rfcore.mesh.branch import split_mesh_params
from rfcore.mesh.camera import DISTANCE, FOCAL, angles_from_params, camera_from_pose, project, to_view
from rfcore.mesh.face_model import face_model

FOUND_IOU = 0.5
"""IoU above which a detection is the mesh of a true face."""


class MeshAccuracy(NamedTuple):
    """Errors of detected meshes over the found faces.

    Attributes:
        faces: True faces in the images.
        found: Faces with a detection (IoU > :data:`FOUND_IOU`).
        nme: Mean dense-vertex NME of the detected meshes.
        template_nme: Mean dense-vertex NME of the template placed in the detected box.
        pose_error: Median absolute error of pitch, yaw and roll in degrees.
    """

    faces: int
    found: int
    nme: float
    template_nme: float
    pose_error: tuple[float, float, float]


def template_in_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """The mean template seen from the front, stretched so that its projection fills each box.

    Args:
        boxes: ``(F, 4)`` ``(x1, y1, x2, y2)``.

    Returns:
        ``(F, V, 2)`` image pixels.
    """
    vertices = face_model().mesh.vertices[None].double()  # (1, V, 3)
    camera = camera_from_pose(torch.zeros(1, 3, dtype=torch.float64), torch.tensor([DISTANCE], dtype=torch.float64),
                              FOCAL)
    frontal = project(to_view(vertices, camera), camera, (1, 1))[0][0].float()  # (V, 2) crop fractions
    low, high = frontal.min(0).values, frontal.max(0).values
    unit = (frontal - low) / (high - low)  # (V, 2) in [0, 1]^2
    return boxes[:, None, :2] + unit * (boxes[:, None, 2:] - boxes[:, None, :2])


def dense_nme(points: torch.Tensor, truth: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """``(F,)`` mean vertex distance over ``sqrt(w h)`` of ``boxes`` ``(F, 4)``, for ``(F, V, 2)`` points."""
    size = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sqrt()
    return (points - truth).norm(dim=-1).mean(dim=1) / size


def mesh_accuracy(detector: Detector, data: SyntheticFaces) -> MeshAccuracy:
    """Run ``detector`` (built with ``mesh=True``) on every image of ``data`` and measure its meshes.

    Raises:
        ValueError: If the detector gives no meshes.
    """
    if detector.decoder is None:
        raise ValueError("measuring meshes needs a Detector built with mesh=True")
    nme, baseline, pose = [], [], []
    faces = 0
    for index in range(len(data)):
        truth = data.render(index)
        dets = detector.detect_same_size([truth.sample.image])[0]
        boxes = torch.from_numpy(truth.sample.boxes)
        faces += len(boxes)
        if len(dets.scores) == 0 or len(boxes) == 0:
            continue
        iou, match = box_iou(boxes, dets.boxes).max(dim=1)  # (P,) best detection of each true face
        found = iou > FOUND_IOU
        dets, boxes = dets.select(match[found]), boxes[found]
        vertices = torch.from_numpy(truth.vertices)[found]
        nme.append(dense_nme(dets.meshes, vertices, boxes))
        baseline.append(dense_nme(template_in_boxes(dets.boxes), vertices, boxes))
        angles = torch.rad2deg(angles_from_params(split_mesh_params(dets.mesh_params).camera))  # (P, 3)
        pose.append((angles - torch.from_numpy(truth.poses)[found]).abs())
    if not nme:
        return MeshAccuracy(faces, 0, math.nan, math.nan, (math.nan,) * 3)
    pose_error = torch.cat(pose).median(dim=0).values
    return MeshAccuracy(faces, sum(len(n) for n in nme), float(torch.cat(nme).mean()),
                        float(torch.cat(baseline).mean()), tuple(pose_error.tolist()))
