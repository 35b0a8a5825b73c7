"""Synthetic faces with exact ground truth: data that no download can break.

:class:`SyntheticFaces` is a dataset of images drawn from
``numpy.random.default_rng([seed, index])``: a procedural background
(:mod:`rfcore.data.procedural`), faces of the synthetic face model
(:mod:`rfcore.mesh.face_model`, :func:`draw_faces`) with random size, shape,
skin, pose and light, placed without overlaps (:mod:`rfcore.data.placement`),
hair behind most of them, each rendered by :func:`rfcore.mesh.render.render` and
composited with its soft opacity (:func:`composite_faces`). Boxes, landmarks
(in WIDER FACE's order, :func:`rfcore.boxes.image_left_first`), dense vertices and poses are
pure float64 geometry, the same bit for bit on every CPU (:class:`SyntheticImage`);
only pixels may differ by a grey level. :data:`VALIDATION` and
:func:`validation_set` are the held-out set of ``rfcore train --val synthetic``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import cv2
import numpy as np
import torch.utils.data

from rfcore.anchors import check_image_size
from rfcore.boxes import image_left_first
from rfcore.data.placement import Placement, image_vertices, place_faces
from rfcore.data.procedural import add_hair, random_background
from rfcore.data.sample import FaceSample
from rfcore.data.variety import Variety
from rfcore.data.widerface import Transform
from rfcore.mesh.camera import DISTANCE, FOCAL, Camera, Light, camera_from_pose, project, to_view
from rfcore.mesh.face_model import (
    AMBIENT_RANGE,
    COLOUR_MODES,
    DEPTH_RANGE,
    LIGHT_BOX,
    LIGHT_INTENSITY,
    LIGHT_TINT,
    SHAPE_AMPLITUDE,
    SHAPE_MODES,
    WIDTH_RANGE,
    face_model,
    skin_colours,
)
from rfcore.mesh.render import render
from rfcore.mesh.template import LANDMARK_NAMES
from rfcore.progress import progress_bar

EDGE = 0.5
"""Half-width of the faces' soft edge in render pixels (the renderer's ``sigma``).

The renderer's opacity adds up the coverage of every triangle within
``sigma``, so it reaches 0.5 a little outside the outline where several
triangles meet on it (the box's extreme points are vertices): about half
of ``sigma``. At half a pixel the box of the pixels with opacity above 0.5
stays within a pixel of the ground-truth box (the renderer's default of 1
pixel puts it up to 1.2 pixels out). An enlarged crop (side above
``max_render``) enlarges that too: up to about 1.3 pixels at twice the size."""


class SyntheticImage(NamedTuple):
    """One synthetic image with its full ground truth, in the conventions of :mod:`rfcore.data.sample`.

    A box is the tight box of the projected mesh (forehead to chin, cheek to
    cheek); the pixels with opacity above 0.5 give it within a pixel
    (:data:`EDGE`). The landmarks are the projected landmark vertices of the
    template (:data:`rfcore.mesh.template.LANDMARK_POINTS`: centre of the eye
    patch, top of the nose-tip bump, the ends of the lip patch), where a WIDER
    FACE annotator puts eye centres, nose tip and mouth corners. Each pair is
    ordered by image ``x`` (:func:`~rfcore.boxes.image_left_first`), as WIDER FACE orders
    them, and a landmark the face itself hides (the far eye at a large yaw)
    keeps its projected position, unflagged. Vertices, boxes, landmarks and
    poses are computed in float64 from the draws and rounded to float32, with
    eigenvectors of fixed sign (:func:`rfcore.mesh.laplacian.eigenbasis`): the
    same bit for bit on every CPU and thread count. Only the renderer runs in
    float32, so pixels may differ by a grey level between CPUs.

    Attributes:
        sample: The image, boxes and landmarks as a :class:`~rfcore.data.sample.FaceSample`.
        vertices: ``(F, V, 2)`` float32 projected template vertices of each
            face, in image pixels (``V = 289``).
        poses: ``(F, 3)`` float32 pitch, yaw and roll of each face in degrees
            (the angles of :func:`rfcore.mesh.camera.camera_from_pose`).
        alpha: ``(H, W)`` float32 opacity of the faces, in ``[0, 1]``.
        background: ``(H, W, 3)`` uint8 RGB image under the faces (hair
            included): ``image = colour * alpha + (1 - alpha) * background``
            (before the options of :mod:`rfcore.data.variety` that act on the faces).
        visible: ``(F, 5)`` bool: no occluder covers the landmark
            (:mod:`rfcore.data.occluders`); its position is still the ground truth.
    """

    sample: FaceSample
    vertices: np.ndarray
    poses: np.ndarray
    alpha: np.ndarray
    background: np.ndarray
    visible: np.ndarray


class FaceDraws(NamedTuple):
    """The random choices of ``F`` faces, in float64 (the ground truth is computed from them).

    Attributes:
        sizes: ``(F,)`` longer box side in pixels, largest first.
        vertices: ``(F, V, 3)`` model coordinates.
        colours: ``(F, V, 3)`` albedo in ``[0, 1]``.
        angles: ``(F, 3)`` pitch, yaw, roll in radians.
        camera: Pose of each face (batch ``F``).
        light: Light of each face (batch ``F``).
    """

    sizes: np.ndarray
    vertices: torch.Tensor
    colours: torch.Tensor
    angles: torch.Tensor
    camera: Camera
    light: Light


class Layout(NamedTuple):
    """The random choices of an image before hair and rendering (:meth:`SyntheticFaces.layout`).

    Attributes:
        rng: The image's generator, positioned after the placements (hair draws from it next).
        background: ``(H, W, 3)`` uint8 background without hair.
        draws: Every face drawn, placed or not.
        fractions: ``(F, V, 2)`` float64 projected vertices as fractions of the crop side.
        placements: The faces that found room.
    """

    rng: np.random.Generator
    background: np.ndarray
    draws: FaceDraws
    fractions: np.ndarray
    placements: list[Placement]


class SyntheticFaces(torch.utils.data.Dataset):
    """Images of rendered faces over procedural backgrounds, deterministic for a seed.

    Item ``i`` is a :class:`~rfcore.data.sample.FaceSample` like those of
    :class:`~rfcore.data.widerface.WiderFace` (path ``"synthetic:{seed}:{i}"``);
    :meth:`render` also gives the dense vertices, the opacity and the
    background. Each image is a procedural background
    (:func:`~rfcore.data.procedural.random_background`), a number of faces
    uniform in ``faces``, sized log-uniformly from ``min_face`` to
    ``max_face`` and posed uniformly within ``±max_angle``
    (:func:`draw_faces`), placed largest first without overlaps
    (:func:`~rfcore.data.placement.place_faces`), hair behind most
    (:func:`~rfcore.data.procedural.add_hair`), and each face rendered into
    its own crop, capped at ``max_render`` pixels, composited with its soft
    opacity (:func:`composite_faces`).

    Args:
        length: Number of images.
        image_size: Side of square images, or ``(height, width)``.
        faces: ``(low, high)``: faces per image, uniform, both included
            (fewer when no free place is found).
        min_face: Smallest face size (longer box side) in pixels.
        max_face: Largest face size; ``None`` for half the short image side.
        max_angle: Largest pitch, yaw and roll in degrees, below 90.
        max_render: Crops larger than this many pixels are rendered at this
            size and enlarged (faster; the mesh has little detail to lose).
        seed: Seed of the images.
        transform: Optional ``transform(sample, rng) -> sample``, e.g.
            :class:`rfcore.data.augment.TrainTransform`, drawing from
            ``numpy.random.default_rng([seed, epoch, i])`` as in :class:`~rfcore.data.widerface.WiderFace`.
        variety: Options that widen the distribution (:mod:`rfcore.data.variety`;
            ``None``: none); the faces, poses and places stay those drawn without them.

    Raises:
        ValueError: For a negative length, a bad face count, size range or angle.
    """

    def __init__(
        self,
        length: int,
        image_size: int | tuple[int, int] = 640,
        faces: tuple[int, int] = (1, 12),
        min_face: float = 8.0,
        max_face: float | None = None,
        max_angle: float = 40.0,
        max_render: int = 64,
        seed: int = 0,
        transform: Transform | None = None,
        variety: Variety | None = None,
    ) -> None:
        self.image_size = check_image_size((image_size, image_size) if isinstance(image_size, int) else image_size)
        max_face = min(self.image_size) / 2 if max_face is None else max_face
        low, high = faces
        if length < 0 or not 0 <= low <= high:
            raise ValueError(f"need length >= 0 and 0 <= low <= high faces, got length={length}, faces={faces}")
        if not 1 <= min_face <= max_face <= min(self.image_size):
            raise ValueError(f"need 1 <= min_face <= max_face <= {min(self.image_size)} (the short image side), "
                             f"got min_face={min_face}, max_face={max_face}")
        if not 0 <= max_angle < 90 or max_render < 1:
            raise ValueError(f"need 0 <= max_angle < 90 degrees and max_render >= 1, got {max_angle}, {max_render}")
        self.length, self.faces, self.seed = length, (low, high), seed
        self.face_range, self.max_angle, self.max_render = (min_face, max_face), max_angle, max_render
        self.transform = transform
        self.variety = Variety() if variety is None else variety
        self.epoch = 0
        self.kept: list[FaceSample] | None = None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> FaceSample:
        """Image ``index`` and its faces, transformed if the dataset has a transform."""
        index = range(self.length)[index]
        sample = self.render(index).sample if self.kept is None else self.kept[index]
        if self.transform is None:
            return sample
        return self.transform(sample, np.random.default_rng([self.seed, self.epoch, index]))

    def keep_rendered(self, progress: bool = False) -> None:
        """Render every image once and keep it, so that later epochs only augment.

        Rendering an image costs tens of milliseconds, more than a small
        training step spends on it, and the images never change (only their
        augmentation does). The kept images take ``H x W x 3`` bytes each;
        DataLoader workers started afterwards share them. Items are the same
        with or without (the transforms never modify their input).

        Args:
            progress: Show a progress bar on stderr.
        """
        indices = progress_bar(range(self.length), desc="rendering synthetic images", unit="image",
                               disable=not progress)
        self.kept = [self.render(index).sample for index in indices]

    def set_epoch(self, epoch: int) -> None:
        """Draw new augmentations (the images themselves never change)."""
        self.epoch = epoch

    def layout(self, index: int) -> Layout:
        """The background, faces and placements of image ``index``: what :meth:`render` draws.

        With :func:`composite_faces` this renders the same faces in other
        colours, e.g. to check the ground truth against the pixels.

        Raises:
            IndexError: If ``index`` is out of range.
        """
        index = range(self.length)[index]
        rng = np.random.default_rng([self.seed, index])
        background = random_background(rng, self.image_size)
        count = int(rng.integers(self.faces[0], self.faces[1] + 1))
        count, face_range = self.variety.face_layout((self.seed, index), count, self.face_range, self.image_size)
        draws = draw_faces(rng, count, face_range, self.max_angle)
        # positions in the crop as fractions of its side: (F, V, 2) in about [0.1, 0.9]
        fractions = project(to_view(draws.vertices, draws.camera), draws.camera, (1, 1))[0].numpy()
        placements = place_faces(rng, fractions, draws.sizes, self.image_size, self.max_render, EDGE)
        return Layout(rng, background, draws, fractions, placements)

    def render(self, index: int) -> SyntheticImage:
        """Draw image ``index`` with its full ground truth.

        Raises:
            IndexError: If ``index`` is out of range.
        """
        index = range(self.length)[index]
        rng, background, draws, fractions, placements = self.layout(index)
        vertices = image_vertices(fractions, placements)
        boxes = np.concatenate([vertices.min(axis=1), vertices.max(axis=1)], axis=1)  # (P, 4)
        landmarks = image_left_first(vertices[:, [face_model().mesh.landmarks[n] for n in LANDMARK_NAMES]])
        rows = [p.index for p in placements]
        skin = draws.colours[rows].mean(dim=1).numpy().reshape(-1, 3)  # (P, 3)
        background = self.variety.vary_background(background, (self.seed, index), boxes, landmarks, skin)
        background = add_hair(background, rng, boxes, landmarks)
        image, alpha = composite_faces(background, draws, placements, self.max_render)
        image, visible = self.variety.vary_faces(image, alpha, (self.seed, index), boxes, landmarks)
        sample = FaceSample(image, boxes, landmarks, f"synthetic:{self.seed}:{index}")
        poses = np.degrees(draws.angles[rows].numpy()).reshape(-1, 3).astype(np.float32)
        return SyntheticImage(sample, vertices, poses, alpha, background, visible)


# ---------------------------------------------------------------- faces


def draw_faces(rng: np.random.Generator, count: int, size_range: tuple[float, float], max_angle: float) -> FaceDraws:
    """Draw the size, shape, colour, pose and light of ``count`` faces.

    Args:
        rng: Source of randomness.
        count: Number of faces ``F``.
        size_range: ``(min_face, max_face)`` in pixels; sizes are log-uniform.
        max_angle: Largest pitch, yaw and roll in degrees.

    Returns:
        :class:`FaceDraws`, largest face first.
    """
    model = face_model()
    low, high = math.log(size_range[0]), math.log(size_range[1])
    sizes = np.sort(np.exp(rng.uniform(low, high, count)))[::-1].copy()
    basis = model.basis  # (V, M)

    def normal(*shape):  # float64 tensor of standard normal draws
        return torch.from_numpy(rng.standard_normal(shape))

    def uniform(bounds, *shape):
        return torch.from_numpy(rng.uniform(*bounds, size=shape))

    stretch = torch.stack([uniform(WIDTH_RANGE, count), torch.ones(count, dtype=torch.float64),
                           uniform(DEPTH_RANGE, count)], dim=1)
    # (V, M) x (F, M, 3) -> (F, V, 3) smooth offsets
    amplitude = torch.tensor(SHAPE_AMPLITUDE, dtype=torch.float64)
    offsets = torch.einsum("vm,fmc->fvc", basis[:, :SHAPE_MODES], amplitude * normal(count, SHAPE_MODES, 3))
    vertices = model.mesh.vertices.double() * stretch[:, None] + offsets
    colours = skin_colours(model, uniform((0, 1), count), normal(count, COLOUR_MODES, 3))
    angles = torch.from_numpy(np.radians(rng.uniform(-max_angle, max_angle, (count, 3))))
    camera = camera_from_pose(angles, torch.full((count,), DISTANCE, dtype=torch.float64), FOCAL)
    light = Light(
        position=uniform(LIGHT_BOX, count, 3),
        colour=uniform(LIGHT_INTENSITY, count, 1) * uniform(LIGHT_TINT, count, 3),
        ambient=uniform(AMBIENT_RANGE, count, 1).expand(count, 3),
    )
    return FaceDraws(sizes, vertices, colours, angles, camera, light)


def render_crop(
    draws: FaceDraws, index: int, side: int, max_render: int, faces: torch.Tensor | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Render face ``index`` into a ``side x side`` crop (at most ``max_render`` pixels, then enlarged).

    The soft edge is :data:`EDGE` render pixels, so the opacity crosses 0.5
    within about a quarter render pixel of the outline of the projected
    mesh, i.e. of the ground-truth box.

    Args:
        draws: The faces.
        index: Row of the face in ``draws``.
        side: Side of the crop in image pixels.
        max_render: Largest render size.
        faces: ``(T, 3)`` triangles of ``draws.vertices``; ``None`` for the template's.

    Returns:
        ``(side, side, 3)`` float32 colour already multiplied by the opacity
        (0..255 scale) and ``(side, side)`` float32 opacity.
    """
    size = min(side, max_render)
    faces = face_model().mesh.faces if faces is None else faces
    pick = slice(index, index + 1)
    # the renderer runs in float32, as in training; only the pixels see its rounding
    camera = Camera(*(value[pick].float() for value in draws.camera))
    light = Light(*(value[pick].float() for value in draws.light))
    with torch.no_grad():
        rendered = render(draws.vertices[pick].float(), draws.colours[pick].float(), faces, camera, light,
                          (size, size), sigma=EDGE)
    # the image is A F over black: A F <= A clips the lit colour F to 1
    premultiplied = torch.minimum(rendered.image.clamp(min=0), rendered.alpha)
    # (1, 3, r, r) colour and (1, 1, r, r) opacity -> (r, r, 4)
    rgba = torch.cat([premultiplied * 255, rendered.alpha], dim=1)[0].permute(1, 2, 0).numpy()
    if size < side:
        rgba = cv2.resize(rgba, (side, side), interpolation=cv2.INTER_LINEAR)
    return rgba[..., :3], rgba[..., 3]


def composite_faces(
    background: np.ndarray,
    draws: FaceDraws,
    placements: list[Placement],
    max_render: int,
    faces: torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Render every placed face and lay it over the background with its opacity.

    Args:
        background: ``(H, W, 3)`` uint8 image to draw on.
        draws: The faces; their colours and light may be replaced, e.g. by
            flat colours painted on some vertices (``colours`` of the same
            shape as ``vertices``, ``Light`` with ambient 1 and colour 0).
        placements: Where each face goes (:meth:`SyntheticFaces.layout`).
        max_render: Largest render size.
        faces: ``(T, 3)`` triangles of ``draws.vertices``; ``None`` for the
            template's (another mesh may refine it, e.g. to paint a smaller
            neighbourhood of a vertex).

    Returns:
        ``(H, W, 3)`` uint8 image and ``(H, W)`` float32 opacity of all faces.
    """
    height, width = background.shape[:2]
    image = background.astype(np.float32)
    alpha = np.zeros((height, width), np.float32)
    for placement in placements:
        colour, opacity = render_crop(draws, placement.index, placement.side, max_render, faces)
        # the part of the crop inside the image
        x0, y0 = max(placement.x, 0), max(placement.y, 0)
        x1, y1 = min(placement.x + placement.side, width), min(placement.y + placement.side, height)
        crop = np.s_[y0 - placement.y : y1 - placement.y, x0 - placement.x : x1 - placement.x]
        a = opacity[crop][..., None]
        image[y0:y1, x0:x1] = colour[crop] + (1 - a) * image[y0:y1, x0:x1]
        alpha[y0:y1, x0:x1] = np.maximum(alpha[y0:y1, x0:x1], opacity[crop])
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), alpha


VALIDATION = {"length": 240, "image_size": 256, "faces": (1, 5), "min_face": 10.0, "max_face": 200.0,
              "seed": 1_000_003}
"""The held-out synthetic validation set of ``rfcore train --val synthetic`` and the recorded runs.

240 images of 256 x 256 with one to five faces each, sizes 10 to 200 pixels
(log-uniform, so roughly a third in each band of
:data:`rfcore.evaluation.truth.SIZE_BANDS`), drawn with a seed no training run
uses by default (training images are ``default_rng([seed, i])`` with
``--seed``, 0 unless given). Defined once here and kept, so that every
recorded figure is on the same faces."""


VALIDATION_VARIED = {**VALIDATION, "seed": 1_000_033}
"""The second held-out set, ``rfcore train --val synthetic-varied``: :data:`VALIDATION`'s sizes and counts with
another seed and every option of :mod:`rfcore.data.variety` on."""


def validation_set(length: int | None = None, varied: bool = False) -> SyntheticFaces:
    """The held-out synthetic validation set (:data:`VALIDATION`, or with ``varied``
    :data:`VALIDATION_VARIED`), or its first ``length`` images."""
    settings = dict(VALIDATION_VARIED if varied else VALIDATION)
    if length is not None:
        settings["length"] = min(length, settings["length"])
    return SyntheticFaces(**settings, variety=Variety.from_names(["all"]) if varied else Variety())
