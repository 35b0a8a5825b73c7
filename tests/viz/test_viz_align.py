"""Tests of rfcore.viz.detection: the grid of aligned crops and the before/after figure."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from rfcore.align import align_faces, template_points
from rfcore.assets import IMAGES, load_annotation, load_image
from rfcore.detector import Face
from rfcore.viz.detection import GRID_BACKGROUND, TEMPLATE_COLOR, plot_alignment, render_alignment_grid

GROUP = load_annotation(IMAGES / "group.json")
IMAGE = load_image(GROUP.image_path)
FACES = [
    Face(tuple(box), 0.9, tuple(map(tuple, points)))
    for box, points in zip(GROUP.boxes.tolist(), GROUP.landmarks.tolist())
]


def test_grid_tiles_the_aligned_crops_row_by_row():
    faces = FACES[:7]
    grid = render_alignment_grid(IMAGE, faces, columns=5, pad=4, annotate=False)
    assert grid.shape == (2 * (112 + 4) + 4, 5 * (112 + 4) + 4, 3) and grid.dtype == np.uint8
    crops = align_faces(IMAGE, faces)
    for k, crop in enumerate(crops):
        top, left = 4 + (k // 5) * 116, 4 + (k % 5) * 116
        assert np.array_equal(grid[top : top + 112, left : left + 112], crop)
    assert (grid[:4] == GRID_BACKGROUND).all() and (grid[116:120] == GRID_BACKGROUND).all()
    assert (grid[120:, 4 + 2 * 116 :] == GRID_BACKGROUND).all()  # row 2 holds two crops only


def test_grid_marks_the_template_and_supports_96x112():
    grid = render_alignment_grid(IMAGE, FACES[:2], size=(96, 112), pad=0)
    assert grid.shape == (112, 2 * 96, 3)
    for x, y in np.rint(template_points((96, 112))).astype(int):
        assert tuple(grid[y, x]) == TEMPLATE_COLOR and tuple(grid[y, 96 + x]) == TEMPLATE_COLOR


@pytest.mark.parametrize(
    "faces, options, message",
    [([], {}, "at least one face"), (FACES[:1], {"columns": 0}, "columns >= 1"), (FACES[:1], {"pad": -1}, "pad >= 0")],
)
def test_grid_rejects_bad_input(faces, options, message):
    with pytest.raises(ValueError, match=message):
        render_alignment_grid(IMAGE, faces, **options)


def test_plot_alignment_shows_before_and_after():
    fig = plot_alignment(IMAGE, FACES)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    before, after = fig.axes
    assert "10 faces" in before.get_title() and "112x112" in after.get_title()
    assert [t.get_text() for t in before.texts] == [str(k) for k in range(10)]
    assert before.get_images()[0].get_array().shape == IMAGE.shape
    assert after.get_images()[0].get_array().shape == render_alignment_grid(IMAGE, FACES).shape
