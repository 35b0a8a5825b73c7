"""The self-supervised mesh branch: decode, render, compare [paper §3.2, Eq. 2-3].

For every positive anchor the mesh head predicts 144 numbers: a shape and texture code ``P_ST`` (128), a
camera ``P_cam`` (7) and an illumination ``P_ill`` (9). Graph convolutions decode the code into a coloured
mesh, a differentiable soft rasteriser renders it, and ``L_pixel`` compares the rendering with the face.
Modules in the order the data flows: :mod:`~rfcore.mesh.template`, :mod:`~rfcore.mesh.hierarchy`,
:mod:`~rfcore.mesh.laplacian`, :mod:`~rfcore.mesh.chebconv`, :mod:`~rfcore.mesh.decoder`,
:mod:`~rfcore.mesh.camera`, :mod:`~rfcore.mesh.shading`, :mod:`~rfcore.mesh.render`,
:mod:`~rfcore.mesh.branch` (144 outputs -> rendered face), :mod:`~rfcore.mesh.loss`, :mod:`~rfcore.mesh.fit`
(analysis by synthesis), :mod:`~rfcore.mesh.inference` (the decoder's inference form) and
:mod:`~rfcore.mesh.face_model` (the synthetic faces' shapes, colours and light).

A library like :mod:`rfcore.model`, it imports nothing that trains, detects, loads weights or makes data:
that is :mod:`rfcore.train.mesh_decoder`, :mod:`rfcore.train.mesh_head` and :mod:`rfcore.evaluation.mesh`.
"""

from rfcore.mesh.branch import project_mesh_params, render_mesh_params, split_mesh_params
from rfcore.mesh.camera import angles_from_params, camera_from_params, camera_from_pose, light_from_params
from rfcore.mesh.chebconv import ChebConv
from rfcore.mesh.decoder import MeshDecoder
from rfcore.mesh.fit import FitResult, fit_mesh
from rfcore.mesh.hierarchy import MeshHierarchy, build_hierarchy, hierarchy_from_meshes
from rfcore.mesh.laplacian import eigenbasis, hop_distances, laplacian, normalised_laplacian
from rfcore.mesh.loss import (
    crop_faces,
    crop_points,
    grow_boxes,
    landmark_vertex_loss,
    mesh_branch_loss,
    pixel_loss,
    uncrop_points,
)
from rfcore.mesh.render import render
from rfcore.mesh.template import Mesh, face_template, load_obj, mirror_order

__all__ = [
    "ChebConv",
    "FitResult",
    "Mesh",
    "MeshDecoder",
    "MeshHierarchy",
    "angles_from_params",
    "build_hierarchy",
    "camera_from_params",
    "camera_from_pose",
    "crop_faces",
    "crop_points",
    "eigenbasis",
    "face_template",
    "fit_mesh",
    "grow_boxes",
    "hierarchy_from_meshes",
    "hop_distances",
    "landmark_vertex_loss",
    "laplacian",
    "light_from_params",
    "load_obj",
    "mesh_branch_loss",
    "mirror_order",
    "normalised_laplacian",
    "pixel_loss",
    "project_mesh_params",
    "render",
    "render_mesh_params",
    "split_mesh_params",
    "uncrop_points",
]
