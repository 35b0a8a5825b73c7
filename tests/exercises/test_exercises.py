"""The checkers pass every solution, catch the typical mistakes, and never raise because of the student's code."""

import ast
import importlib
import inspect
import json
import pkgutil
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import rfcore.exercises
from rfcore.boxes import NEGATIVE, POSITIVE
from rfcore.exercises import ANSWERED_BY, anchors, show_solution, solutions
from rfcore.exercises.check import NOT_IMPLEMENTED, PASSED, RAISED, TIMED_OUT, WRONG, Case, compare_tensors, run_check


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
    with pytest.raises(ValueError, match=r"no solution named 'ioU'; exercises: (\w+, )+iou, "):
        show_solution("ioU")


# ---------------------------------------------------------------- anything the student's function does is a verdict


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no message")


def never_returns(*args):
    while True:
        pass


def swallows_everything(*args):
    while True:
        try:
            time.sleep(0.01)
        except Exception:  # a student's catch-all must not defeat the time limit
            pass


@pytest.mark.parametrize(("student", "status", "words"), [
    (never_returns, TIMED_OUT, "your function did not return within 0.2 s"),
    (swallows_everything, TIMED_OUT, "your function did not return within 0.2 s"),
    (lambda *args: (_ for _ in ()).throw(Unprintable()), RAISED,
     "your function raised Unprintable: (its message could not be printed)"),
    (lambda *args: sys.exit(3), RAISED, "your function called sys.exit(3): return the answer instead"),
    (lambda *args: (_ for _ in ()).throw(KeyboardInterrupt()), RAISED, "your function was interrupted"),
])
def test_whatever_the_function_does_becomes_a_verdict(student, status, words):
    verdict = run_check("double", student, lambda x: x * 2, [Case("ones", (torch.ones(2),))], time_limit=0.2)
    assert verdict.status == status and words in verdict.message, verdict.message


def test_the_time_limit_also_holds_outside_the_main_thread():
    verdicts, stop = [], threading.Event()

    def waits_for_the_test(x):  # stops once checked, so no thread spins on after the test
        while not stop.is_set():
            time.sleep(0.01)

    worker = threading.Thread(target=lambda: verdicts.append(
        run_check("double", waits_for_the_test, lambda x: x * 2, [Case("ones", (torch.ones(2),))], time_limit=0.2)))
    worker.start()
    worker.join(10)
    stop.set()
    assert verdicts[0].status == TIMED_OUT


def test_an_enclosing_timer_is_restored():
    signal.setitimer(signal.ITIMER_REAL, 100)
    try:
        run_check("double", lambda x: x + x, lambda x: x * 2, [Case("ones", (torch.ones(2),))], time_limit=0.2)
        assert 99 < signal.getitimer(signal.ITIMER_REAL)[0] <= 100
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


@pytest.mark.parametrize(("name", "mistake", "words"), [
    ("nms", lambda boxes, scores, iou: solutions.nms(boxes, scores, iou).float(),
     "expected dtype torch.int64, got torch.float32"),
    ("nms", lambda boxes, scores, iou: solutions.nms(boxes, scores, iou).tolist(), "got list"),
    ("ohem_select", lambda loss, labels, ratio: solutions.ohem_select(loss, labels, ratio).float(),
     "expected dtype torch.bool, got torch.float32"),
    ("ohem_select", lambda loss, labels, ratio: solutions.ohem_select(loss, labels, ratio).long(),
     "expected dtype torch.bool, got torch.int64"),
])
def test_the_type_and_dtype_of_an_answer_count(name, mistake, words):
    verdict = CHECKERS[name](mistake)
    assert verdict.status == WRONG and words in verdict.message, verdict.message
# ================================================================ notebooks 01-05 and 07: new checkers, and the notebooks


def ratio_anchors_stretched(rows, cols, stride, sizes, ratios):
    anchors = solutions.ratio_anchors(rows, cols, stride, sizes, ratios)
    root = torch.tensor(ratios).sqrt().repeat(rows * cols * len(sizes))  # (count,) sqrt(r) of each anchor
    return torch.cat([anchors[:, :2], anchors[:, 2:] * root[:, None]], dim=1)  # w = s, h = s r: the area grows


def ratio_anchors_width_over_height(rows, cols, stride, sizes, ratios):
    return solutions.ratio_anchors(rows, cols, stride, sizes, [1 / r for r in ratios])


def ratio_anchors_ratio_major(rows, cols, stride, sizes, ratios):
    per_ratio = [solutions.ratio_anchors(rows, cols, stride, sizes, (r,)).reshape(rows * cols, len(sizes), 4)
                 for r in ratios]
    return torch.stack(per_ratio, dim=1).reshape(-1, 4)  # the sizes of one ratio consecutive


def enclosing(boxes1, boxes2):
    low = torch.minimum(boxes1[:, None, :2], boxes2[None, :, :2])
    return torch.maximum(boxes1[:, None, 2:], boxes2[None, :, 2:]) - low  # (N, M, 2) sides


def centre_distance(boxes1, boxes2):
    return (((boxes1[:, None, :2] + boxes1[:, None, 2:]) - (boxes2[None, :, :2] + boxes2[None, :, 2:])) / 2).norm(dim=2)


def diou_not_squared(boxes1, boxes2):
    return solutions.iou(boxes1, boxes2) - centre_distance(boxes1, boxes2) / enclosing(boxes1, boxes2).norm(dim=2)


def diou_enclosing_area(boxes1, boxes2):
    return solutions.iou(boxes1, boxes2) - centre_distance(boxes1, boxes2) ** 2 / enclosing(boxes1, boxes2).prod(dim=2)


def focal_alpha_everywhere(logits, labels, alpha, gamma):
    positives = torch.where(labels == POSITIVE, POSITIVE, NEGATIVE)
    unweighted = solutions.focal_loss(logits, positives, 0.5, gamma) * 2
    return torch.where(labels == -1, 0.0, alpha * unweighted)


def focal_face_probability(logits, labels, alpha, gamma):
    log_p = torch.log_softmax(logits, dim=-1)
    positive = labels == POSITIVE
    log_p_t = torch.where(positive, log_p[..., 1], log_p[..., 0])
    loss = -torch.where(positive, alpha, 1 - alpha) * (1 - log_p[..., 1].exp()) ** gamma * log_p_t
    return torch.where(labels == -1, 0.0, loss)


def focal_ignored_kept(logits, labels, alpha, gamma):
    return solutions.focal_loss(logits, torch.where(labels == -1, NEGATIVE, labels), alpha, gamma)


def giou_matrix(boxes, targets):
    return 1 - torchvision_generalized_box_iou(boxes, targets)


def giou_over_union(boxes, targets):
    """Divides the empty part of the enclosing box by the union instead of by the enclosing box."""
    areas = (boxes[:, 2:] - boxes[:, :2]).prod(dim=1) + (targets[:, 2:] - targets[:, :2]).prod(dim=1)  # |A| + |B|
    low, high = torch.maximum(boxes[:, :2], targets[:, :2]), torch.minimum(boxes[:, 2:], targets[:, 2:])
    union = areas - (high - low).clamp(min=0).prod(dim=1)
    enclosing_area = (torch.maximum(boxes[:, 2:], targets[:, 2:]) - torch.minimum(boxes[:, :2], targets[:, :2])).prod(1)
    return 1 - ((areas - union) / union - (enclosing_area - union) / union)


def ltrb_width_only(boxes, anchors):
    return solutions.encode_ltrb(boxes, torch.cat([anchors[:, :3], anchors[:, 2:3]], dim=1))


def ltrb_signs_flipped(boxes, anchors):
    return -solutions.encode_ltrb(boxes, anchors)


def ltrb_order_lrtb(boxes, anchors):
    return solutions.encode_ltrb(boxes, anchors)[:, [0, 2, 1, 3]]


def wing_without_join(x, width, epsilon):
    return torch.where(x.abs() < width, width * torch.log(1 + x.abs() / epsilon), x.abs() - width)


def wing_without_one(x, width, epsilon):
    return torch.where(x.abs() < width, width * torch.log(x.abs() / epsilon), x.abs() - width
                       + width * torch.log(torch.tensor(1 + width / epsilon)))


def wing_signed(x, width, epsilon):
    return torch.where(x.abs() < width, width * torch.log1p(x / epsilon), solutions.wing_loss(x, width, epsilon))


def gain_unscaled(theta, eigenvalues, lambda_max):
    return solutions.chebyshev_gain(theta, (eigenvalues + 1) * lambda_max / 2, lambda_max)  # T_k(lambda)


def gain_monomials(theta, eigenvalues, lambda_max):
    x = 2 * eigenvalues / lambda_max - 1
    return sum(t * x**k for k, t in enumerate(theta.to(eigenvalues.dtype)))


def gain_lambda_max_two(theta, eigenvalues, lambda_max):
    return solutions.chebyshev_gain(theta, eigenvalues, 2.0)


def start_jump_first(layers):
    size, jump, start = 1, 1, 0.5
    for kernel, stride, dilation, padding in layers:
        jump *= stride
        size += (kernel - 1) * dilation * jump
        start += ((kernel - 1) * dilation / 2 - padding) * jump
    return size, jump, start


def start_without_padding(layers):
    return solutions.receptive_field_start([(k, s, d, 0) for k, s, d, _ in layers])


def start_from_zero(layers):
    size, jump, start = solutions.receptive_field_start(layers)
    return size, jump, start - 0.5


def start_without_dilation(layers):
    size, jump, _ = solutions.receptive_field_start(layers)
    return size, jump, solutions.receptive_field_start([(k, s, 1, p) for k, s, _, p in layers])[2]


def vote_unweighted(kept_boxes, pool_boxes, pool_scores, iou_threshold):
    return solutions.box_vote(kept_boxes, pool_boxes, torch.ones_like(pool_scores), iou_threshold)


def vote_for_every_overlap(kept_boxes, pool_boxes, pool_scores, iou_threshold):
    weights = (solutions.iou(kept_boxes, pool_boxes) > iou_threshold) * pool_scores  # (K, M)
    return weights @ pool_boxes / weights.sum(dim=1, keepdim=True)


def vote_at_or_above(kept_boxes, pool_boxes, pool_scores, iou_threshold):
    return solutions.box_vote(kept_boxes, pool_boxes, pool_scores, iou_threshold - 1e-6)


def match_duplicates_count(iou, counts):
    found = iou.max(axis=1) >= 0.5
    return found & counts[iou.argmax(axis=1)], ~found | counts[iou.argmax(axis=1)]


def match_falls_back(iou, counts):
    true_positive, counted, taken = np.zeros(len(iou), bool), np.ones(len(iou), bool), set()
    for d, overlaps in enumerate(iou):
        free = [g for g in np.argsort(-overlaps) if g not in taken and overlaps[g] >= 0.5]
        if free:
            taken.add(free[0])
            true_positive[d], counted[d] = bool(counts[free[0]]), bool(counts[free[0]])
    return true_positive, counted


def match_ignored_are_false(iou, counts):
    true_positive, _ = solutions.match_detections(iou, counts)
    return true_positive, np.ones(len(iou), bool)


def match_above(iou, counts):
    return solutions.match_detections(np.where(iou == 0.5, 0.49, iou), counts)


def soft_nms_linear(boxes, scores, sigma, score_threshold):
    keep, kept = [], []
    current, waiting = scores.clone(), list(range(len(scores)))
    while waiting:
        best = max(waiting, key=lambda i: float(current[i]))
        if current[best] < score_threshold:
            break
        keep.append(best)
        kept.append(current[best])
        waiting.remove(best)
        current = current * (1 - solutions.iou(boxes[[best]], boxes)[0])
    return torch.tensor(keep, dtype=torch.long), torch.stack(kept)


def soft_nms_sorted_once(boxes, scores, sigma, score_threshold):
    order = scores.argsort(descending=True).tolist()
    current, keep, kept = scores.clone(), [], []
    for n, i in enumerate(order):
        if current[i] >= score_threshold:
            keep.append(i)
            kept.append(current[i])
            for j in order[n + 1:]:
                current[j] = current[j] * torch.exp(-solutions.iou(boxes[[i]], boxes[[j]])[0, 0] ** 2 / sigma)
    return torch.tensor(keep, dtype=torch.long), torch.stack(kept)


def soft_nms_not_squared(boxes, scores, sigma, score_threshold):
    return solutions.soft_nms(boxes, scores, sigma * 0.5, score_threshold)  # exp(-IoU / sigma) at IoU 0.5


def diou_nms_plain(boxes, scores, iou_threshold):
    return solutions.nms(boxes, scores, iou_threshold)


def diou_nms_penalty_added(boxes, scores, iou_threshold):
    overlaps = 2 * solutions.iou(boxes, boxes) - solutions.diou(boxes, boxes)  # IoU + rho^2 / c^2
    keep = []
    for i in scores.argsort(descending=True).tolist():
        if all(overlaps[j, i] <= iou_threshold for j in keep):
            keep.append(i)
    return torch.tensor(keep, dtype=torch.long)


def diou_nms_suppressed_still_suppress(boxes, scores, iou_threshold):
    overlaps = solutions.diou(boxes, boxes)
    order = scores.argsort(descending=True).tolist()
    return torch.tensor([i for n, i in enumerate(order) if not any(overlaps[j, i] > iou_threshold for j in order[:n])],
                        dtype=torch.long)


def ap_11_first_point(recall, precision):
    values = [next((p for r, p in zip(recall, precision) if r >= level / 10), 0.0) for level in range(11)]
    return float(np.mean(values))


def ap_10_points(recall, precision):
    return float(np.mean([max([p for r, p in zip(recall, precision) if r >= level / 10], default=0.0)
                          for level in range(1, 11)]))


def nme_predicted_eyes(points, truth_points):
    eyes = np.linalg.norm(points[:, 0] - points[:, 1], axis=1)
    return np.linalg.norm(points - truth_points, axis=2).mean(axis=1) / eyes


def nme_summed(points, truth_points):
    return solutions.nme_interocular(points, truth_points) * 5


def nme_squared(points, truth_points):
    eyes = np.linalg.norm(truth_points[:, 0] - truth_points[:, 1], axis=1)
    return (((points - truth_points) ** 2).sum(axis=2)).mean(axis=1) / eyes


def torchvision_generalized_box_iou(boxes1, boxes2):
    from torchvision.ops import generalized_box_iou
    return generalized_box_iou(boxes1, boxes2)


NEW_MISTAKES = [
    ("ratio_anchors", ratio_anchors_stretched, "a face-shaped anchor, ratio 1.5"),
    ("ratio_anchors", ratio_anchors_width_over_height, "a face-shaped anchor, ratio 1.5"),
    ("ratio_anchors", ratio_anchors_ratio_major, "two sizes and two ratios on a 2 x 2 grid"),
    ("diou", solutions.iou, "disjoint boxes"),
    ("diou", diou_not_squared, "disjoint boxes"),
    ("diou", diou_enclosing_area, "disjoint boxes"),
    ("focal_loss", focal_alpha_everywhere, "alpha 0.25 weighs positives by alpha, negatives by 1 - alpha"),
    ("focal_loss", focal_face_probability, "gamma 2 down-weights the easy anchors"),
    ("focal_loss", focal_ignored_kept, "ignored anchors cost nothing"),
    ("giou_loss", lambda boxes, targets: 1 - solutions.iou(boxes, targets).diagonal(), "disjoint boxes"),
    ("giou_loss", giou_matrix, "a box on its target"),
    ("giou_loss", giou_over_union, "disjoint boxes"),
    ("encode_ltrb", ltrb_width_only, "a face equal to its anchor"),
    ("encode_ltrb", ltrb_signs_flipped, "a face equal to its anchor"),
    ("encode_ltrb", ltrb_order_lrtb, "a face shifted to the right"),
    ("wing_loss", wing_without_join, "the paper's w = 10, epsilon = 2 around the join"),
    ("wing_loss", wing_without_one, "the paper's w = 10, epsilon = 2 around the join"),
    ("wing_loss", wing_signed, "the paper's w = 10, epsilon = 2 around the join"),
    ("chebyshev_gain", gain_unscaled, "K = 2: a straight line"),
    ("chebyshev_gain", gain_monomials, "lambda_max = 4"),
    ("chebyshev_gain", gain_lambda_max_two, "lambda_max = 4"),
    ("receptive_field_start", start_jump_first, "a 2x2 stride-2 pooling, then a 3x3 padded by 1"),
    ("receptive_field_start", start_without_padding, "a 3x3 convolution padded by 1"),
    ("receptive_field_start", start_from_zero, "no layer at all"),
    ("receptive_field_start", start_without_dilation, "a dilated 3x3, padded by 2"),
    ("box_vote", vote_unweighted, "two candidates, scores 0.9 and 0.3"),
    ("box_vote", vote_for_every_overlap, "a candidate between two kept faces"),
    ("box_vote", vote_at_or_above, "IoU exactly at the threshold"),
    ("match_detections", match_duplicates_count, "two detections of one face"),
    ("match_detections", match_falls_back, "a duplicate does not fall back"),
    ("match_detections", match_ignored_are_false, "a detection on an ignored face"),
    ("match_detections", match_above, "IoU exactly 0.5"),
    ("soft_nms", soft_nms_linear, "two boxes with IoU 0.5"),
    ("soft_nms", soft_nms_sorted_once, "a decayed box falls behind another"),
    ("soft_nms", soft_nms_not_squared, "two boxes with IoU 0.5"),
    ("soft_nms", lambda boxes, scores, sigma, threshold: (solutions.nms(boxes, scores, 0.3),
                                                         scores.sort(descending=True).values[:1]),
     "disjoint boxes keep their scores"),
    ("diou_nms", diou_nms_plain, "overlapping boxes, centres far apart"),
    ("diou_nms", diou_nms_penalty_added, "overlapping boxes, centres far apart"),
    ("diou_nms", diou_nms_suppressed_still_suppress, "a chain: A overlaps B, B overlaps C"),
    ("voc_ap_11point", solutions.voc_ap, "recall that stops at 0.65"),
    ("voc_ap_11point", ap_11_first_point, "precision that rises again"),
    ("voc_ap_11point", ap_10_points, "recall that stops at 0.65"),
    ("nme_interocular", nme_predicted_eyes, "the prediction's eyes are further apart"),
    ("nme_interocular", nme_summed, "every point 2 px to the right"),
    ("nme_interocular", nme_squared, "every point 2 px to the right"),
]


@pytest.mark.parametrize("name, mistake, case", NEW_MISTAKES)
def test_a_new_checker_catches_a_typical_mistake_on_the_case_made_for_it(name, mistake, case):
    verdict = CHECKERS[name](mistake)
    assert verdict.status == WRONG, verdict.message
    assert verdict.message.startswith(f"{name}: failed on the case '{case}'."), verdict.message


NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def code_cells(notebook: Path) -> list[ast.Module]:
    """The parsed code cells of a notebook, IPython magics left out."""
    cells = json.loads(notebook.read_text())["cells"]
    sources = ("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")
    return [ast.parse("\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))))
            for source in sources]


def called(cell: ast.Module, prefix: str) -> list[ast.Call]:
    return [node for node in ast.walk(cell) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id.startswith(prefix)]


def qualified_name(thing) -> str:
    thing = inspect.unwrap(thing)
    return f"{thing.__module__}.{thing.__qualname__}"


def test_every_checker_says_which_rfcore_functions_answer_it_and_they_exist():
    assert sorted(ANSWERED_BY) == sorted(CHECKERS)
    for name, answers in ANSWERED_BY.items():
        for answer in answers:
            assert qualified_name(pkgutil.resolve_name(answer)) == answer, name


def imported_names(cells: list[ast.Module], notebook: Path) -> dict:
    """What the notebook's import statements bind, executed in a fresh namespace."""
    namespace = {}
    for cell in cells:
        imports = [node for node in cell.body if isinstance(node, (ast.Import, ast.ImportFrom))]
        exec(compile(ast.Module(imports, type_ignores=[]), str(notebook), "exec"), namespace)  # noqa: S102 (imports only)
    namespace.pop("__builtins__", None)
    return namespace


def answers_shown_early(notebook: Path) -> list[str]:
    """Each cell that shows (``show_source``) the answer of an exercise that a later cell asks for."""
    cells = code_cells(notebook)
    namespace = imported_names(cells, notebook)
    asked = {}  # exercise -> index of the first code cell that checks it
    for index, cell in enumerate(cells):
        for call in called(cell, "check_"):
            asked.setdefault(call.func.id.removeprefix("check_"), index)
    found = []
    for index, cell in enumerate(cells):
        for call in called(cell, "show_source"):
            shown = qualified_name(eval(compile(ast.Expression(call.args[0]), str(notebook), "eval"), namespace))
            found += [f"{notebook.name}: code cell {index} shows {shown}, which answers exercise {exercise} asked in "
                      f"code cell {first}" for exercise, first in asked.items()
                      if shown in ANSWERED_BY.get(exercise, ()) and index < first]
    return found


def stubs_hiding_imports(notebook: Path) -> list[str]:
    """Each function or class a cell defines under the name of something the notebook imports."""
    cells = code_cells(notebook)
    imported = imported_names(cells, notebook)
    return [f"{notebook.name}: code cell {index} defines {node.name}, which hides the import of that name "
            f"(call the stub my_{node.name})" for index, cell in enumerate(cells) for node in ast.walk(cell)
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in imported]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_no_notebook_shows_the_answer_of_an_exercise_before_asking_it(notebook):
    assert answers_shown_early(notebook) == []


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_no_stub_hides_a_function_the_notebook_imports(notebook):
    assert stubs_hiding_imports(notebook) == []


def test_the_notebook_walk_finds_an_answer_shown_early_and_a_hidden_import(tmp_path):
    cells = [("from rfcore.exercises.loss import check_ohem_select\nfrom rfcore.loss import ohem_select\n"
              "from rfcore.viz.source import show_source"),
             "show_source(ohem_select)",
             "def ohem_select(cls_loss, labels, ratio):\n    raise NotImplementedError\n\n\ncheck_ohem_select(ohem_select)"]
    notebook = tmp_path / "99_example.ipynb"
    notebook.write_text(json.dumps({"cells": [{"cell_type": "code", "source": source} for source in cells]}))
    assert answers_shown_early(notebook) == [(
        "99_example.ipynb: code cell 1 shows rfcore.loss.ohem_select, which answers exercise ohem_select asked in "
        "code cell 2")]
    assert stubs_hiding_imports(notebook) == [(
        "99_example.ipynb: code cell 2 defines ohem_select, which hides the import of that name (call the stub "
        "my_ohem_select)")]


def test_every_checker_is_used_by_a_notebook():
    used = {call.func.id.removeprefix("check_") for notebook in NOTEBOOKS for cell in code_cells(notebook)
            for call in called(cell, "check_")}
    assert sorted(set(CHECKERS) - used) == []
    with pytest.raises(ValueError, match="no solution named 'ioU'; exercises: (.*, )?chebyshev_filter, (.*, )?crop_boxes, "):
        show_solution("ioU")


# ---------------------------------------------------------------- notebooks 06 and 08: schedules, matching, Eq. 1, decoding


def match_without_forcing(iou, pos_iou, neg_iou):
    return solutions.match_forcing_floor(iou, pos_iou, neg_iou, floor=float("inf"))


def match_ignored_as_negative(iou, pos_iou, neg_iou):
    return solutions.match(iou, pos_iou, pos_iou)  # no ignore band


def match_int32(iou, pos_iou, neg_iou):
    return tuple(part.int() for part in solutions.match(iou, pos_iou, neg_iou))


def match_first_face_wins(iou, pos_iou, neg_iou):
    labels, matched = solutions.match(iou, pos_iou, neg_iou)
    forced = iou.argmax(dim=0).tolist()  # (F,) best anchor of each face
    for face in reversed(range(len(forced))):  # the lowest face index keeps a shared anchor
        if iou[forced[face], face] > 0:
            matched[forced[face]] = face
    return labels, matched


def floor_ignored(iou, pos_iou, neg_iou, floor):
    return solutions.match(iou, pos_iou, neg_iou)  # the paper's rule: every face forced


def floor_strict(iou, pos_iou, neg_iou, floor):
    return solutions.match_forcing_floor(iou, pos_iou, neg_iou, floor + 1e-6)  # > floor instead of >=


def floor_drops_the_image(iou, pos_iou, neg_iou, floor):
    labels, matched = solutions.match_forcing_floor(iou, pos_iou, neg_iou, floor)
    if iou.shape[1] and (iou.max(dim=0).values < floor).any():  # one face under the floor: all background
        return torch.zeros_like(labels), torch.full_like(matched, -1)
    return labels, matched


def image_loss_mean(logits, box_deltas, landmark_deltas, labels, box_targets, landmark_targets, landmark_valid,
                    ohem_ratio, lambdas):
    _, cls, box, pts = solutions.image_loss(logits, box_deltas, landmark_deltas, labels, box_targets,
                                            landmark_targets, landmark_valid, ohem_ratio, lambdas)
    positives = max(int((labels == POSITIVE).sum()), 1)
    trained = positives + min(ohem_ratio * positives, int((labels == NEGATIVE).sum()))
    cls = cls * positives / trained  # the mean over the trained anchors
    return lambdas[0] * cls + lambdas[1] * box + lambdas[2] * pts, cls, box, pts


def image_loss_mining_ignored(logits, box_deltas, landmark_deltas, labels, box_targets, landmark_targets,
                              landmark_valid, ohem_ratio, lambdas):
    as_negative = torch.where(labels == POSITIVE, POSITIVE, NEGATIVE)
    return solutions.image_loss(logits, box_deltas, landmark_deltas, as_negative, box_targets, landmark_targets,
                                landmark_valid, ohem_ratio, lambdas)


def image_loss_points_of_every_positive(logits, box_deltas, landmark_deltas, labels, box_targets, landmark_targets,
                                        landmark_valid, ohem_ratio, lambdas):
    return solutions.image_loss(logits, box_deltas, landmark_deltas, labels, box_targets, landmark_targets,
                                labels == POSITIVE, ohem_ratio, lambdas)


def image_loss_weighted_terms(logits, box_deltas, landmark_deltas, labels, box_targets, landmark_targets,
                              landmark_valid, ohem_ratio, lambdas):
    total, cls, box, pts = solutions.image_loss(logits, box_deltas, landmark_deltas, labels, box_targets,
                                                landmark_targets, landmark_valid, ohem_ratio, lambdas)
    return total, lambdas[0] * cls, lambdas[1] * box, lambdas[2] * pts


def decode_without_variances(box_deltas, landmark_deltas, anchors, variances):
    return solutions.decode(box_deltas, landmark_deltas, anchors, (1.0, 1.0))


def decode_cxcywh(box_deltas, landmark_deltas, anchors, variances):
    boxes, points = solutions.decode(box_deltas, landmark_deltas, anchors, variances)
    return torch.cat([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], dim=1), points


def decode_points_flat(box_deltas, landmark_deltas, anchors, variances):
    boxes, points = solutions.decode(box_deltas, landmark_deltas, anchors, variances)
    return boxes, points.reshape(-1, 10)


def decode_float64(box_deltas, landmark_deltas, anchors, variances):
    return tuple(part.double() for part in solutions.decode(box_deltas, landmark_deltas, anchors, variances))


def balanced_l1_b_as_ratio(x, alpha, gamma):
    b = gamma / alpha  # forgot exp(.) - 1
    a = x.abs()
    return torch.where(a < 1, alpha / b * (b * a + 1) * torch.log(b * a + 1) - alpha * a, gamma * a + gamma / b - alpha)


def balanced_l1_without_constant(x, alpha, gamma):
    return torch.where(x.abs() < 1, solutions.balanced_l1(x, alpha, gamma), gamma * x.abs())


def balanced_l1_swapped(x, alpha, gamma):
    return solutions.balanced_l1(x, gamma, alpha)


def cosine_without_warmup(step, total_steps, lr, warmup_lr, warmup_steps, final_lr):
    return solutions.cosine_learning_rate(step, total_steps, lr, lr, warmup_steps, final_lr)


def cosine_over_all_steps(step, total_steps, lr, warmup_lr, warmup_steps, final_lr):
    if step < warmup_steps:
        return solutions.cosine_learning_rate(step, total_steps, lr, warmup_lr, warmup_steps, final_lr)
    return final_lr + (lr - final_lr) * (1 + np.cos(np.pi * step / total_steps)) / 2  # the warm-up's steps counted


def cosine_to_zero(step, total_steps, lr, warmup_lr, warmup_steps, final_lr):
    return solutions.cosine_learning_rate(step, total_steps, lr, warmup_lr, warmup_steps, 0.0)


def restarts_without_growth(step, lr_max, lr_min, period, mult):
    return solutions.warm_restart_learning_rate(step, lr_max, lr_min, period, 1)


def restarts_at_minimum(step, lr_max, lr_min, period, mult):
    return solutions.warm_restart_learning_rate(step, lr_min, lr_max, period, mult)  # cycles climb instead


def restarts_one_step_late(step, lr_max, lr_min, period, mult):
    return solutions.warm_restart_learning_rate(max(step - 1, 0), lr_max, lr_min, period, mult)


@pytest.mark.parametrize("name, mistake, case", [
    ("match", match_without_forcing, "a face below every threshold"),
    ("match", match_ignored_as_negative, "one face: above, below and between the thresholds"),
    ("match", match_int32, "one face: above, below and between the thresholds"),
    ("match", match_first_face_wins, "an anchor overlapping two faces"),
    ("match_forcing_floor", floor_ignored, "a face whose best anchor has IoU 0.15"),
    ("match_forcing_floor", floor_strict, "best IoU exactly at the floor"),
    ("match_forcing_floor", floor_drops_the_image, "two faces, one under the floor"),
    ("image_loss", image_loss_mean, "one positive whose outputs equal its targets"),
    ("image_loss", image_loss_mining_ignored, "ignored anchors"),
    ("image_loss", image_loss_points_of_every_positive, "a positive whose face has no landmarks"),
    ("image_loss", image_loss_weighted_terms, "the weights of Eq. 1"),
    ("decode", decode_without_variances, "a shifted centre"),
    ("decode", decode_cxcywh, "zero outputs"),
    ("decode", decode_points_flat, "zero outputs"),
    ("decode", decode_float64, "zero outputs"),
    ("balanced_l1", balanced_l1_b_as_ratio, "Libra R-CNN's alpha 0.5, gamma 1.5"),
    ("balanced_l1", balanced_l1_without_constant, "Libra R-CNN's alpha 0.5, gamma 1.5"),
    ("balanced_l1", balanced_l1_swapped, "Libra R-CNN's alpha 0.5, gamma 1.5"),
    ("cosine_learning_rate", cosine_without_warmup, "the first step"),
    ("cosine_learning_rate", cosine_over_all_steps, "the end of the warm-up"),
    ("cosine_learning_rate", cosine_to_zero, "half way through the cosine"),
    ("warm_restart_learning_rate", restarts_without_growth, "inside the second cycle"),
    ("warm_restart_learning_rate", restarts_at_minimum, "the first step"),
    ("warm_restart_learning_rate", restarts_one_step_late, "the middle of the first cycle"),
])
def test_a_checker_of_notebooks_06_and_08_catches_a_typical_mistake_on_the_case_made_for_it(name, mistake, case):
    verdict = CHECKERS[name](mistake)
    assert verdict.status == WRONG
    assert verdict.message.startswith(f"{name}: failed on the case '{case}'."), verdict.message
    assert "expected" in verdict.message and "got" in verdict.message


# ---------------------------------------------------------------- more variants: notebooks 01-05 and 07


def dense_anchors_from_the_corner(rows, cols, stride, size, density):
    """Offsets ``k / n`` of a cell instead of ``(k + 0.5) / n``: the sub-grid starts at the cell's corner."""
    return solutions.dense_anchors(rows, cols, stride, size, density) - torch.tensor([0.5, 0.5, 0, 0]) * stride / density


def dense_anchors_sub_grid_major(rows, cols, stride, size, density):
    per_cell = solutions.dense_anchors(rows, cols, stride, size, density).reshape(rows * cols, density**2, 4)
    return per_cell.transpose(0, 1).reshape(-1, 4)  # sub-anchor 0 of every cell first


def dense_anchors_column_first(rows, cols, stride, size, density):
    per_cell = solutions.dense_anchors(rows, cols, stride, size, density).reshape(rows * cols, density, density, 4)
    return per_cell.transpose(1, 2).reshape(-1, 4)  # the sub-grid's columns before its rows


def dense_anchors_n_not_squared(rows, cols, stride, size, density):
    return solutions.dense_anchors(rows, cols, stride, size, density)[::density]  # n anchors per cell


def ciou_without_shape(boxes, targets):
    from torchvision.ops import distance_box_iou_loss
    return distance_box_iou_loss(boxes, targets)


def ciou_alpha_one(boxes, targets):
    """Adds ``v`` itself instead of ``alpha v``."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    wt, ht = targets[:, 2] - targets[:, 0], targets[:, 3] - targets[:, 1]
    v = 4 / torch.pi**2 * (torch.atan(wt / ht) - torch.atan(w / h)) ** 2
    return ciou_without_shape(boxes, targets) + v


def ciou_distance_not_squared(boxes, targets):
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2 - (targets[:, :2] + targets[:, 2:]) / 2
    diagonal = torch.maximum(boxes[:, 2:], targets[:, 2:]) - torch.minimum(boxes[:, :2], targets[:, :2])
    rho2, c2 = (centre**2).sum(dim=1), (diagonal**2).sum(dim=1)
    return solutions.ciou_loss(boxes, targets) - rho2 / c2 + rho2.sqrt() / c2.sqrt()


def qfl_binary_target(logits, quality, beta):
    return solutions.quality_focal_loss(logits, (quality > 0).float(), beta)  # the focal loss's hard labels


def qfl_focal_factor(logits, quality, beta):
    sigma = torch.softmax(logits, dim=-1)[..., 1]
    return solutions.quality_focal_loss(logits, quality, 0.0) * (1 - sigma) ** beta  # (1 - p)^beta, not |y - p|^beta


def qfl_positive_term_only(logits, quality, beta):
    log_p = torch.log_softmax(logits, dim=-1)
    return -(quality * log_p[..., 1]) * (quality - log_p[..., 1].exp()).abs() ** beta


def qfl_sigmoid_of_face_logit(logits, quality, beta):
    return solutions.quality_focal_loss(torch.stack([torch.zeros_like(logits[..., 1]), logits[..., 1]], -1), quality,
                                        beta)


def soft_argmax_hard(heatmaps, stride):
    height, width = heatmaps.shape[-2:]
    flat = heatmaps.flatten(2).argmax(dim=2)  # (N, K) the best cell
    return torch.stack([(flat % width + 0.5) * stride, (flat // width + 0.5) * stride], dim=2).float()


def soft_argmax_without_half(heatmaps, stride):
    return solutions.soft_argmax(heatmaps, stride) - 0.5 * stride


def soft_argmax_y_first(heatmaps, stride):
    return solutions.soft_argmax(heatmaps, stride).flip(-1)


def soft_argmax_without_exp(heatmaps, stride):
    return solutions.soft_argmax(torch.log(heatmaps.clamp(min=1e-12)), stride)  # normalises the logits themselves


def gcn_without_self_loops(adjacency, x, weight):
    scale = adjacency.sum(dim=1).rsqrt()
    return (scale[:, None] * adjacency * scale[None, :]) @ x @ weight


def gcn_row_normalised(adjacency, x, weight):
    looped = adjacency + torch.eye(len(adjacency))
    return (looped / looped.sum(dim=1, keepdim=True)) @ x @ weight  # D~^(-1) (E + I): the mean of the neighbours


def gcn_degree_without_loop(adjacency, x, weight):
    scale = adjacency.sum(dim=1).clamp(min=1).rsqrt()  # D^(-1/2) of E alone
    return (scale[:, None] * (adjacency + torch.eye(len(adjacency))) * scale[None, :]) @ x @ weight


def gcn_without_weight(adjacency, x, weight):
    return solutions.gcn_layer(adjacency, x, torch.eye(x.shape[1]))  # propagated, never multiplied by W


def bilinear_align_corners(coarse, lateral):
    return lateral + torch.nn.functional.interpolate(coarse, size=lateral.shape[-2:], mode="bilinear",
                                                     align_corners=True)


def bilinear_scale_factor_two(coarse, lateral):
    return lateral + torch.nn.functional.interpolate(coarse, scale_factor=2, mode="bilinear", align_corners=False)


def bilinear_without_clamp(coarse, lateral):
    """Extrapolates at the borders instead of clamping the source coordinate to ``[0, w - 1]``."""
    def axis(fine, size):
        source = (torch.arange(fine) + 0.5) * size / fine - 0.5  # (fine,)
        low = source.floor().clamp(0, max(size - 2, 0)).long()
        frac = source - low
        matrix = torch.zeros(fine, size)
        matrix[torch.arange(fine), low] += 1 - frac
        matrix[torch.arange(fine), (low + 1).clamp(max=size - 1)] += frac
        return matrix

    return lateral + axis(lateral.shape[-2], coarse.shape[-2]) @ coarse @ axis(lateral.shape[-1], coarse.shape[-1]).T


def matrix_nms_without_compensation(boxes, scores, sigma):
    order = scores.argsort(descending=True).tolist()
    overlaps = solutions.iou(boxes, boxes)
    decayed = scores.clone()
    for n, j in enumerate(order):
        decayed[j] = scores[j] * min((float(torch.exp(-overlaps[i, j] ** 2 / sigma)) for i in order[:n]), default=1.0)
    return decayed


def matrix_nms_linear(boxes, scores, sigma):
    order = scores.argsort(descending=True).tolist()
    overlaps = solutions.iou(boxes, boxes)
    decayed = scores.clone()
    for n, j in enumerate(order):
        factors = [(1 - overlaps[i, j]) / (1 - max((overlaps[k, i] for k in order[:m]), default=0.0))
                   for m, i in enumerate(order[:n])]
        decayed[j] = scores[j] * min(factors, default=1.0)
    return decayed


def matrix_nms_every_box_decays(boxes, scores, sigma):
    overlaps = solutions.iou(boxes, boxes).fill_diagonal_(0)
    return scores * torch.exp(-overlaps**2 / sigma).min(dim=0).values  # lower scores decay higher ones too


def matrix_nms_in_input_order(boxes, scores, sigma):
    """Takes the boxes as if they came sorted: an earlier box decays a later one whatever their scores."""
    return solutions.matrix_nms(boxes, torch.linspace(1.0, 0.5, len(scores)), sigma) * scores / torch.linspace(
        1.0, 0.5, len(scores))


def matrix_nms_sorted(boxes, scores, sigma):
    return solutions.matrix_nms(boxes, scores, sigma).sort(descending=True).values


@pytest.mark.parametrize("name, mistake, case", [
    ("dense_anchors", dense_anchors_from_the_corner, "density 1 is the ordinary anchor"),
    ("dense_anchors", dense_anchors_sub_grid_major, "density 2 on a row of two cells"),
    ("dense_anchors", dense_anchors_column_first, "density 2 in one cell"),
    ("dense_anchors", dense_anchors_n_not_squared, "density 2 in one cell"),
    ("ciou_loss", ciou_without_shape, "same centre, another aspect ratio"),
    ("ciou_loss", ciou_alpha_one, "same centre, another aspect ratio"),
    ("ciou_loss", ciou_distance_not_squared, "disjoint boxes of the same shape"),
    ("ciou_loss", giou_matrix, "a box on its target"),
    ("quality_focal_loss", qfl_binary_target, "soft targets, beta 0"),
    ("quality_focal_loss", qfl_focal_factor, "soft targets, beta 2"),
    ("quality_focal_loss", qfl_positive_term_only, "hard targets, beta 0: the cross-entropy"),
    ("quality_focal_loss", qfl_sigmoid_of_face_logit, "hard targets, beta 0: the cross-entropy"),
    ("soft_argmax", soft_argmax_hard, "a flat map"),
    ("soft_argmax", soft_argmax_without_half, "one sharp peak"),
    ("soft_argmax", soft_argmax_y_first, "one sharp peak"),
    ("soft_argmax", soft_argmax_without_exp, "logits of different heights"),
    ("gcn_layer", gcn_without_self_loops, "a single vertex"),
    ("gcn_layer", gcn_row_normalised, "a path of three vertices"),
    ("gcn_layer", gcn_degree_without_loop, "two joined vertices"),
    ("gcn_layer", gcn_without_weight, "a single vertex"),
    ("top_down_bilinear", bilinear_align_corners, "a row of 2 onto a row of 4"),
    ("top_down_bilinear", solutions.top_down, "a row of 2 onto a row of 4"),
    ("top_down_bilinear", bilinear_scale_factor_two, "a row of 2 onto a row of 4"),
    ("top_down_bilinear", bilinear_without_clamp, "a row of 2 onto a row of 4"),
    ("matrix_nms", matrix_nms_without_compensation, "a chain: A overlaps B, B overlaps C"),
    ("matrix_nms", matrix_nms_linear, "two boxes with IoU 0.5"),
    ("matrix_nms", matrix_nms_every_box_decays, "two boxes with IoU 0.5"),
    ("matrix_nms", matrix_nms_sorted, "disjoint boxes keep their scores"),
    ("matrix_nms", matrix_nms_in_input_order, "scores not in the boxes' order"),
])
def test_a_further_variant_checker_catches_a_typical_mistake_on_the_case_made_for_it(name, mistake, case):
    verdict = CHECKERS[name](mistake)
    assert verdict.status == WRONG, verdict.message
    assert verdict.message.startswith(f"{name}: failed on the case '{case}'."), verdict.message
    assert "expected" in verdict.message and "got" in verdict.message

