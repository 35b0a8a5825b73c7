"""The coloured face template that the mesh decoder deforms [paper §3.2].

The paper decodes a coloured mesh ``G = (V, E)`` with ``V`` in ``R^(n x 6)``
(xyz + rgb). rfcore builds its template by code, so no data file is needed:

1. a regular ``cells x cells`` grid on the parameter square ``[-1, 1]^2``
   (coordinates ``uv``), each cell split into two triangles along the same
   diagonal, so the grid of ``cells`` nests inside the grid of ``2 * cells``;
2. the square is mapped onto an ellipse (the face outline, x half-width
   0.85, y half-height 1);
3. depth ``z`` is an ellipsoidal cap plus Gaussian bumps: a raised nose
   bridge and tip, sunken eye sockets, brow ridges and lips;
4. every vertex gets a skin colour, darkened at the eyes and brows and
   reddened at the lips.

Model coordinates: ``x`` to the image right, ``y`` up, ``z`` towards the viewer; the face is about 2
units tall. Five named vertices mark the landmarks of :mod:`rfcore.boxes`; :func:`load_obj` reads a
user's own mesh instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch

LANDMARK_NAMES = ("left_eye", "right_eye", "nose_tip", "left_mouth", "right_mouth")
"""Names of the landmark vertices, in the order of :mod:`rfcore.boxes`."""

FACE_HALF_WIDTH, FACE_HALF_HEIGHT, CAP_DEPTH = 0.85, 1.0, 0.5
"""Semi-axes of the face outline and height of the ellipsoidal cap (model units)."""

LANDMARK_POINTS = {
    "left_eye": (-0.3137, 0.2410),
    "right_eye": (0.3137, 0.2410),
    "nose_tip": (0.0, -0.125),
    "left_mouth": (-0.2982, -0.4821),
    "right_mouth": (0.2982, -0.4821),
}
"""Model ``(x, y)`` of each landmark; the landmark vertex is the nearest one.

Each point is where :func:`square_to_ellipse` sends a node of the 16-cell
grid (``uv`` = ``(-+0.375, 0.25)``, ``(0, -0.125)``, ``(-+0.375, -0.5)``), so on
the default template the landmark vertex lies exactly on it, and the
features are drawn around these points: the eye patch and socket are
centred on the eye vertices, the nose-tip bump on the nose vertex, and the
lips end at the mouth-corner vertices (1.5 sigma of the lip patch). These
are the synthetic counterparts of the WIDER FACE annotation (eye centres,
nose tip, mouth corners; "left" = smaller image ``x``)."""

SKIN = (0.87, 0.69, 0.56)
"""Base skin colour (rgb in ``[0, 1]``)."""

DEFAULT_OBJ_COLOUR = 0.7
"""Grey given to every vertex of an OBJ file that has no vertex colours."""


class Bump(NamedTuple):
    """An anisotropic Gaussian ``height * exp(-((x-cx)^2/2sx^2 + (y-cy)^2/2sy^2))``."""

    centre: tuple[float, float]
    sigma: tuple[float, float]
    height: float


class Patch(NamedTuple):
    """A coloured region: the vertex colour moves towards ``colour`` by a Gaussian weight."""

    centre: tuple[float, float]
    sigma: tuple[float, float]
    colour: tuple[float, float, float]


_EYE_X, _EYE_Y = LANDMARK_POINTS["right_eye"]
_NOSE_Y = LANDMARK_POINTS["nose_tip"][1]
_MOUTH_X, _MOUTH_Y = LANDMARK_POINTS["right_mouth"]
_BROW_Y = _EYE_Y + 0.16

BUMPS = (
    Bump((0.0, 0.12), (0.07, 0.22), 0.18),  # nose bridge
    Bump((0.0, _NOSE_Y), (0.1, 0.08), 0.15),  # nose tip
    Bump((-_EYE_X, _EYE_Y), (0.13, 0.08), -0.08),  # eye sockets
    Bump((_EYE_X, _EYE_Y), (0.13, 0.08), -0.08),
    Bump((-_EYE_X, _BROW_Y), (0.16, 0.04), 0.04),  # brow ridges
    Bump((_EYE_X, _BROW_Y), (0.16, 0.04), 0.04),
    Bump((0.0, _MOUTH_Y), (_MOUTH_X / 1.5, 0.05), 0.05),  # lips
)

PATCHES = (
    Patch((-_EYE_X, _EYE_Y), (0.1, 0.07), (0.2, 0.15, 0.12)),  # eyes
    Patch((_EYE_X, _EYE_Y), (0.1, 0.07), (0.2, 0.15, 0.12)),
    Patch((-_EYE_X, _BROW_Y), (0.15, 0.05), (0.35, 0.22, 0.15)),  # brows
    Patch((_EYE_X, _BROW_Y), (0.15, 0.05), (0.35, 0.22, 0.15)),
    Patch((0.0, _MOUTH_Y), (_MOUTH_X / 1.5, 0.07), (0.72, 0.33, 0.33)),  # lips, ending at the mouth corners
)


@dataclass(frozen=True, eq=False)
class Mesh:
    """A coloured triangle mesh.

    Attributes:
        vertices: ``(V, 3)`` model coordinates ``(x, y, z)``.
        faces: ``(F, 3)`` int64 vertex indices, counter-clockwise seen from ``+z``.
        colours: ``(V, 3)`` rgb in ``[0, 1]``.
        uv: ``(V, 2)`` parameter coordinates in ``[-1, 1]^2``, used to relate
            the levels of a hierarchy (:mod:`rfcore.mesh.hierarchy`).
        landmarks: Landmark name -> vertex index.
    """

    vertices: torch.Tensor
    faces: torch.Tensor
    colours: torch.Tensor
    uv: torch.Tensor
    landmarks: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.vertices.shape[0] if self.vertices.ndim == 2 else -1
        for name, value, width in (("vertices", self.vertices, 3), ("colours", self.colours, 3), ("uv", self.uv, 2)):
            if value.ndim != 2 or value.shape != (n, width):
                raise ValueError(f"mesh {name} must have shape (V, {width}) with V = {n}, got {tuple(value.shape)}")
        if self.faces.ndim != 2 or self.faces.shape[1] != 3 or self.faces.dtype != torch.int64:
            got = f"{self.faces.dtype} {tuple(self.faces.shape)}"
            raise ValueError(f"mesh faces must be an int64 (F, 3) tensor, got {got}")
        if len(self.faces) and (self.faces.min() < 0 or self.faces.max() >= n):
            raise ValueError(f"mesh faces index vertices {int(self.faces.min())}..{int(self.faces.max())}, have {n}")
        bad = {name: i for name, i in self.landmarks.items() if not 0 <= i < n}
        if bad:
            raise ValueError(f"landmark vertex indices out of range 0..{n - 1}: {bad}")

    @property
    def num_vertices(self) -> int:
        """Number of vertices ``V``."""
        return self.vertices.shape[0]


def grid(cells: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A triangulated regular grid on the square ``[-1, 1]^2``.

    Vertex ``(row, col)`` sits at ``u = -1 + 2 col / cells``, ``v = -1 + 2 row / cells``
    and has index ``row * (cells + 1) + col``. Every cell is cut along its
    lower-left to upper-right diagonal, so a grid nests inside one with
    twice as many cells.

    Args:
        cells: Cells per side (``>= 1``).

    Returns:
        ``uv`` ``(V, 2)`` float32 with ``V = (cells + 1)^2`` and ``faces``
        ``(F, 3)`` int64 with ``F = 2 cells^2``, counter-clockwise.

    Raises:
        ValueError: If ``cells < 1``.
    """
    if cells < 1:
        raise ValueError(f"a grid needs at least one cell per side, got {cells}")
    side = torch.linspace(-1.0, 1.0, cells + 1)
    v, u = torch.meshgrid(side, side, indexing="ij")
    uv = torch.stack([u, v], dim=-1).reshape(-1, 2)  # (cells+1, cells+1, 2) -> (V, 2)
    row, col = torch.meshgrid(torch.arange(cells), torch.arange(cells), indexing="ij")
    lower_left = (row * (cells + 1) + col).reshape(-1)
    lower_right, upper_left = lower_left + 1, lower_left + cells + 1
    upper_right = upper_left + 1
    faces = torch.cat(
        [torch.stack([lower_left, lower_right, upper_right], 1), torch.stack([lower_left, upper_right, upper_left], 1)]
    )
    return uv, faces


def square_to_ellipse(uv: torch.Tensor) -> torch.Tensor:
    """Map the square ``[-1, 1]^2`` onto the face outline, ``(V, 2) -> (V, 2)``.

    ``(u, v) -> (a u sqrt(1 - v^2 / 2), b v sqrt(1 - u^2 / 2))`` sends the
    square's border onto the ellipse with semi-axes ``a = FACE_HALF_WIDTH``
    and ``b = FACE_HALF_HEIGHT`` and keeps the grid lines smooth.
    """
    u, v = uv.unbind(-1)
    return torch.stack(
        [FACE_HALF_WIDTH * u * torch.sqrt(1 - v**2 / 2), FACE_HALF_HEIGHT * v * torch.sqrt(1 - u**2 / 2)], dim=-1
    )


def gaussian(xy: torch.Tensor, centre: tuple[float, float], sigma: tuple[float, float]) -> torch.Tensor:
    """Unit-height anisotropic Gaussian at points ``(V, 2) -> (V,)``."""
    d = (xy - torch.tensor(centre)) / torch.tensor(sigma)
    return torch.exp(-0.5 * (d**2).sum(-1))


def face_depth(xy: torch.Tensor) -> torch.Tensor:
    """Depth ``z`` of the face surface at model points ``(V, 2) -> (V,)``."""
    r2 = (xy[:, 0] / FACE_HALF_WIDTH) ** 2 + (xy[:, 1] / FACE_HALF_HEIGHT) ** 2
    z = CAP_DEPTH * torch.sqrt((1 - r2).clamp(min=0))
    for bump in BUMPS:
        z = z + bump.height * gaussian(xy, bump.centre, bump.sigma)
    return z


def face_colour(xy: torch.Tensor) -> torch.Tensor:
    """Albedo of the face at model points ``(V, 2) -> (V, 3)``."""
    colour = torch.tensor(SKIN).expand(len(xy), 3)
    for patch in PATCHES:
        weight = gaussian(xy, patch.centre, patch.sigma)[:, None]
        colour = (1 - weight) * colour + weight * torch.tensor(patch.colour)
    return colour


def nearest_vertices(xy: torch.Tensor, points: Mapping[str, tuple[float, float]]) -> dict[str, int]:
    """Name -> index of the vertex of ``xy`` ``(V, 2)`` nearest to each named point."""
    targets = torch.tensor(list(points.values()))
    nearest = torch.cdist(targets, xy).argmin(dim=1)
    return dict(zip(points, nearest.tolist()))


MIRROR_TOLERANCE = 1e-4
"""Largest distance (model units) between a vertex's mirror image and its partner for a mesh to count as symmetric."""


def mirror_order(vertices: torch.Tensor) -> torch.Tensor:
    """Vertex correspondence under a left-right mirror ``x -> -x``: the mesh's own :data:`~rfcore.boxes.FLIP_ORDER`.

    Vertex ``mirror[i]`` sits where vertex ``i`` lands when the face is
    mirrored (the partner of a left-eye vertex is the right-eye vertex; a
    vertex on the mid-line is its own partner). A mesh predicted on a
    horizontally flipped image becomes one of the unflipped image by
    ``x -> width - x`` and taking its vertices in this order.

    Args:
        vertices: ``(V, 3)`` model coordinates of a template symmetric about ``x = 0``.

    Returns:
        ``(V,)`` int64 permutation with ``mirror[mirror] == arange(V)``.

    Raises:
        ValueError: If some vertex has no partner within :data:`MIRROR_TOLERANCE`
            (the mesh is not mirror-symmetric), naming the worst vertex.
    """
    mirrored = vertices * vertices.new_tensor([-1.0, 1.0, 1.0])  # (V, 3)
    distance, mirror = torch.cdist(mirrored.double(), vertices.double()).min(dim=1)  # (V,) each
    worst = int(distance.argmax())
    if distance[worst] > MIRROR_TOLERANCE or not torch.equal(mirror[mirror], torch.arange(len(vertices))):
        raise ValueError(f"the mesh is not mirror-symmetric about x = 0: vertex {worst} at "
                         f"{vertices[worst].tolist()} has no partner within {MIRROR_TOLERANCE} "
                         f"(nearest is {float(distance[worst]):.3g} away)")
    return mirror


def face_template(cells: int = 16) -> Mesh:
    """The built-in face mesh: ``(cells + 1)^2`` vertices, ``2 cells^2`` triangles.

    Args:
        cells: Grid cells per side; 16 gives 289 vertices and 512 triangles.

    Returns:
        A :class:`Mesh` with the five :data:`LANDMARK_NAMES` landmarks.
    """
    uv, faces = grid(cells)
    xy = square_to_ellipse(uv)
    vertices = torch.cat([xy, face_depth(xy)[:, None]], dim=1)
    return Mesh(vertices, faces, face_colour(xy), uv, nearest_vertices(xy, LANDMARK_POINTS))


def load_obj(path: str | Path, landmarks: Mapping[str, int] | None = None) -> Mesh:
    """Read a triangle or polygon mesh from a Wavefront OBJ file.

    Reads ``v x y z`` or ``v x y z r g b`` (colours in ``[0, 1]``) and
    ``f`` lines (``i``, ``i/t``, ``i/t/n`` or ``i//n`` items, 1-based or
    negative relative indices; polygons are split into fans of triangles).
    Other statements (``vt``, ``vn``, ``o``, ``g``, ``s``, ``usemtl`` ...)
    are skipped. The mesh should face ``+z`` like the template: its ``uv``
    is the ``(x, y)`` projection scaled into ``[-1, 1]^2``.

    Args:
        path: The ``.obj`` file.
        landmarks: Optional landmark name -> 0-based vertex index.

    Returns:
        A float32 :class:`Mesh`; vertices without colour are grey.

    Raises:
        ValueError: For a malformed line (the message names the file and
            line), mixed coloured and uncoloured vertices, a file without
            vertices or faces, or a landmark index out of range.
    """
    positions, colours, faces = [], [], []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        where = f"{path}:{number}"
        keyword, *items = line.split("#", 1)[0].split() or [""]
        if keyword == "v":
            position, colour = _parse_vertex(items, where)
            positions.append(position)
            colours.append(colour)
        elif keyword == "f":
            faces.extend(_parse_face(items, len(positions), where))
    if not positions or not faces:
        raise ValueError(f"{path}: needs at least one vertex and one face, found {len(positions)} and {len(faces)}")
    if len({colour is None for colour in colours}) > 1:
        raise ValueError(f"{path}: some vertices have colours and some do not")
    vertices = torch.tensor(positions, dtype=torch.float32)
    rgb = torch.full_like(vertices, DEFAULT_OBJ_COLOUR) if colours[0] is None else torch.tensor(colours)
    return Mesh(vertices, torch.tensor(faces), rgb, _projected_uv(vertices), dict(landmarks or {}))


def _parse_vertex(items: list[str], where: str) -> tuple[list[float], list[float] | None]:
    """``x y z [r g b]`` -> position and colour (``None`` without colour)."""
    try:
        values = [float(item) for item in items]
    except ValueError:
        raise ValueError(f"{where}: vertex values must be numbers, got {' '.join(items)!r}") from None
    if len(values) not in (3, 6) or not all(map(math.isfinite, values)):
        raise ValueError(f"{where}: expected 'v x y z' or 'v x y z r g b' with finite numbers, got {items}")
    colour = values[3:] or None
    if colour is not None and not all(0.0 <= c <= 1.0 for c in colour):
        raise ValueError(f"{where}: vertex colours must lie in [0, 1], got {colour}")
    return values[:3], colour


def _parse_face(items: list[str], num_vertices: int, where: str) -> list[list[int]]:
    """``f a b c ...`` -> fan of 0-based triangles, checking the indices seen so far."""
    if len(items) < 3:
        raise ValueError(f"{where}: a face needs at least three vertices, got {items}")
    indices = []
    for item in items:
        try:
            index = int(item.split("/")[0])
        except ValueError:
            raise ValueError(f"{where}: bad face vertex {item!r}") from None
        resolved = index - 1 if index > 0 else num_vertices + index
        if index == 0 or not 0 <= resolved < num_vertices:
            raise ValueError(f"{where}: face vertex {index} is not one of the {num_vertices} vertices defined so far")
        indices.append(resolved)
    return [[indices[0], indices[k], indices[k + 1]] for k in range(1, len(indices) - 1)]


def _projected_uv(vertices: torch.Tensor) -> torch.Tensor:
    """``(V, 3) -> (V, 2)``: ``(x, y)`` centred and scaled so the longer side spans ``[-1, 1]``."""
    xy = vertices[:, :2]
    low, high = xy.min(0).values, xy.max(0).values
    half = ((high - low) / 2).max().clamp(min=torch.finfo(xy.dtype).tiny)
    return (xy - (low + high) / 2) / half
