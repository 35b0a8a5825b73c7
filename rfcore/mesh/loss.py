"""The dense regression loss ``L_pixel`` [paper §3.2, Eq. 3].

For each positive anchor the rendered face is compared with the face crop
``I*`` (the matched box cut from the image and resized to ``W x H``):

    L_pixel = 1 / (W H) * sum_i sum_j || R(D_PST, P_cam, P_ill)_ij - I*_ij ||_1

the L1 norm over the three colour channels of every pixel, averaged over
the pixels. The multi-task loss weighs it by ``lambda_pixel`` (0.01 in the
paper; ``cfg.lambda_pixel``).
"""

from __future__ import annotations

import math

import torch
from torchvision.ops import roi_align

from rfcore.config import MESH_CROP_SIZE
from rfcore.mesh.branch import render_mesh_params
from rfcore.mesh.decoder import MeshDecoder


def crop_faces(
    images: torch.Tensor, boxes: torch.Tensor | list[torch.Tensor], size: int = MESH_CROP_SIZE, samples: int = -1
) -> torch.Tensor:
    """Cut face boxes out of images and resize them: ``I*`` of Eq. 3.

    Uses :func:`torchvision.ops.roi_align` with ``aligned=True`` (pixel ``j``
    covers ``[j, j + 1)``, as everywhere in rfcore) and, by default, adaptive
    sampling, so large faces are averaged rather than aliased. Each box is cut from its
    own neighbourhood of the image (:func:`box_window`): ``roi_align`` would
    otherwise copy the whole batch into its preferred memory layout first,
    which costs more than the crops when the batch is channels-last.

    Args:
        images: ``(N, C, H, W)`` float images (rfcore renders rgb in ``[0, 1]``,
            so pass crops in that range to compare them).
        boxes: ``(K, 5)`` rows ``(image_index, x1, y1, x2, y2)``, or a list of
            ``N`` tensors ``(K_n, 4)`` of ``(x1, y1, x2, y2)`` per image.
        size: Side of the square crops in pixels.
        samples: Bilinear samples per crop pixel along each axis; ``-1``
            adapts them to the box (``ceil(box side / size)``, 13 x 13 for a
            400-pixel face at 32x32), a small fixed number is cheaper.

    Returns:
        ``(K, C, size, size)`` crops, in the order of ``boxes``.

    Raises:
        ValueError: If ``images`` is not ``(N, C, H, W)`` or ``boxes`` has the wrong shape.
    """
    if images.ndim != 4:
        raise ValueError(f"expected (N, C, H, W) images, got {tuple(images.shape)}")
    if isinstance(boxes, torch.Tensor):
        if boxes.ndim != 2 or boxes.shape[1] != 5:
            raise ValueError(f"expected (K, 5) boxes as (image_index, x1, y1, x2, y2), got {tuple(boxes.shape)}")
        rows = boxes
    elif len(boxes) != len(images) or any(b.ndim != 2 or b.shape[1] != 4 for b in boxes):
        shapes = [tuple(b.shape) for b in boxes]
        raise ValueError(f"expected one (K_n, 4) box tensor per image ({len(images)}), got {shapes}")
    else:
        rows = torch.cat([torch.cat([b.new_full((len(b), 1), n), b], dim=1) for n, b in enumerate(boxes)])
    crops = [crop_one(images, int(row[0]), row[1:], size, samples) for row in rows.detach()]
    return torch.cat(crops) if crops else images.new_zeros((0, images.shape[1], size, size))


def box_window(box: torch.Tensor, height: int, width: int) -> tuple[int, int, int, int]:
    """The pixels ``roi_align`` may read for ``box`` ``(x1, y1, x2, y2)``: ``(x0, y0, x1, y1)``, end exclusive.

    With ``aligned=True`` the samples lie in ``[x1 - 0.5, x2 - 0.5]`` and
    bilinear interpolation reads the pixels on either side, so one pixel of
    margin suffices. The window is clipped to the image, where ``roi_align``
    applies its own border rule, so the crop is the same as from the whole image.
    """
    x1, y1, x2, y2 = box.tolist()
    left, top = min(max(math.floor(x1) - 1, 0), width), min(max(math.floor(y1) - 1, 0), height)
    right, bottom = max(min(math.ceil(x2) + 1, width), left), max(min(math.ceil(y2) + 1, height), top)
    return left, top, right, bottom


def crop_one(images: torch.Tensor, index: int, box: torch.Tensor, size: int, samples: int = -1) -> torch.Tensor:
    """``(1, C, size, size)`` crop of ``box`` ``(x1, y1, x2, y2)`` in image ``index`` (see :func:`crop_faces`)."""
    left, top, right, bottom = box_window(box, *images.shape[-2:])
    if right == left or bottom == top:  # entirely outside the image: roi_align would give zeros
        return images.new_zeros((1, images.shape[1], size, size))
    window = images[index : index + 1, :, top:bottom, left:right].contiguous()  # (1, C, h, w)
    shifted = box.to(images.dtype) - box.new_tensor([left, top, left, top], dtype=images.dtype)
    return roi_align(window, [shifted[None]], output_size=size, spatial_scale=1.0, sampling_ratio=samples, aligned=True)


def grow_boxes(boxes: torch.Tensor, factor: float) -> torch.Tensor:
    """``(K, 4)`` boxes ``(x1, y1, x2, y2)`` scaled by ``factor`` about their centres."""
    centre, half = (boxes[:, :2] + boxes[:, 2:]) / 2, (boxes[:, 2:] - boxes[:, :2]) * (factor / 2)  # (K, 2) each
    return torch.cat([centre - half, centre + half], dim=1)


def uncrop_points(points: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop pixels back to image pixels: the inverse of :func:`crop_faces`' box -> crop mapping.

    With ``aligned=True`` crop pixel ``j`` samples the image at
    ``x1 + (j + 0.5) (x2 - x1) / W``, so crop coordinate ``u`` (pixel ``j``
    spans ``[j, j + 1)``) is image coordinate ``x1 + u (x2 - x1) / W``.

    Args:
        points: ``(K, V, 2)`` ``(x, y)`` in the pixels of ``(H, W)`` crops.
        boxes: ``(K, 4)`` ``(x1, y1, x2, y2)`` each crop was cut from.
        size: ``(H, W)`` of the crops.

    Returns:
        ``(K, V, 2)`` image pixel coordinates.
    """
    height, width = size
    corner = boxes[:, None, :2]  # (K, 1, 2)
    scale = (boxes[:, 2:] - boxes[:, :2]) / boxes.new_tensor([width, height])  # (K, 2) image pixels per crop pixel
    return corner + points * scale[:, None]


def crop_points(points: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Image pixels to crop pixels, the box -> crop mapping of :func:`crop_faces` (:func:`uncrop_points` undoes it).

    Args:
        points: ``(K, V, 2)`` ``(x, y)`` in image pixels.
        boxes: ``(K, 4)`` ``(x1, y1, x2, y2)`` each crop is cut from.
        size: ``(H, W)`` of the crops.

    Returns:
        ``(K, V, 2)`` crop pixel coordinates.
    """
    height, width = size
    scale = boxes.new_tensor([width, height]) / (boxes[:, 2:] - boxes[:, :2])  # (K, 2) crop pixels per image pixel
    return (points - boxes[:, None, :2]) * scale[:, None]


def pixel_loss(rendered: torch.Tensor, crops: torch.Tensor) -> torch.Tensor:
    """Eq. 3: L1 distance per face, summed over channels and pixels, divided by ``W * H``.

    Args:
        rendered: ``(P, C, H, W)`` rendered faces.
        crops: ``(P, C, H, W)`` face crops ``I*``.

    Returns:
        ``(P,)`` loss per face.

    Raises:
        ValueError: If the shapes differ or are not ``(P, C, H, W)``.
    """
    if rendered.ndim != 4 or rendered.shape != crops.shape:
        shapes = f"{tuple(rendered.shape)} and {tuple(crops.shape)}"
        raise ValueError(f"expected two equal (P, C, H, W) shapes, got {shapes}")
    height, width = rendered.shape[-2:]
    return (rendered - crops).abs().sum(dim=(1, 2, 3)) / (width * height)


def landmark_vertex_loss(points: torch.Tensor, landmarks: torch.Tensor, size: int) -> torch.Tensor:
    """How far the mesh's five landmark vertices land from the face's five landmarks, in crop sides.

    Not a term of the paper, whose mesh branch learns from the pixels alone (Eq. 3): a rendering can match
    the crop's pixels with the wrong pose and size, and five points pin both down. With ``S`` the crop side::

        L_lmk = 1/5 sum_k (|x_k - x*_k| + |y_k - y*_k|) / S

    Args:
        points: ``(P, 5, 2)`` landmark vertices projected into the ``S x S`` crops, in the annotations' order
            (:func:`rfcore.boxes.image_left_first`).
        landmarks: ``(P, 5, 2)`` the faces' five landmarks in the same crop pixels.
        size: ``S``.

    Returns:
        ``(P,)`` loss per face.

    Raises:
        ValueError: If the shapes differ or are not ``(P, 5, 2)``.
    """
    if points.shape != landmarks.shape or points.shape[1:] != (5, 2):
        raise ValueError(f"expected two equal (P, 5, 2) shapes, got {tuple(points.shape)} and {tuple(landmarks.shape)}")
    return (points - landmarks).abs().sum(dim=2).mean(dim=1) / size


def mesh_branch_loss(
    decoder: MeshDecoder, mesh_params: torch.Tensor, crops: torch.Tensor, **render_options
) -> torch.Tensor:
    """Decode, render and compare: ``L_pixel`` for each positive anchor.

    Args:
        decoder: The shape and texture decoder.
        mesh_params: ``(P, 144)`` mesh-head outputs of the positive anchors.
        crops: ``(P, 3, H, W)`` face crops of their matched boxes (:func:`crop_faces`), rgb in ``[0, 1]``.
        **render_options: Passed to :func:`~rfcore.mesh.render.render` (e.g. ``background``).

    Returns:
        ``(P,)`` losses; the training loss sums them over positives and
        normalises like the other terms.

    Raises:
        ValueError: For mismatched shapes.
    """
    if crops.ndim != 4 or crops.shape[:2] != (len(mesh_params), 3):
        raise ValueError(f"expected ({len(mesh_params)}, 3, H, W) crops, got {tuple(crops.shape)}")
    rendered = render_mesh_params(decoder, mesh_params, tuple(crops.shape[-2:]), **render_options)
    return pixel_loss(rendered.image, crops)
