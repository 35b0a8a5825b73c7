"""Find faces in images with a trained RetinaFace: :class:`Detector` and :func:`detect`.

One image goes through the test protocol of [paper §4.2] (and biubug6/Pytorch_Retinaface, detect.py):
read it as RGB within a memory budget (:meth:`Detector.load`); resize it to a ``short_edge`` and at most
``max_size``; preprocess as the weights expect (:func:`rfcore.image.preprocess`); run the network; keep the
anchors above the threshold, at most ``top_k``, and decode them (:func:`~rfcore.postprocess.candidates`); map
them back to the image's pixels; suppress overlaps at ``nms_iou``, keeping at most ``max_faces``
(:func:`~rfcore.postprocess.suppress`). Boxes and landmarks are not clipped to the image.

With test-time augmentation (:class:`~rfcore.detect_config.TTAConfig`) each scale and flip is one pass, the
candidates are pooled before suppression and each kept face is the score-weighted mean of its voters
(:func:`~rfcore.postprocess.box_vote`). With ``mesh=True`` each face also gets its dense mesh
(:meth:`Detector.mesh_vertices`). The settings and their defaults are :mod:`rfcore.detect_config`'s; the weights
describe themselves (:func:`rfcore.weights.weights_preset`). ``rfcore.detect("photo.jpg")`` is :func:`detect`.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import nn

from rfcore.config import MESH_CROP_SIZE, get_config
from rfcore.detect_config import DEFAULT_MAX_SIZE, MAX_DECODE_PIXELS, DetectConfig, TTAConfig, is_positive_int
from rfcore.image import as_batch, input_size, is_out_of_memory, preprocess, read_rgb, to_rgb
from rfcore.mesh import grow_boxes, mirror_order, project_mesh_params, uncrop_points
from rfcore.mesh.inference import InferenceDecoder
from rfcore.model import RetinaFaceOutput
from rfcore.model.fuse import fuse_for_inference
from rfcore.onnx_backend import check_engine, load_onnx_network
from rfcore.postprocess import (
    Detections,
    Face,
    box_vote,
    cached_anchors,
    candidates,
    concat,
    flip_detections,
    rescale,
    suppress,
)
from rfcore.weights import load_mesh_model, load_model, model_preset, resolve_weights, weights_preset

ImageLike = str | os.PathLike | np.ndarray


# ---------------------------------------------------------------- the detector


class Detector:
    """A RetinaFace with its pre- and post-processing, ready to find faces.

    Args:
        weights: safetensors file; ``None`` for :data:`rfcore.weights.DEFAULT_WEIGHTS`.
        preset: Preset of the weights, needed only for a file without one in
            its metadata (:func:`rfcore.weights.weights_preset`), or for a
            ``model`` whose layout several presets share.
        model: An already built RetinaFace (one you trained, say) instead of
            ``weights``.
        threshold, nms_iou, top_k, max_faces, tta: Which detections are kept
            (:class:`~rfcore.detect_config.DetectConfig`, whose defaults
            these are); the detector holds them as ``config``.
        short_edge: Resize so the short edge has this many pixels (``None``:
            original size).
        max_size: Cap on the long edge after that (:data:`rfcore.detect_config.DEFAULT_MAX_SIZE`;
            ``0`` or ``None``: no cap).
        max_pixels: Refuse image files that would decode to more pixels
            (:data:`rfcore.detect_config.MAX_DECODE_PIXELS`; ``0`` or ``None``: no limit).
        fuse: Run the inference form of the network
            (:func:`rfcore.model.fuse.fuse_for_inference`), same outputs up
            to float rounding, faster on CPU.
        mesh: Also give each face its projected mesh (:attr:`Face.mesh`);
            needs ``weights`` of an ``rfcore train --mesh`` run
            (:func:`load_mesh_model`), not ``model``.
        engine: ``"torch"`` (eager PyTorch) or ``"onnx"`` (onnxruntime,
            :mod:`rfcore.onnx_backend`): ``weights`` may then be an ``.onnx`` file
            of ``rfcore export`` (float or ``--int8``), and safetensors
            weights are exported once into a cache; no ``model`` or ``mesh``.

    Raises:
        FileNotFoundError: If the weights file (or, with ``mesh``, the
            decoder file) is missing.
        ValueError: For out-of-range options, an unknown preset, weights
            that do not fit the preset, or ``mesh`` with weights that have no
            mesh head, or with ``model``.
        ImportError: For ``engine="onnx"`` without onnxruntime installed.
    """

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        preset: str | None = None,
        *,
        model: nn.Module | None = None,
        threshold: float = DetectConfig.threshold,
        nms_iou: float = DetectConfig.nms_iou,
        top_k: int = DetectConfig.top_k,
        max_faces: int = DetectConfig.max_faces,
        short_edge: int | None = None,
        max_size: int | None = DEFAULT_MAX_SIZE,
        max_pixels: int | None = MAX_DECODE_PIXELS,
        tta: TTAConfig | None = DetectConfig.tta,
        fuse: bool = True,
        mesh: bool = False,
        engine: str = "torch",
    ) -> None:
        self.config = DetectConfig(threshold, nms_iou, top_k, max_faces, tta)
        check_input_options(short_edge, max_size, max_pixels)
        if model is not None and weights is not None:
            raise ValueError("pass either weights or model, not both")
        if mesh and model is not None:
            raise ValueError("mesh=True loads the network and its decoder from weights=...; it cannot use model=...")
        check_engine(engine, weights, mesh, model)
        self.decoder = self.mesh_order = self.mesh_head = None
        self.mesh_crop_margin = 1.0
        if engine == "onnx":
            self.model = load_onnx_network(weights, preset)
            self.cfg = get_config(self.model.preset)
        elif model is None:
            weights = resolve_weights(weights)
            self.cfg = get_config(weights_preset(weights, preset))
        else:
            self.cfg = get_config(model_preset(model, preset))
        if mesh:
            model, decoder, self.mesh_crop_margin = load_mesh_model(weights, self.cfg)
            # the head leaves the network: run_pass evaluates it at the candidates' anchors only
            self.mesh_head = model.detach_mesh_head()
            self.decoder = InferenceDecoder(decoder)
            self.mesh_order = mirror_order(decoder.template_vertices)
        if engine != "onnx":
            model = load_model(weights, self.cfg) if model is None else model.eval()
            self.model = fuse_for_inference(model) if fuse else model
        self.short_edge, self.max_size, self.max_pixels = short_edge, max_size, max_pixels

    def detect(self, images, color: str | None = None) -> list[Face] | list[list[Face]]:
        """Find the faces in one image or a batch.

        Args:
            images: A path, an array (see :func:`to_rgb`), or a batch: a list
                of paths and arrays of any sizes, or an ``(N, H, W, C)``
                array. Same-size images run through the network together.
            color: ``"RGB"`` or ``"BGR"`` for colour arrays; ignored for
                paths and greyscale arrays.

        Returns:
            For one image a list of :class:`Face`, highest score first; for
            a batch one such list per image.

        Raises:
            FileNotFoundError, IsADirectoryError, ValueError: For an input
                that is not a readable image (see :func:`rfcore.image.read_rgb`,
                :func:`to_rgb`).
            MemoryError: If an image does not fit in memory, naming it and
                what to lower.
        """
        batch, single = as_batch(images)
        results = self.detect_loaded([self.load(image, color) for image in batch])
        return results[0] if single else results

    def load(self, image: ImageLike, color: str | None = None) -> tuple[np.ndarray, tuple[int, int]]:
        """An image as RGB and the ``(height, width)`` its faces are reported in.

        A file is read with :func:`rfcore.image.read_rgb`: a JPEG larger than
        every network input it will give is decoded at reduced size, and
        files over ``max_pixels`` are refused. An array is checked by
        :func:`to_rgb` and kept as it is.

        Detection costs about 44 bytes per pixel of network input on top of
        the decoded image and the ~0.7 GB of the loaded libraries, so the
        default long-edge cap (:data:`rfcore.detect_config.DEFAULT_MAX_SIZE`)
        keeps one image under about 1.6 GB whatever its size; running out of
        memory anyway raises a ``MemoryError`` naming the image and what to lower.
        """
        if isinstance(image, (str, os.PathLike)):
            return read_rgb(image, self.largest_input_edge, self.max_pixels)
        rgb = to_rgb(image, color)
        return rgb, rgb.shape[:2]

    def largest_input_edge(self, size: tuple[int, int]) -> int:
        """The longest network-input edge any pass gives an image of ``size = (height, width)``."""
        passes = [(self.short_edge, False)] if self.config.tta is None else self.config.tta.passes()
        return max(max(input_size(*size, short_edge, self.max_size)) for short_edge, _ in passes)

    def detect_loaded(self, loaded: Sequence[tuple[np.ndarray, tuple[int, int]]]) -> list[list[Face]]:
        """Faces of images from :meth:`load`, in the pixels of each ``(height, width)``.

        Raises:
            MemoryError: If a group of same-size images does not fit in memory.
        """
        results: list[list[Face]] = [[] for _ in loaded]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (image, _) in enumerate(loaded):
            groups.setdefault(image.shape[:2], []).append(i)
        for (height, width), indices in groups.items():
            try:
                found = self.detect_same_size([loaded[i][0] for i in indices])
            except (MemoryError, RuntimeError, cv2.error) as err:
                if not is_out_of_memory(err):
                    raise
                raise MemoryError(self.out_of_memory(height, width, len(indices))) from None
            for i, dets in zip(indices, found):
                size = loaded[i][1]
                dets = rescale(dets, size[1] / width, size[0] / height)
                results[i] = dets.to_faces()
        return results

    def out_of_memory(self, height: int, width: int, count: int) -> str:
        """What to say when detection on ``count`` images of ``height x width`` runs out of memory."""
        input_edge = self.largest_input_edge((height, width))
        what = f"{count} images of" if count > 1 else "an image of"
        return (f"out of memory detecting faces on {what} {width}x{height} pixels (network input long edge "
                f"{input_edge}); lower max_size (command line: --max-size, default {DEFAULT_MAX_SIZE})")

    def without_mesh(self) -> Detector:
        """This detector without its mesh parts, sharing its network (to time what the mesh adds)."""
        plain = copy.copy(self)
        plain.decoder = plain.mesh_order = plain.mesh_head = None
        return plain

    def with_meshes(self, dets: Detections) -> Detections:
        """``dets`` with their :meth:`mesh_vertices` (unchanged without ``mesh=True``)."""
        return dets if self.decoder is None else dets._replace(meshes=self.mesh_vertices(dets))

    @torch.inference_mode()
    def mesh_vertices(self, dets: Detections) -> torch.Tensor | None:
        """Projected mesh vertices of detected faces in the pixels of their boxes, or ``None`` without ``mesh=True``.

        Decoded and projected into the face crop as training renders them
        (:func:`rfcore.mesh.project_mesh_params`), then mapped through each
        face's box (:func:`rfcore.mesh.uncrop_points`, the inverse of
        :func:`rfcore.mesh.crop_faces`), grown by the head's crop margin
        (recorded with the head: :data:`rfcore.config.MESH_CROP_MARGIN` for ``rfcore train --mesh`` and, by
        default, ``rfcore mesh train-head``).

        Only what the output needs is computed: the mesh head (a 1x1
        convolution) runs at the candidates' anchors alone, the kept faces are
        decoded in one batch by :class:`rfcore.mesh.inference.InferenceDecoder`,
        and nothing is rendered. With test-time augmentation every pass
        computes the meshes of its candidates before they are pooled: a flipped
        pass mirrors them (each vertex taking its mirror partner's place,
        :func:`rfcore.mesh.template.mirror_order`), and a voted face keeps the
        mesh of its highest-scoring voter, since an average of meshes from
        different anchors is no face's mesh.

        Args:
            dets: ``F`` detections with their ``mesh_params``, in image pixels.

        Returns:
            ``(F, V, 2)`` pixel coordinates ``(x, y)``.
        """
        if self.decoder is None:
            return None
        crop = (MESH_CROP_SIZE, MESH_CROP_SIZE)
        crop_points = project_mesh_params(self.decoder, dets.mesh_params, crop)
        return uncrop_points(crop_points, grow_boxes(dets.boxes, self.mesh_crop_margin), crop)

    @torch.inference_mode()
    def detect_same_size(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detections for same-size RGB images, in their pixels.

        Args:
            images: ``N`` arrays ``(H, W, 3)`` uint8 RGB of one size.

        Returns:
            ``N`` :class:`~rfcore.postprocess.Detections`, highest score first, with meshes if ``mesh=True``.
        """
        config = self.config
        if config.tta is None:  # meshes for the kept faces only
            pool = self.run_pass(images, self.short_edge, False)
            return [self.with_meshes(dets) for dets in suppress(pool, len(images), config.nms_iou, config.max_faces)]
        # every candidate's mesh, computed in its own pass (a flipped one must be mirrored), so that voting can pick
        pool = concat([self.run_pass(images, short_edge, flipped, True) for short_edge, flipped in config.tta.passes()])
        kept = suppress(pool, len(images), config.nms_iou, config.max_faces)
        votes = config.tta.vote_iou
        return [box_vote(faces, pool.select(pool.image_index == i), votes) for i, faces in enumerate(kept)]

    def run_pass(
        self, images: Sequence[np.ndarray], short_edge: int | None, flipped: bool, meshes: bool = False
    ) -> Detections:
        """Candidates from one network run, in the original images' pixels.

        Args:
            images: Same-size RGB images.
            short_edge: Short-edge size to resize to (``None``: keep).
            flipped: Run on the horizontally flipped images.
            meshes: Also compute every candidate's mesh (with ``mesh=True``).
        """
        height, width = images[0].shape[:2]
        size = input_size(height, width, short_edge, self.max_size)
        if size != (height, width):
            images = [cv2.resize(image, size[::-1], interpolation=cv2.INTER_LINEAR) for image in images]
        if flipped:
            images = [image[:, ::-1] for image in images]
        network_input = preprocess(images, self.cfg.pixel_mean_bgr)
        if self.mesh_head is None:
            output, mesh_params_at = self.model(network_input), None
        else:
            context = self.model.features(network_input)
            output, mesh_params_at = self.model.predict(context), functools.partial(self.mesh_head.at, context)
        anchors = cached_anchors(self.cfg, size)
        dets = candidates(output, anchors, self.cfg.variances, self.config.threshold, self.config.top_k, mesh_params_at)
        if meshes:
            dets = self.with_meshes(dets)
        if flipped:
            dets = flip_detections(dets, size[1], self.mesh_order)
        return rescale(dets, width / size[1], height / size[0])

    def postprocess(
        self, output: RetinaFaceOutput, size: tuple[int, int], threshold: float | None = None
    ) -> list[Detections]:
        """Decoding and NMS alone, on the network output for inputs of ``size = (H, W)``.

        What :meth:`detect` does after the network, without TTA; results are
        in network-input pixels. ``threshold`` overrides the detector's.
        """
        threshold = self.config.threshold if threshold is None else threshold
        dets = candidates(output, cached_anchors(self.cfg, size), self.cfg.variances, threshold, self.config.top_k)
        return suppress(dets, output.logits.shape[0], self.config.nms_iou, self.config.max_faces)


def check_input_options(short_edge, max_size, max_pixels) -> None:
    """Raise ``ValueError`` naming the first out-of-range input-size option."""
    checks = (
        ("short_edge", short_edge, short_edge is None or is_positive_int(short_edge), "None or a positive int"),
        ("max_size", max_size, max_size in (None, 0) or is_positive_int(max_size), "None, 0 or a positive int"),
        ("max_pixels", max_pixels, max_pixels in (None, 0) or is_positive_int(max_pixels), "None, 0 or a positive int"),
    )
    for name, value, ok, expected in checks:
        if not ok:
            raise ValueError(f"{name} must be {expected}, got {value!r}")


@functools.lru_cache(maxsize=4)
def cached_detector(**options) -> Detector:
    """One :class:`Detector` per set of options, built on first use."""
    return Detector(**options)


def detect(images, color: str | None = None, **options) -> list[Face] | list[list[Face]]:
    """Find faces with a detector built (once) from ``options``.

    ``rfcore.detect(images, ...)`` calls this function.

    Args:
        images: One image or a batch (see :meth:`Detector.detect`).
        color: ``"RGB"`` or ``"BGR"`` for colour arrays.
        **options: :class:`Detector` arguments (hashable values, e.g.
            ``threshold=0.6``, ``tta=TTAConfig()``).

    Returns:
        A list of :class:`Face` per image (a single list for one image).
    """
    return cached_detector(**options).detect(images, color)

