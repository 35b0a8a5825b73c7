from dataclasses import replace

import cv2
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from rfcore.anchors import make_anchors
from rfcore.assets import IMAGES, load_image
from rfcore.boxes import POSITIVE, match_anchors
from rfcore.config import get_config
from rfcore.detector import Face, detect
from rfcore.viz import anchors, detection, draw, landmarks

# Two levels with one anchor size each: P3 (stride 8, 16 px) and P4 (stride 16, 32 px).
CFG = replace(get_config("paper"), strides=(8, 16), anchor_sizes=((16.0,), (32.0,)), variances=(0.1, 0.2))
# Exactly the P3 anchor of cell (row 5, col 5), centre (44, 44).
FACE = [36.0, 36.0, 52.0, 52.0]


def blank(height=96, width=96, value=0):
    return np.full((height, width, 3), value, dtype=np.uint8)


def pixel(image, x, y):
    return tuple(int(c) for c in image[y, x])


# ---------------------------------------------------------------- primitives


def test_draw_boxes_outlines_in_colour_and_leaves_input_alone():
    image = blank()
    out = draw.draw_boxes(image, [[10, 20, 40, 60], [50, 50, 90, 90]], color=[(255, 0, 0), (0, 0, 255)])
    assert out.shape == (96, 96, 3) and out.dtype == np.uint8
    assert not image.any()  # input untouched
    assert pixel(out, 10, 40) == (255, 0, 0)  # left edge of box 0
    assert pixel(out, 25, 60) == (255, 0, 0)  # bottom edge of box 0
    assert pixel(out, 90, 70) == (0, 0, 255)  # right edge of box 1
    assert pixel(out, 25, 40) == (0, 0, 0)  # inside box 0 stays
    assert pixel(out, 5, 5) == (0, 0, 0)


def test_draw_landmarks_colours_points_and_skips_missing():
    points = [[10, 10], [30, 10], [20, 20], [12, 30], [28, 30]]
    out = draw.draw_landmarks(blank(), [points], radius=1)
    for k, (x, y) in enumerate(points):
        assert pixel(out, x, y) == draw.LANDMARK_COLORS[k]
    missing = draw.draw_landmarks(blank(), np.full((1, 5, 2), -1.0))
    assert not missing.any()


def test_to_png_round_trips():
    image = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    decoded = cv2.imdecode(np.frombuffer(draw.to_png(image), np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB), image)


def test_to_jpeg_is_a_close_copy():
    image = np.zeros((16, 24, 3), dtype=np.uint8)
    image[:, 12:] = (200, 100, 50)
    jpeg = draw.to_jpeg(image)
    assert jpeg[:2] == b"\xff\xd8"
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert decoded.shape == image.shape
    assert np.abs(decoded.astype(int) - image).mean() < 5


def test_check_image_rejects_non_rgb_uint8():
    with pytest.raises(ValueError, match="uint8"):
        draw.check_image(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        draw.check_image(np.zeros((4, 4), dtype=np.uint8))


def test_crop_zoom_enlarges_by_whole_pixels():
    image = blank()
    image[10, 20] = (9, 8, 7)
    zoom = draw.crop_zoom(image, (20, 10, 30, 14), 3)
    assert zoom.shape == (12, 30, 3)
    assert (zoom[:3, :3] == (9, 8, 7)).all() and not zoom[3:, :].any()


def test_iou_colors_grey_at_zero_and_distinct_above():
    colors = draw.iou_colors([0.0, 0.5, 1.0])
    assert colors.shape == (3, 3) and colors.dtype == np.uint8
    assert tuple(colors[0]) == draw.ZERO_IOU_COLOR
    assert len({tuple(c) for c in colors.tolist()}) == 3


def test_table_markdown():
    text = draw.table_markdown([{"a": 1, "b": 0.5}, {"a": 20, "b": 0.25}], {"b": "{:.0%}"})
    assert text.splitlines() == ["| a | b |", "|---|---|", "| 1 | 50% |", "| 20 | 25% |"]


def test_place_face_scales_about_the_centre_and_broadcasts():
    box = torch.tensor([10.0, 20.0, 30.0, 60.0])
    points = torch.tensor([[15.0, 30.0], [25.0, 30.0], [20.0, 40.0], [15.0, 50.0], [25.0, 50.0]])
    boxes, moved = landmarks.place_face(box, points, torch.tensor([[20.0, 40.0], [100.0, 100.0]]), torch.tensor([1.0, 0.5]))
    assert boxes.shape == (2, 4) and moved.shape == (2, 5, 2)
    torch.testing.assert_close(boxes[0], box)
    torch.testing.assert_close(moved[0], points)
    torch.testing.assert_close(boxes[1], torch.tensor([95.0, 90.0, 105.0, 110.0]))
    torch.testing.assert_close(moved[1, 2], torch.tensor([100.0, 100.0]))  # the nose was at the centre


# ---------------------------------------------------------------- render_anchor_level


def test_render_anchor_level_outlines_the_chosen_anchor_in_its_label_colour():
    rendering = anchors.render_anchor_level(blank(), FACE, CFG, "P3", 0, (47, 41))
    assert rendering.ok and rendering.message == ""
    assert rendering.image.shape == (96, 96, 3) and rendering.image.dtype == np.uint8
    info = rendering.info
    assert info["cell"] == (5, 5) and info["anchor"].tolist() == [44.0, 44.0, 16.0, 16.0]
    assert info["iou"] == pytest.approx(1.0) and info["label"] == "positive"
    assert info["ious"].shape == (12, 12)
    assert pixel(rendering.image, 36, 46) == draw.POSITIVE_COLOR  # left edge
    assert pixel(rendering.image, 46, 52) == draw.POSITIVE_COLOR  # bottom edge
    assert "IoU 1.000" in rendering.caption


def test_render_anchor_level_neighbour_is_ignored_and_far_anchor_negative():
    # The cell to the right overlaps by 8 of 16 columns: IoU 128 / 384 = 1/3.
    right = anchors.render_anchor_level(blank(), FACE, CFG, 0, 0, (53, 44))
    assert right.info["iou"] == pytest.approx(1 / 3) and right.info["label"] == "ignored"
    assert pixel(right.image, 60, 46) == draw.IGNORED_COLOR  # right edge of the anchor centred at (52, 44)
    far = anchors.render_anchor_level(blank(), FACE, CFG, "P4", 0, (90, 90))
    assert far.info["iou"] == 0.0 and far.info["label"] == "negative"
    assert pixel(far.image, 72, 88) == draw.NEGATIVE_COLOR  # left edge of the anchor centred at (88, 88)


def test_render_anchor_level_paints_iou_dots_at_cell_centres():
    rendering = anchors.render_anchor_level(blank(), FACE, CFG, "P3", 0, (10, 10))
    assert pixel(rendering.image, 4, 84) == draw.ZERO_IOU_COLOR  # cell (10, 0): no overlap
    assert pixel(rendering.image, 44, 44) == tuple(draw.iou_colors([1.0])[0])


@pytest.mark.parametrize(
    "face, level, size_index, point, words",
    [
        (FACE, "P9", 0, (40, 40), "no pyramid level 'P9'"),
        (FACE, 2, 0, (40, 40), "no pyramid level 2"),
        (FACE, "P3", 1, (40, 40), "out of range"),
        (FACE, "P3", 0, (96, 40), "outside the image"),
        ([80.0, 80.0, 120.0, 120.0], "P3", 0, (40, 40), "does not lie inside the image"),
        ([-30.0, -30.0, -10.0, -10.0], "P3", 0, (40, 40), "does not lie inside the image"),
        ([40.0, 40.0, 40.0, 60.0], "P3", 0, (40, 40), "zero width or height"),
        ([50.0, 40.0, 40.0, 60.0], "P3", 0, (40, 40), "x2 < x1"),
        ([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]], "P3", 0, (40, 40), "expected one face box"),
    ],
)
def test_render_anchor_level_bad_input_gives_a_message(face, level, size_index, point, words):
    image = blank(value=200)
    rendering = anchors.render_anchor_level(image, face, CFG, level, size_index, point)
    assert not rendering.ok and words in rendering.message
    assert rendering.caption == "" and rendering.info == {}
    assert rendering.image.shape == image.shape and rendering.image.dtype == np.uint8
    assert (rendering.image[:10] != image[:10]).any()  # the message banner is drawn


# ---------------------------------------------------------------- render_matching


# On a 256x256 image the legend in the top-left corner stays clear of this face:
# exactly the P3 anchor of cell (row 25, col 25), centre (204, 204).
FAR_FACE = [196.0, 196.0, 212.0, 212.0]


def test_render_matching_labels_and_colours_anchors():
    rendering = anchors.render_matching(blank(256, 256), [FAR_FACE], CFG, pos_iou=0.5, neg_iou=0.3)
    info = rendering.info
    # the exact anchor is positive; its four P3 neighbours (IoU 1/3) are ignored; the rest negative
    assert (info["positive"], info["forced"], info["ignored"]) == (1, 0, 4)
    assert info["positive"] + info["ignored"] + info["negative"] == len(make_anchors(CFG, (256, 256)))
    expected = match_anchors(make_anchors(CFG, (256, 256)), torch.tensor([FAR_FACE]), 0.5, 0.3).labels
    assert torch.equal(info["labels"], expected)
    assert pixel(rendering.image, 206, 196) == draw.FACE_COLOR  # the face box is drawn last, on top
    assert pixel(rendering.image, 220, 206) == draw.IGNORED_COLOR  # right edge of the ignored (212, 204) anchor
    assert pixel(rendering.image, 196, 204) == draw.FACE_COLOR
    assert pixel(rendering.image, 12, 12) == draw.POSITIVE_COLOR  # legend swatch


def test_render_matching_outlines_positive_anchors_in_the_positive_colour():
    face = [197.0, 197.0, 211.0, 211.0]  # 14x14 inside the 16 px anchor at (204, 204): IoU 0.77
    rendering = anchors.render_matching(blank(256, 256), [face], CFG, pos_iou=0.5, neg_iou=0.3)
    assert (rendering.info["positive"], rendering.info["forced"], rendering.info["ignored"]) == (1, 0, 0)
    assert pixel(rendering.image, 196, 204) == draw.POSITIVE_COLOR
    assert pixel(rendering.image, 197, 204) == draw.FACE_COLOR


def test_render_matching_draws_a_forced_tiny_face_anchor():
    tiny = [202.0, 202.0, 206.0, 206.0]  # 4x4 inside the 16 px anchor at (204, 204): IoU 1/16
    rendering = anchors.render_matching(blank(256, 256), [tiny], CFG, pos_iou=0.5, neg_iou=0.3)
    assert (rendering.info["positive"], rendering.info["forced"], rendering.info["ignored"]) == (1, 1, 0)
    assert int(rendering.info["labels"].eq(POSITIVE).nonzero()) == 25 * 32 + 25
    assert pixel(rendering.image, 196, 200) == draw.FORCED_COLOR
    assert "1 forced" in rendering.caption


def test_render_matching_without_faces_is_all_negative():
    rendering = anchors.render_matching(blank(), torch.zeros(0, 4), CFG)
    assert rendering.ok and rendering.info["negative"] == len(rendering.info["anchors"])


@pytest.mark.parametrize("pos_iou, neg_iou", [(0.3, 0.5), (0.5, 0.0), (1.5, 0.3)])
def test_render_matching_bad_thresholds_give_a_message(pos_iou, neg_iou):
    rendering = anchors.render_matching(blank(), [FACE], CFG, pos_iou=pos_iou, neg_iou=neg_iou)
    assert not rendering.ok and "0 < neg_iou <= pos_iou <= 1" in rendering.message


# ---------------------------------------------------------------- landmark encoding


def landmarks_around(cx, cy, half):
    return torch.tensor([[cx - half, cy - half], [cx + half, cy - half], [cx, cy], [cx - half, cy + half],
                         [cx + half, cy + half]])


def test_render_landmark_encoding_targets_match_the_formula():
    anchor = torch.tensor([44.0, 44.0, 16.0, 16.0])
    points = landmarks_around(44.0, 44.0, 4.0)
    rendering = landmarks.render_landmark_encoding(blank(), FACE, points, CFG, anchor=anchor)
    assert rendering.ok
    torch.testing.assert_close(rendering.info["box_targets"], torch.zeros(4))
    # offset 4 px / (0.1 * 16 px) = 2.5
    expected = torch.tensor([-2.5, -2.5, 2.5, -2.5, 0.0, 0.0, -2.5, 2.5, 2.5, 2.5])
    torch.testing.assert_close(rendering.info["landmark_targets"], expected)
    assert pixel(rendering.image, 36, 46) == draw.FACE_COLOR
    assert pixel(rendering.image, 40, 40) == draw.LANDMARK_COLORS[0]


def test_render_landmark_encoding_picks_the_best_anchor_by_default():
    rendering = landmarks.render_landmark_encoding(blank(), FACE, landmarks_around(44.0, 44.0, 4.0), CFG)
    torch.testing.assert_close(rendering.info["anchor"], torch.tensor([44.0, 44.0, 16.0, 16.0]))
    assert rendering.info["iou"] == pytest.approx(1.0)


def test_render_landmark_encoding_without_landmarks_gives_a_message():
    rendering = landmarks.render_landmark_encoding(blank(), FACE, torch.full((5, 2), -1.0), CFG)
    assert not rendering.ok and "no landmark annotation" in rendering.message


def test_render_moved_face_targets_do_not_depend_on_scale():
    image = blank(256, 256)
    face = [100.0, 100.0, 132.0, 132.0]
    points = landmarks_around(116.0, 116.0, 8.0)
    small = landmarks.render_moved_face(image, face, points, CFG, (44.0, 44.0), 0.5)  # 16 px face on the 16 px anchor
    large = landmarks.render_moved_face(image, face, points, CFG, (40.0, 40.0), 1.0)  # 32 px face on the 32 px anchor
    assert small.ok and large.ok
    torch.testing.assert_close(small.info["box"], torch.tensor(FACE))
    assert small.info["anchor"][2] == 16 and large.info["anchor"][2] == 32
    torch.testing.assert_close(small.info["landmark_targets"], large.info["landmark_targets"])
    torch.testing.assert_close(small.info["box_targets"], large.info["box_targets"])


def test_render_moved_face_moves_the_pixels_with_the_face():
    image = blank(64, 64)
    image[2:6, 50:54] = 255  # a white patch away from the face
    face, points = [24.0, 24.0, 40.0, 40.0], landmarks_around(32.0, 32.0, 4.0)
    rendering = landmarks.render_moved_face(image, face, points, CFG, (12.0, 52.0), 1.0)  # shift by (-20, +20)
    assert rendering.ok
    assert rendering.info["box"].tolist() == [4.0, 44.0, 20.0, 60.0]
    assert pixel(rendering.image, 30, 22) == (255, 255, 255)  # the patch moved along: now x 30..33, y 22..25 (the anchor label covers y >= 25)
    assert pixel(rendering.image, 33, 23) == (255, 255, 255)
    assert pixel(rendering.image, 29, 22) == (0, 0, 0) and pixel(rendering.image, 34, 23) == (0, 0, 0)
    assert pixel(rendering.image, 40, 5) == (128, 128, 128)  # uncovered pixels are grey


@pytest.mark.parametrize("centre, scale, words", [((5.0, 5.0), 1.0, "does not lie inside"),
                                                   ((32.0, 32.0), 0.0, "positive number"),
                                                   ((32.0, 32.0), float("nan"), "positive number"),
                                                   ((32.0, 32.0), "big", "positive number")])
def test_render_moved_face_bad_input_gives_a_message(centre, scale, words):
    rendering = landmarks.render_moved_face(blank(64, 64), [24.0, 24.0, 40.0, 40.0], landmarks_around(32.0, 32.0, 4.0),
                                      CFG, centre, scale)
    assert not rendering.ok and words in rendering.message
    assert rendering.image.shape == (64, 64, 3)


# ---------------------------------------------------------------- plots


def test_plot_anchor_counts_bars_are_the_counts_and_leak_no_figure():
    before = plt.get_fignums()
    fig = anchors.plot_anchor_counts([get_config("paper"), get_config("mobilenet0.25")], (640, 640))
    assert isinstance(fig, Figure) and plt.get_fignums() == before
    paper, mobile = fig.axes
    assert [p.get_height() for p in paper.patches] == [76800, 19200, 4800, 1200, 300]
    assert [p.get_height() for p in mobile.patches] == [12800, 3200, 800]
    assert "102,300" in paper.get_title() and "16,800" in mobile.get_title()


def test_plot_histograms_one_panel_per_group():
    fig = draw.plot_histograms({"a": {"x": np.arange(10), "y": np.ones(3)}, "b": {"z": np.zeros(4)}}, bins=5)
    assert [ax.get_title() for ax in fig.axes] == ["a", "b"]
    assert len(fig.axes[0].patches) == 2  # one step outline per series


def test_render_moved_face_without_landmarks_gives_a_message():
    rendering = landmarks.render_moved_face(blank(64, 64), [24.0, 24.0, 40.0, 40.0], torch.full((5, 2), -1.0), CFG,
                                      (32.0, 32.0), 0.5)
    assert not rendering.ok and "no landmark annotation" in rendering.message


# ---------------------------------------------------------------- detected faces

FACE_POINTS = ((20.0, 35.0), (40.0, 35.0), (30.0, 45.0), (22.0, 58.0), (38.0, 58.0))


def test_draw_faces_draws_box_score_and_coloured_landmarks():
    image = blank(value=128)
    face = Face((10.0, 20.0, 50.0, 70.0), 0.87, FACE_POINTS)
    out = draw.draw_faces(image, [face])
    assert (image == 128).all()  # input untouched
    assert pixel(out, 10, 45) == draw.FACE_COLOR and pixel(out, 50, 45) == draw.FACE_COLOR
    for k, (x, y) in enumerate(FACE_POINTS):
        assert pixel(out, int(x), int(y)) == draw.LANDMARK_COLORS[k]
    # a 40-px face gets dots of radius 40 / 20 = 2
    assert pixel(out, 22, 35) == draw.LANDMARK_COLORS[0] and pixel(out, 23, 35) == (128, 128, 128)
    assert pixel(out, 9, 16) == (0, 0, 0)  # the score's black label box
    assert pixel(draw.draw_faces(image, [face], scores=False), 9, 16) == (128, 128, 128)


def test_draw_faces_colours_per_face_and_scales_lines_with_the_image():
    faces = [Face((10.0, 10.0, 40.0, 40.0), 0.9, FACE_POINTS), Face((200.0, 100.0, 300.0, 200.0), 0.8, FACE_POINTS)]
    out = draw.draw_faces(blank(400, 800), faces, color=[(255, 0, 0), (0, 0, 255)], scores=False)
    assert pixel(out, 10, 25) == (255, 0, 0) and pixel(out, 200, 150) == (0, 0, 255)
    # 800 px long side: lines of thickness 2, as draw_boxes draws them
    two = draw.draw_boxes(blank(400, 800), [faces[1].box], (0, 0, 255), thickness=2)
    np.testing.assert_array_equal(out[150, 190:210], two[150, 190:210])
    assert (out[150, 190:210] == (0, 0, 255)).all(axis=1).sum() > 1
    assert (draw.draw_faces(blank(), []) == 0).all()


def test_render_threshold_counts_found_false_and_missed_faces():
    right = Face((10.0, 20.0, 50.0, 70.0), 0.9, FACE_POINTS)
    wrong = Face((60.0, 10.0, 90.0, 40.0), 0.3, FACE_POINTS)
    truth = [[12.0, 22.0, 50.0, 70.0], [60.0, 60.0, 90.0, 90.0]]
    high = detection.render_threshold(blank(), [right, wrong], 0.5, truth)
    assert high.ok and high.info["faces"] == [right]
    assert (high.info["matched"], high.info["false"], high.info["missed"]) == (1, 0, 1)
    assert pixel(high.image, 10, 45) == draw.FACE_COLOR and pixel(high.image, 60, 75) == draw.MISSED_COLOR
    assert high.caption == (
        "score > 0.50: 1 face, 1 on an annotated face (IoU >= 0.5), 0 elsewhere; 1 of 2 annotated faces missed"
    )
    low = detection.render_threshold(blank(), [right, wrong], 0.2, truth)
    assert (low.info["matched"], low.info["false"], low.info["missed"]) == (1, 1, 1)
    assert pixel(low.image, 60, 25) == draw.NEGATIVE_COLOR


def test_render_threshold_without_annotation_and_with_a_bad_threshold():
    rendering = detection.render_threshold(blank(), [Face((10.0, 20.0, 50.0, 70.0), 0.9, FACE_POINTS)], 0.95)
    assert rendering.caption == "score > 0.95: 0 faces" and rendering.info == {"threshold": 0.95, "faces": []}
    bad = detection.render_threshold(blank(), [], 1.0)
    assert not bad.ok and "[0, 1)" in bad.message


def test_render_threshold_filtering_equals_detecting_at_that_threshold():
    path = IMAGES / "group.jpg"
    low = detect(path, threshold=0.01)
    for threshold in (0.3, 0.9):
        assert detection.render_threshold(load_image(path), low, threshold).info["faces"] == detect(path, threshold=threshold)
