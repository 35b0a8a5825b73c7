"""The self-supervised mesh branch: decode, render, compare [paper §3.2, Eq. 2-3].

For every positive anchor the mesh head predicts 144 numbers: a shape and
texture code ``P_ST`` (128), a camera ``P_cam`` (7) and an illumination
``P_ill`` (9). The code is decoded into a coloured face mesh by graph
convolutions, the mesh is rendered with that camera and light by a
differentiable soft rasteriser, and the rendering is compared with the
face crop by the pixel loss ``L_pixel``.

One module per step, in the order the data flows:
:mod:`~rfcore.mesh.template` (the face mesh, OBJ files, mirror partners),
:mod:`~rfcore.mesh.hierarchy` (mesh levels, up-sampling, adjacency),
:mod:`~rfcore.mesh.laplacian` (graph Laplacians, spectrum, hop distances),
:mod:`~rfcore.mesh.chebconv` (Chebyshev graph convolution),
:mod:`~rfcore.mesh.decoder` (code -> coloured mesh),
:mod:`~rfcore.mesh.camera` (bounded ``P_cam`` and ``P_ill``, projection),
:mod:`~rfcore.mesh.shading` (Lambertian light),
:mod:`~rfcore.mesh.render` (soft rasteriser),
:mod:`~rfcore.mesh.branch` (144 head outputs -> rendered face),
:mod:`~rfcore.mesh.loss` (face crops, ``L_pixel``),
:mod:`~rfcore.mesh.fit` (analysis by synthesis: fit one crop),
:mod:`~rfcore.mesh.inference` (the decoder's inference form, each layer one
dense product, as detection decodes faces), and
:mod:`~rfcore.mesh.face_model` (the synthetic faces' shapes, colours and light).

The package is a library like :mod:`rfcore.model`: it imports nothing that
trains, detects, loads weights or makes data. Pre-training the decoder and
training the head live in :mod:`rfcore.train.mesh_decoder` and
:mod:`rfcore.train.mesh_head`, the measurement in :mod:`rfcore.evaluation.mesh`;
the pictures of notebook 04 in :mod:`rfcore.viz.mesh`, the timings in
:mod:`rfcore.bench.mesh`.
"""

from rfcore.mesh.branch import project_mesh_params, render_mesh_params, split_mesh_params
from rfcore.mesh.camera import angles_from_params, camera_from_params, camera_from_pose, light_from_params
from rfcore.mesh.chebconv import ChebConv
from rfcore.mesh.decoder import MeshDecoder
from rfcore.mesh.fit import FitResult, fit_mesh
from rfcore.mesh.hierarchy import MeshHierarchy, build_hierarchy, hierarchy_from_meshes
from rfcore.mesh.laplacian import eigenbasis, hop_distances, laplacian, normalised_laplacian
from rfcore.mesh.loss import crop_faces, grow_boxes, mesh_branch_loss, pixel_loss, uncrop_points
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
    "eigenbasis",
    "face_template",
    "fit_mesh",
    "grow_boxes",
    "hierarchy_from_meshes",
    "hop_distances",
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
