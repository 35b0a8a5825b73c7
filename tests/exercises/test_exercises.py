"""The checkers pass every solution, catch the typical mistakes, and never raise because of the student's code."""

import importlib
import inspect
import pkgutil

import numpy as np
import pytest
import torch

from rfcore.boxes import NEGATIVE, POSITIVE
import rfcore.exercises
from rfcore.exercises import anchors, show_solution, solutions
from rfcore.exercises.check import NOT_IMPLEMENTED, PASSED, RAISED, WRONG, Case, compare_tensors, run_check

def all_checkers() -> dict:
    """``name -> check_<name>`` for every checker of every module of :mod:`rfcore.exercises`."""
    found = {}
    for module_info in pkgutil.iter_modules(rfcore.exercises.__path__):
        module = importlib.import_module(f"rfcore.exercises.{module_info.name}")
        found.update({name.removeprefix("check_"): f for name, f in vars(module).items()
                      if name.startswith("check_") and inspect.isfunction(f) and f.__module__ == module.__name__})
    return found


CHECKERS = all_checkers()


def solution_names():
    return sorted(name for name, f in vars(solutions).items()
                  if inspect.isfunction(f) and f.__module__ == solutions.__name__)


def test_every_solution_has_a_checker_and_every_checker_a_solution():
    assert {"iou", "ohem_select", "chebyshev_filter", "nms", "voc_ap"} <= set(CHECKERS)  # the discovery works
    assert solution_names() == sorted(CHECKERS)


@pytest.mark.parametrize("name", sorted(CHECKERS))
def test_the_checker_passes_the_solution_and_prints_its_verdict(name, capsys):
    verdict = CHECKERS[name](getattr(solutions, name))
    assert verdict.status == PASSED, verdict.message
    assert capsys.readouterr().out == verdict.message + "\n"


@pytest.mark.parametrize("name", sorted(CHECKERS))
def test_a_stub_is_not_implemented_yet(name):
    def stub(*args):
        raise NotImplementedError  # your code here

    verdict = CHECKERS[name](stub)
    assert verdict.status == NOT_IMPLEMENTED
    assert verdict.message.startswith(f"{name}: not implemented yet")


@pytest.mark.parametrize("name", sorted(CHECKERS))
def test_an_exception_is_reported_with_the_case_not_raised(name):
    def broken(*args):
        return [][0]

    verdict = CHECKERS[name](broken)
    assert verdict.status == RAISED
    assert "IndexError" in verdict.message and "failed on the case" in verdict.message


def test_the_verdict_is_the_same_on_every_run(capsys):
    def wrong_iou(boxes1, boxes2):
        return solutions.iou(boxes1, boxes2) + 0.01

    first, second = anchors.check_iou(wrong_iou), anchors.check_iou(wrong_iou)
    assert first == second


# ---------------------------------------------------------------- typical mistakes


def iou_plus_one(boxes1, boxes2):
    """The pixel-count convention of old VOC code: widths ``x2 - x1 + 1``."""
    top_left = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    overlap = (bottom_right - top_left + 1).clamp(min=0).prod(dim=2)
    area1 = (boxes1[:, 2:] - boxes1[:, :2] + 1).prod(dim=1)
    area2 = (boxes2[:, 2:] - boxes2[:, :2] + 1).prod(dim=1)
    return overlap / (area1[:, None] + area2[None, :] - overlap)


def anchors_without_half(rows, cols, stride, sizes):
    return solutions.level_anchors(rows, cols, stride, sizes) - torch.tensor([0.5, 0.5, 0, 0]) * stride


def anchors_column_major(rows, cols, stride, sizes):
    return solutions.level_anchors(cols, rows, stride, sizes)[:, [1, 0, 2, 3]]  # x and y swapped back


def anchors_size_major(rows, cols, stride, sizes):
    per_size = [solutions.level_anchors(rows, cols, stride, (size,)) for size in sizes]
    return torch.cat(per_size)  # all cells of the first size, then the next size


def smooth_l1_without_beta(x, beta):
    return torch.where(x.abs() < beta, 0.5 * x**2, x.abs() - 0.5)


def smooth_l1_grad_linear(x, beta):
    return torch.where(x.abs() < beta, x / beta, x)  # forgot that the slope is sign(x) outside


def ohem_mining_ignored(cls_loss, labels, ratio):
    not_positive = torch.where(labels == POSITIVE, POSITIVE, NEGATIVE)  # ignored anchors become negatives
    return solutions.ohem_select(cls_loss, not_positive, ratio)


def ohem_without_floor(cls_loss, labels, ratio):
    selected = solutions.ohem_select(cls_loss, labels, ratio)
    return selected & (labels == POSITIVE).any(dim=1, keepdim=True)  # no positive: no negative mined


def ohem_whole_batch(cls_loss, labels, ratio):
    # (B, A) -> (1, B*A): one quota for the batch
    return solutions.ohem_select(cls_loss.reshape(1, -1), labels.reshape(1, -1), ratio).reshape(labels.shape)


def encode_boxes_swapped_variances(boxes, anchors, variances):
    return solutions.encode_boxes(boxes, anchors, variances[::-1])


def encode_boxes_without_log(boxes, anchors, variances):
    targets = solutions.encode_boxes(boxes, anchors, variances)
    return torch.cat([targets[:, :2], torch.exp(targets[:, 2:] * variances[1]) / variances[1]], dim=1)


def encode_landmarks_width_only(landmarks, anchors, variances):
    square = torch.cat([anchors[:, :3], anchors[:, 2:3]], dim=1)  # a_h replaced by a_w
    return solutions.encode_landmarks(landmarks, square, variances)


def decode_landmarks_without_centre(targets, anchors, variances):
    return solutions.decode_landmarks(targets, anchors, variances) - anchors[:, None, :2]


def chebyshev_without_factor_two(laplacian, x, theta):
    terms = [x, laplacian @ x]
    for _ in range(2, len(theta)):
        terms.append(laplacian @ terms[-1] - terms[-2])
    return sum(t * term for t, term in zip(theta, terms))


def centre_inside(boxes, window, strict=True):
    x, y, side = window
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2  # (F, 2)
    low, high = np.array([x, y]), np.array([x + side, y + side])
    inside = (centre > low) & (centre < high) if strict else (centre >= low) & (centre <= high)
    return inside.all(axis=1)


def crop_keeps_overlapping_faces(boxes, window):
    x, y, side = window
    overlapping = (boxes[:, 2] > x) & (boxes[:, 0] < x + side) & (boxes[:, 3] > y) & (boxes[:, 1] < y + side)
    return np.clip(boxes[overlapping] - np.array([x, y, x, y], np.float32), 0, side)


def crop_without_clipping(boxes, window):
    x, y, _ = window
    return boxes[centre_inside(boxes, window)] - np.array([x, y, x, y], np.float32)


def crop_keeps_centres_on_the_edge(boxes, window):
    x, y, side = window
    return np.clip(boxes[centre_inside(boxes, window, strict=False)] - np.array([x, y, x, y], np.float32), 0, side)


def crop_not_moved(boxes, window):
    x, y, _ = window
    return solutions.crop_boxes(boxes, window) + np.array([x, y, x, y], np.float32)


def flip_without_swap(boxes, landmarks, width):
    flipped_boxes, _ = solutions.flip(boxes, landmarks, width)
    points = landmarks.clone()
    points[..., 0] = width - points[..., 0]
    return flipped_boxes, points


def flip_off_by_one(boxes, landmarks, width):
    return solutions.flip(boxes, landmarks, width - 1)


def flip_corners_not_swapped(boxes, landmarks, width):
    flipped = boxes.clone()
    flipped[:, [0, 2]] = width - boxes[:, [0, 2]]  # x1 > x2 afterwards
    return flipped, solutions.flip(boxes, landmarks, width)[1]


def learning_rate_without_warmup(step, steps_per_epoch, lr, warmup_lr, warmup_epochs, step_epochs, decay):
    return solutions.learning_rate(step, steps_per_epoch, lr, lr, warmup_epochs, step_epochs, decay)


def learning_rate_one_decay(step, steps_per_epoch, lr, warmup_lr, warmup_epochs, step_epochs, decay):
    return solutions.learning_rate(step, steps_per_epoch, lr, warmup_lr, warmup_epochs, step_epochs[:1], decay)


def nms_suppressed_still_suppress(boxes, scores, iou_threshold):
    overlaps = solutions.iou(boxes, boxes)
    order = scores.argsort(descending=True).tolist()
    return torch.tensor([i for n, i in enumerate(order)
                         if not any(overlaps[j, i] > iou_threshold for j in order[:n])], dtype=torch.long)


def nms_keeps_everything(boxes, scores, iou_threshold):
    return scores.argsort(descending=True)


def nms_at_or_above(boxes, scores, iou_threshold):
    return solutions.nms(boxes, scores, iou_threshold - 1e-6)


def ap_without_envelope(recall, precision):
    recall = np.concatenate([[0.0], recall])
    return float(np.sum(np.diff(recall) * precision))


def ap_extended_to_full_recall(recall, precision):
    return solutions.voc_ap(np.append(recall, 1.0), np.append(precision, precision[-1]))


@pytest.mark.parametrize("name, mistake, case", [
    ("iou", iou_plus_one, "boxes that touch along an edge"),
    ("iou", lambda a, b: solutions.iou(b, a), "3 x 5 random whole-pixel boxes"),
    ("level_anchors", anchors_without_half, "one cell, one size"),
    ("level_anchors", anchors_size_major, "two sizes per cell"),
    ("level_anchors", anchors_column_major, "two rows of two cells"),
    ("smooth_l1", smooth_l1_without_beta, "beta = 0.5 around the kink"),
    ("smooth_l1_grad", smooth_l1_grad_linear, "beta = 1 around the kink"),
    ("ohem_select", ohem_mining_ignored, "ignored anchors with the largest losses"),
    ("ohem_select", ohem_without_floor, "an image without positives"),
    ("ohem_select", ohem_whole_batch, "two images, mined separately"),
    ("encode_boxes", encode_boxes_swapped_variances, "a face shifted and twice as wide"),
    ("encode_boxes", encode_boxes_without_log, "a face equal to its anchor"),
    ("encode_landmarks", encode_landmarks_width_only, "a face on a 20 x 40 anchor"),
    ("decode_landmarks", decode_landmarks_without_centre, "round trip: five points on the anchor centre"),
    ("chebyshev_filter", chebyshev_without_factor_two, "K = 3: the recursion starts"),
    ("crop_boxes", crop_not_moved, "a face inside the window"),
    ("crop_boxes", crop_keeps_overlapping_faces, "a face that overlaps the window, its centre outside"),
    ("crop_boxes", crop_without_clipping, "a face cut by the window's edge, its centre inside"),
    ("crop_boxes", crop_keeps_centres_on_the_edge, "a centre exactly on the window's edge"),
    ("flip", flip_without_swap, "the eyes and mouth corners swap"),
    ("flip", flip_off_by_one, "a face whose points lie on its centre line"),
    ("flip", flip_corners_not_swapped, "a face whose points lie on its centre line"),
    ("learning_rate", learning_rate_without_warmup, "the first step"),
    ("learning_rate", learning_rate_one_decay, "after both decays"),
    ("nms", nms_suppressed_still_suppress, "a chain: A overlaps B, B overlaps C, A and C do not"),
    ("nms", nms_keeps_everything, "two overlapping boxes"),
    ("nms", nms_at_or_above, "IoU exactly at the threshold"),
    ("voc_ap", ap_without_envelope, "precision that rises again"),
    ("voc_ap", ap_extended_to_full_recall, "recall that stops at 0.6"),
])
def test_the_checker_catches_a_typical_mistake_on_the_case_made_for_it(name, mistake, case):
    verdict = CHECKERS[name](mistake)
    assert verdict.status == WRONG
    assert verdict.message.startswith(f"{name}: failed on the case '{case}'."), verdict.message
    assert "expected" in verdict.message and "got" in verdict.message


def test_a_wrong_shape_and_a_wrong_type_are_named():
    assert compare_tensors(torch.zeros(2, 3), torch.zeros(3, 2)) == "expected shape (2, 3), got shape (3, 2)"
    assert compare_tensors(torch.zeros(2), "two zeros").startswith("expected tensor (2,) float32 [0.0, 0.0], got str")
    assert compare_tensors((torch.zeros(1), 1.0), torch.zeros(1)).startswith("expected a tuple of 2 values")
    assert compare_tensors(torch.zeros(2), None).endswith("got None: is a `return` missing?")


def test_a_difference_names_the_first_index_and_both_values():
    expected = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    got = torch.tensor([[1.0, 2.0], [3.5, 4.0]])
    assert compare_tensors(expected, got).startswith(
        "1 of 4 values differ; first at index [1, 0]: expected 3.0, got 3.5")
    assert compare_tensors(expected, expected + 1e-6) is None
    assert compare_tensors(torch.tensor([True, False]), torch.tensor([True, True])).startswith("1 of 2 values differ")


def test_run_check_gives_each_function_its_own_copy_of_the_inputs():
    def vandal(x):
        x += 1  # writes into its input
        return x

    verdict = run_check("double", vandal, lambda x: x * 2, [Case("ones", (torch.ones(2),))])
    assert verdict.status == PASSED  # 1 + 1 == 1 * 2: the reference saw the original ones


def test_the_verdict_leaves_nothing_for_ipython_to_display_twice():
    verdict = anchors.check_iou(solutions.iou)
    assert verdict._ipython_display_() is None


def test_show_solution_prints_the_source_and_names_the_exercises_on_a_typo(capsys):
    show_solution("nms")
    assert capsys.readouterr().out.startswith("def nms(boxes")
    with pytest.raises(ValueError, match="no solution named 'ioU'; exercises: chebyshev_filter, crop_boxes, decode_"):
        show_solution("ioU")
