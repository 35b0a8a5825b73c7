"""rfcore.data.synthetic: determinism, exact ground truth and the WIDER FACE sample format."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from rfcore.boxes import image_left_first
from rfcore.config import get_config
from rfcore.data import FaceSample, SyntheticFaces, TrainTransform, collate_faces, face_loader
from rfcore.data.synthetic import render_crop
from rfcore.mesh.camera import Light, to_view
from rfcore.mesh.face_model import face_model
from rfcore.mesh.template import LANDMARK_NAMES, PATCHES

SIZE = (160, 224)  # (height, width): small and not square


@pytest.fixture(scope="module")
def dataset():
    return SyntheticFaces(8, image_size=SIZE, faces=(2, 6), min_face=8, max_face=80, seed=7)


@pytest.fixture(scope="module")
def images(dataset):
    return [dataset.render(i) for i in range(len(dataset))]


def test_same_seed_same_arrays_different_seed_different(dataset, images):
    again = SyntheticFaces(8, image_size=SIZE, faces=(2, 6), min_face=8, max_face=80, seed=7)
    for index in (5, 0):  # order does not matter
        first, second = images[index], again.render(index)
        for a, b in [(first.sample.image, second.sample.image), (first.sample.boxes, second.sample.boxes),
                     (first.sample.landmarks, second.sample.landmarks), (first.vertices, second.vertices),
                     (first.poses, second.poses), (first.alpha, second.alpha)]:
            np.testing.assert_array_equal(a, b)
    other = SyntheticFaces(8, image_size=SIZE, faces=(2, 6), min_face=8, max_face=80, seed=8)
    assert not np.array_equal(other.render(0).sample.image, images[0].sample.image)
    assert not np.array_equal(images[1].sample.image, images[0].sample.image)


def test_images_do_not_depend_on_the_thread_count(dataset, images):
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if threads > 1 else 2)
    try:
        again = dataset.render(2)
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(again.sample.image, images[2].sample.image)
    np.testing.assert_array_equal(again.vertices, images[2].vertices)


GROUND_TRUTH_CODE = """
import numpy as np
from rfcore.data.synthetic import SyntheticFaces
dataset = SyntheticFaces(6, image_size=(160, 224), faces=(2, 6), min_face=8, max_face=80, seed=7)
face = SyntheticFaces(1, image_size=192, faces=(1, 1), min_face=100, max_face=120, seed=3)
truth = [image.render(0) for image in (dataset, face)] + [dataset.render(i) for i in range(1, 6)]
np.savez({path!r}, *[getattr(t.sample, n) for t in truth for n in ("boxes", "landmarks")],
         *[getattr(t, n) for t in truth for n in ("vertices", "poses")])
"""
"""Writes the ground truth of seven synthetic images (the notebooks' big face among them) to ``path``."""


def ground_truth_here(path):
    exec(GROUND_TRUTH_CODE.format(path=str(path)), {})
    return dict(np.load(path))


def other_kernels_environment():
    """The environment of a CPU without AVX: generic ATen kernels, oneDNN at SSE4.1, numpy at its baseline, one
    thread, another hash seed."""
    environment = os.environ | {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
                                "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "12345"}
    try:  # numpy's SIMD dispatch targets have no public name; disable those this CPU has
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
        environment["NPY_DISABLE_CPU_FEATURES"] = " ".join(f for f in __cpu_dispatch__ if __cpu_features__.get(f))
    except ImportError:
        pass
    return environment


@pytest.mark.slow
def test_ground_truth_is_bit_identical_under_other_cpu_kernels(tmp_path):
    here = ground_truth_here(tmp_path / "here.npz")
    there = tmp_path / "there.npz"
    code = GROUND_TRUTH_CODE.format(path=str(there))
    subprocess.run([sys.executable, "-c", code], env=other_kernels_environment(), check=True, timeout=300)
    there = dict(np.load(there))
    assert here.keys() == there.keys() and len(here) == 28
    for name in here:
        np.testing.assert_array_equal(here[name], there[name], err_msg=name)


@pytest.mark.slow
def test_ground_truth_is_bit_identical_in_a_kernel_started_as_nbval_starts_it(tmp_path):
    from jupyter_client.manager import start_new_kernel

    here = ground_truth_here(tmp_path / "here.npz")
    there = tmp_path / "there.npz"
    manager, client = start_new_kernel(kernel_name="python3", startup_timeout=120,
                                       extra_arguments=["--HistoryManager.hist_file=:memory:"], cwd=str(tmp_path))
    try:
        reply = client.execute_interactive(GROUND_TRUTH_CODE.format(path=str(there)), timeout=300)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert reply["content"]["status"] == "ok", reply["content"]
    there = dict(np.load(there))
    for name in here:
        np.testing.assert_array_equal(here[name], there[name], err_msg=name)


def test_samples_have_the_widerface_format(dataset, images):
    sample = dataset[3]
    assert isinstance(sample, FaceSample) and sample.path == "synthetic:7:3"
    assert sample.image.shape == (*SIZE, 3) and sample.image.dtype == np.uint8
    assert sample.boxes.dtype == sample.landmarks.dtype == np.float32
    assert sample.boxes.shape == (len(sample.boxes), 4) and sample.landmarks.shape == (len(sample.boxes), 5, 2)
    assert sample.has_landmarks.all()
    np.testing.assert_array_equal(sample.image, images[3].sample.image)
    assert all(2 <= len(image.sample.boxes) <= 6 for image in images)  # four to six tried, room for two or more


def test_boxes_are_well_formed_inside_the_image_sized_and_apart(images):
    height, width = SIZE
    for image in images:
        boxes = image.sample.boxes
        assert (boxes[:, 2:] > boxes[:, :2]).all()
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
        longer_side = (boxes[:, 2:] - boxes[:, :2]).max(axis=1)
        assert (longer_side >= 8 - 0.5).all() and (longer_side <= 80 + 0.5).all()  # crop sides are whole pixels
        overlap = box_iou(torch.from_numpy(boxes), torch.from_numpy(boxes)).fill_diagonal_(0)
        assert (overlap == 0).all()


def test_landmarks_and_dense_vertices_lie_in_their_box_and_agree(images):
    landmark_vertices = [face_model().mesh.landmarks[name] for name in LANDMARK_NAMES]
    for image in images:
        boxes, points, vertices = image.sample.boxes, image.sample.landmarks, image.vertices
        assert vertices.shape == (len(boxes), 289, 2) and vertices.dtype == np.float32
        for inner in (points, vertices):
            assert (inner >= boxes[:, None, :2] - 1e-3).all() and (inner <= boxes[:, None, 2:] + 1e-3).all()
        # the box is the tight box of the vertices, the landmarks are vertices
        np.testing.assert_allclose(boxes, np.concatenate([vertices.min(1), vertices.max(1)], axis=1))
        np.testing.assert_array_equal(points, image_left_first(vertices[:, landmark_vertices]))


def test_left_points_are_on_the_left_and_eyes_above_the_mouth(images):
    poses = np.concatenate([image.poses for image in images])
    assert poses.shape == (sum(len(image.sample.boxes) for image in images), 3) and np.abs(poses).max() <= 40
    points = np.concatenate([image.sample.landmarks for image in images])
    assert (points[:, 0, 0] < points[:, 1, 0]).all() and (points[:, 3, 0] < points[:, 4, 0]).all()
    assert (points[:, :2, 1].mean(1) < points[:, 3:, 1].mean(1)).all()


def test_faces_change_the_pixels_and_the_rest_is_background(images):
    for image in images:
        picture, background, alpha = image.sample.image, image.background, image.alpha
        np.testing.assert_array_equal(picture[alpha == 0], background[alpha == 0])
        for x1, y1, x2, y2 in image.sample.boxes.round().astype(int):
            face = alpha[y1:y2, x1:x2] > 0.9
            assert face.mean() > 0.5  # the face fills most of its box
            change = np.abs(picture[y1:y2, x1:x2].astype(int) - background[y1:y2, x1:x2])[face]
            assert change.mean() > 10


# --- ground truth against the pixels ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def posed():
    """Faces of 24 to 80 pixels in all poses up to 40 degrees, rendered at their full size (no enlargement)."""
    return SyntheticFaces(12, image_size=192, faces=(1, 2), min_face=24, max_face=80, max_angle=40, max_render=128,
                          seed=11)


def subdivide(vertices, faces):
    """Split every triangle into four at its edge midpoints: the same surface, a finer colour interpolation.

    Args:
        vertices: ``(B, V, 3)``.
        faces: ``(T, 3)``.

    Returns:
        ``(B, V + E, 3)`` vertices (the first ``V`` unchanged) and ``(4 T, 3)`` faces.
    """
    edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).sort(dim=1).values  # (3T, 2)
    unique, inverse = torch.unique(edges, dim=0, return_inverse=True)
    ab, bc, ca = vertices.shape[1] + inverse.reshape(3, -1)  # midpoint indices, (T,) each
    a, b, c = faces.unbind(1)
    fine = torch.cat([torch.stack(t, dim=1) for t in ((a, ab, ca), (ab, b, bc), (ca, bc, c), (ab, bc, ca))])
    return torch.cat([vertices, vertices[:, unique].mean(dim=2)], dim=1), fine


def paint(dataset, index, colours_of, levels=0):
    """Render each placed face of image ``index`` unlit in other colours, in its own crop.

    Args:
        dataset: A :class:`SyntheticFaces`.
        index: The image.
        colours_of: ``(vertices (F, V, 3), faces) -> (F, V, 3)`` colours in ``[0, 1]``.
        levels: Subdivisions of the mesh before painting (a smaller neighbourhood per vertex).

    Returns:
        Per placed face: its :class:`~rfcore.data.placement.Placement`, its ``(side, side, 3)``
        premultiplied colour (0..255), opacity ``(side, side)`` and view-space vertices ``(V, 3)``.
    """
    layout = dataset.layout(index)
    vertices, faces = layout.draws.vertices, face_model().mesh.faces
    for _ in range(levels):
        vertices, faces = subdivide(vertices, faces)
    count = len(vertices)
    flat = Light(torch.zeros(count, 3, dtype=torch.float64), torch.zeros(count, 3, dtype=torch.float64),
                 torch.ones(count, 3, dtype=torch.float64))
    draws = layout.draws._replace(vertices=vertices, colours=colours_of(vertices, faces), light=flat)
    view = to_view(vertices, layout.draws.camera)
    return [(p, *render_crop(draws, p.index, p.side, dataset.max_render, faces), view[p.index].numpy())
            for p in layout.placements]


def centroid(weights):
    """``(x, y)`` centroid of a ``(H, W)`` weight image, pixel ``(i, j)`` at ``(j + 0.5, i + 0.5)``."""
    y, x = np.mgrid[: weights.shape[0], : weights.shape[1]] + 0.5
    return np.array([(weights * x).sum(), (weights * y).sum()]) / weights.sum()


def landmark_hats(names):
    """Colours for :func:`paint`: channel ``k`` is 1 on the vertex of ``names[k]`` and 0 on all others."""
    def colours_of(vertices, faces):
        colours = torch.zeros_like(vertices)
        for channel, name in enumerate(names):
            colours[:, face_model().mesh.landmarks[name], channel] = 1
        return colours
    return colours_of


def surface_depth(dataset, index):
    """Per placed face, the ``(side, side)`` view depth of the nearest surface: a z-buffer through the renderer."""
    def depth_colours(vertices, faces):
        depth = -to_view(vertices, dataset.layout(index).draws.camera)[..., 2]  # (F, V), about 3.2 to 4.8
        return ((depth - 2.5) / 3)[..., None].expand(-1, -1, 3).contiguous()
    return [colour[..., 0] / 255 / np.maximum(alpha, 1e-6) * 3 + 2.5 for _, colour, alpha, _ in
            paint(dataset, index, depth_colours)]


def test_landmark_vertices_painted_in_the_pixels_are_the_ground_truth_within_a_pixel(posed):
    """The centroid of each landmark vertex's painted neighbourhood (the colour falls linearly from 1 at the vertex
    to 0 at its neighbours, twice subdivided) is the ground-truth landmark, for every landmark the face itself
    does not hide. A hidden landmark keeps its projected position (as WIDER FACE annotates occluded points)."""
    vertex = [face_model().mesh.landmarks[name] for name in LANDMARK_NAMES]
    errors, hidden, poses = [], 0, []
    for index in range(len(posed)):
        image = posed.render(index)
        eyes_nose = paint(posed, index, landmark_hats(LANDMARK_NAMES[:3]), levels=2)
        mouth = paint(posed, index, landmark_hats(LANDMARK_NAMES[3:]), levels=2)
        depths = surface_depth(posed, index)
        for face, ((placement, first, _, view), (_, second, _, _), depth) in enumerate(zip(eyes_nose, mouth, depths)):
            colour = np.concatenate([first, second[..., :2]], axis=2)  # (side, side, 5): one channel per landmark
            projected = image.vertices[face, vertex] - [placement.x, placement.y]  # (5, 2) in the crop
            order = image_left_first(projected[None])[0]
            np.testing.assert_array_equal(order + [placement.x, placement.y], image.sample.landmarks[face])
            for k in range(5):
                x, y = np.clip(projected[k].astype(int), 0, placement.side - 1)
                if -view[vertex[k], 2] > depth[y, x] + 0.05:  # something nearer covers the landmark
                    hidden += 1
                    continue
                errors.append(np.linalg.norm(centroid(colour[..., k]) - projected[k]))
            poses.append(image.poses[face])
    errors, poses = np.array(errors), np.abs(np.array(poses))
    assert len(poses) >= 15 and (poses.max(0) > 30).all()  # many faces, every angle turned far
    assert errors.max() < 1.0 and errors.mean() < 0.5, errors.max()
    assert len(errors) + hidden == 5 * len(poses) and len(errors) >= 0.85 * 5 * len(poses)  # most are seen


def test_eye_and_lip_colour_is_centred_on_the_landmarks():
    """On near-frontal faces the dark eye patches are centred on the eye landmarks and the lips on the mouth
    corners' midpoint, to 1.5% of the face height (the eye vertex once sat 3% of it below the patch centre)."""
    frontal = SyntheticFaces(6, image_size=128, faces=(1, 1), min_face=60, max_face=80, max_angle=10, max_render=128,
                             seed=2)
    xy = face_model().mesh.vertices[:, :2].double()

    def patch_weights(vertices, faces):  # red: left eye, green: right eye, blue: lips, as the template colours them
        weights = [torch.exp(-0.5 * (((xy - torch.tensor(p.centre)) / torch.tensor(p.sigma)) ** 2).sum(1))
                   for p in (PATCHES[0], PATCHES[1], PATCHES[4])]
        return torch.stack(weights, dim=1).expand(len(vertices), -1, -1).contiguous()

    for index in range(len(frontal)):
        image = frontal.render(index)
        (placement, colour, _, _), = paint(frontal, index, patch_weights)
        points = image.sample.landmarks[0] - [placement.x, placement.y]
        height = image.sample.boxes[0, 3] - image.sample.boxes[0, 1]
        eyes = [centroid(colour[..., 0]), centroid(colour[..., 1])]
        np.testing.assert_allclose(eyes, points[:2], atol=0.015 * height)
        np.testing.assert_allclose(centroid(colour[..., 2]), points[3:].mean(0), atol=0.015 * height)


def test_the_box_is_the_box_of_the_rendered_opacity_within_a_pixel(posed):
    errors = []
    for index in range(len(posed)):
        image = posed.render(index)
        for face, (placement, _, alpha, _) in enumerate(paint(posed, index, lambda v, f: torch.ones_like(v))):
            rows, cols = np.nonzero(alpha > 0.5)
            box = np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]) + [placement.x, placement.y] * 2
            errors.append(box - image.sample.boxes[face])
    errors = np.abs(np.array(errors))
    assert len(errors) >= 15 and errors.max() <= 1.0, errors.max()


def test_sizes_span_tiny_to_large_log_uniformly():
    dataset = SyntheticFaces(30, image_size=256, faces=(3, 3), min_face=8, max_face=128, seed=1)
    sizes = np.concatenate([(s.boxes[:, 2:] - s.boxes[:, :2]).max(1) for s in map(dataset.__getitem__, range(30))])
    assert sizes.min() < 12 and sizes.max() > 100
    # log-uniform: about as many faces below the geometric mean 32 px as above (large ones may find no room)
    assert 0.4 < (sizes < 32).mean() < 0.75


def test_transform_and_collate_make_a_training_batch():
    cfg = get_config("mobilenet0.25")
    dataset = SyntheticFaces(4, image_size=(200, 300), faces=(1, 4), seed=0, transform=TrainTransform(size=128))
    sample = dataset[1]
    assert sample.image.shape == (128, 128, 3)
    np.testing.assert_array_equal(dataset[1].image, sample.image)  # augmentation is seeded too
    batch = collate_faces([dataset[i] for i in range(2)], cfg.pixel_mean_bgr)
    assert batch.images.shape == (2, 3, 128, 128) and batch.paths == ["synthetic:0:0", "synthetic:0:1"]
    batches = list(face_loader(dataset, cfg, batch_size=2, seed=0))
    assert len(batches) == 2 and batches[0].images.shape == (2, 3, 128, 128)


def test_an_image_without_faces_keeps_the_shapes():
    empty = SyntheticFaces(1, image_size=64, faces=(0, 0)).render(0)
    assert empty.sample.boxes.shape == (0, 4) and empty.sample.landmarks.shape == (0, 5, 2)
    assert empty.vertices.shape == (0, 289, 2) and empty.poses.shape == (0, 3) and not empty.alpha.any()
    np.testing.assert_array_equal(empty.sample.image, empty.background)


@pytest.mark.parametrize(
    "options, words",
    [
        ({"length": -1}, "length >= 0"),
        ({"faces": (3, 2)}, "0 <= low <= high"),
        ({"min_face": 0.5}, "1 <= min_face <= max_face"),
        ({"min_face": 40, "max_face": 30}, "1 <= min_face <= max_face"),
        ({"max_face": 500}, "short image side"),
        ({"max_angle": 90}, "max_angle < 90"),
    ],
)
def test_bad_arguments_are_named(options, words):
    arguments = {"length": 2, "image_size": 320} | options
    with pytest.raises(ValueError, match=words):
        SyntheticFaces(**arguments)
    with pytest.raises(IndexError):
        SyntheticFaces(2, image_size=64).render(2)


def test_the_shipped_detector_finds_larger_synthetic_faces():
    from rfcore.detector import Detector

    detector = Detector()
    dataset = SyntheticFaces(6, image_size=320, faces=(1, 3), min_face=64, max_face=160, seed=0)
    found = total = 0
    for sample in map(dataset.__getitem__, range(len(dataset))):
        boxes = torch.tensor([face.box for face in detector.detect(sample.image, color="RGB")]).reshape(-1, 4)
        if len(boxes):
            found += int((box_iou(torch.from_numpy(sample.boxes), boxes).max(1).values > 0.5).sum())
        total += len(sample.boxes)
    # MobileNet-0.25 trained on WIDER FACE finds 6 of these 14 faces; the smooth, plain faces are not real ones
    assert found >= total // 4


def test_kept_images_give_the_same_items_and_survive_augmentation():
    transform = TrainTransform(size=64)
    fresh = SyntheticFaces(3, image_size=96, faces=(1, 3), min_face=16, seed=4, transform=transform)
    kept = SyntheticFaces(3, image_size=96, faces=(1, 3), min_face=16, seed=4, transform=transform)
    kept.keep_rendered()
    originals = [sample.image.copy() for sample in kept.kept]
    for epoch in (0, 1, 0):  # epoch 0 again: the augmentation did not change the kept images
        fresh.set_epoch(epoch)
        kept.set_epoch(epoch)
        for index in range(3):
            a, b = fresh[index], kept[index]
            np.testing.assert_array_equal(a.image, b.image)
            np.testing.assert_array_equal(a.boxes, b.boxes)
            np.testing.assert_array_equal(a.landmarks, b.landmarks)
    for sample, original in zip(kept.kept, originals):
        np.testing.assert_array_equal(sample.image, original)


def test_training_keeps_synthetic_images_that_fit_and_renders_the_rest_each_epoch(monkeypatch):
    from rfcore.train import data as train_data
    from rfcore.train.config import TrainConfig

    train_cfg = TrainConfig(data="synthetic", num_images=4, image_size=64, quiet=True)
    cfg = train_cfg.loss_preset()
    assert len(train_data.build_dataset(train_cfg, cfg).kept) == 4
    monkeypatch.setattr(train_data, "KEEP_RENDERED_BYTES", 4 * 64 * 64 * 3 - 1)
    assert train_data.build_dataset(train_cfg, cfg).kept is None
