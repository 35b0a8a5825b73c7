"""Meshes drawn on images: wireframes, single-pixel vertex dots, and faces cut out with their meshes.

The drawings of ``rfcore detect --mesh`` and of the detected and true meshes
in notebooks 00 and 04, in the conventions of :mod:`rfcore.viz`: images are
``(H, W, 3)`` uint8 RGB arrays drawn with OpenCV without anti-aliasing, and
every function draws on a copy. The pictures that explain the mesh branch
(signals, hierarchy, codes, spectra) are :mod:`rfcore.viz.mesh`'s.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from rfcore.mesh.hierarchy import adjacency_matrix
from rfcore.viz.draw import Rendering, check_image, side_by_side

EDGE_COLOR = (200, 200, 200)
BACKGROUND = 255
"""Grey level of a panel where a cut-out face leaves the image."""


def mesh_edges(faces: torch.Tensor, num_vertices: int) -> np.ndarray:
    """``(E, 2)`` vertex pairs, each edge once (``i < j``)."""
    rows, cols = adjacency_matrix(faces, num_vertices).indices()
    keep = rows < cols
    return torch.stack([rows[keep], cols[keep]], dim=1).numpy()


def draw_wireframe(image: np.ndarray, pixels: np.ndarray, faces: torch.Tensor, color=EDGE_COLOR) -> np.ndarray:
    """Draw every mesh edge between ``(V, 2)`` pixel positions (on a copy)."""
    canvas = check_image(image).copy()
    points = np.rint(pixels).astype(np.int32)
    lines = points[mesh_edges(faces, len(pixels))]  # (E, 2, 2)
    cv2.polylines(canvas, list(lines), False, color, 1, cv2.LINE_8)
    return canvas


def draw_dense_vertices(image, vertices, color=(255, 255, 255)) -> np.ndarray:
    """Single-pixel dots at ``(F, V, 2)`` projected vertices of every face (on a copy)."""
    canvas = check_image(image).copy()
    height, width = canvas.shape[:2]
    points = np.floor(np.asarray(vertices, dtype=np.float64).reshape(-1, 2)).astype(int)
    inside = (points[:, 0] >= 0) & (points[:, 0] < width) & (points[:, 1] >= 0) & (points[:, 1] < height)
    canvas[points[inside, 1], points[inside, 0]] = color
    return canvas


def draw_face_meshes(image, meshes, faces: torch.Tensor, color=(255, 255, 255)) -> np.ndarray:
    """Wireframes of detected or true meshes on an image (on a copy).

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        meshes: ``(N, V, 2)`` projected vertices in image pixels (e.g. :attr:`rfcore.postprocess.Face.mesh` of N faces).
        faces: ``(F, 3)`` triangles of the mesh.
        color: Line colour.
    """
    canvas = check_image(image).copy()
    for pixels in np.asarray(meshes, dtype=np.float64):
        canvas = draw_wireframe(canvas, pixels, faces, color)
    return canvas


def render_mesh_comparison(image, boxes, meshes: dict[str, torch.Tensor], faces: torch.Tensor, size: int = 140,
                           margin: float = 0.2) -> Rendering:
    """Each face cut out once per set of meshes (the truth, a prediction, a baseline), its wireframe drawn on it.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        boxes: ``(N, 4)`` face boxes ``(x1, y1, x2, y2)``, one row of panels each.
        meshes: Column title -> ``(N, V, 2)`` projected vertices in image pixels.
        faces: ``(F, 3)`` triangles.
        size: Side of each panel.
        margin: Border added around each box, as a fraction of its larger side.

    Returns:
        A :class:`Rendering` with ``N`` rows and one column per entry of ``meshes``.
    """
    image = check_image(image)
    rows = []
    for index, box in enumerate(torch.as_tensor(boxes, dtype=torch.float64)):
        side = float((box[2:] - box[:2]).max()) * (1 + 2 * margin)
        origin = (box[:2] + box[2:]).numpy() / 2 - side / 2
        scale = size / side
        window = np.array([[scale, 0, -origin[0] * scale], [0, scale, -origin[1] * scale]])  # image -> panel
        panel = cv2.warpAffine(image, window, (size, size), flags=cv2.INTER_LINEAR, borderValue=(BACKGROUND,) * 3)
        row = []
        for title, points in meshes.items():
            pixels = (np.asarray(points[index], dtype=np.float64) - origin) * scale  # (V, 2) panel pixels
            drawn = draw_wireframe(panel, pixels, faces, (255, 255, 255))
            if index == 0:
                cv2.putText(drawn, title, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1, cv2.LINE_8)
            row.append(drawn)
        rows.append(side_by_side(row))
    return Rendering(np.concatenate(rows, axis=0), f"{len(rows)} faces: " + ", ".join(meshes))
