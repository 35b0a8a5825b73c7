"""Exercises of notebook 07: NMS, box voting, the protocol's matching, the VOC average precision, and variants.

The variants extend the paper's inference and evaluation: soft-NMS (Bodla et al. 2017), DIoU-NMS (Zheng et
al. 2020), the 11-point average precision of VOC 2007 (Everingham et al. 2010), the inter-ocular NME, and
Matrix NMS (SOLOv2, Wang et al. 2020), soft-NMS's decay computed for all boxes at once.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import box_iou, distance_box_iou, nms

from rfcore.evaluation.protocol import match_image, voc_ap
from rfcore.exercises.check import Case, Verdict, random_boxes, run_check, seeded
from rfcore.postprocess import Detections, box_vote


def check_nms(student_nms) -> Verdict:
    """Check ``nms(boxes (N, 4) xyxy, scores (N,), iou_threshold) -> (K,)`` int64 indices against torchvision."""
    generator = seeded(8)
    chain = torch.tensor([[0.0, 0.0, 10.0, 10.0], [4.0, 0.0, 14.0, 10.0], [8.0, 0.0, 18.0, 10.0]])
    cluster = random_boxes(5, generator, 30)
    cases = [
        Case("two overlapping boxes", (chain[:2], torch.tensor([0.6, 0.9]), 0.3),
             "keep the highest score first; return indices into the input, best first"),
        Case("a chain: A overlaps B, B overlaps C, A and C do not", (chain, torch.tensor([0.9, 0.8, 0.7]), 0.3),
             "a suppressed box suppresses nothing: C survives because B was removed by A"),
        Case("IoU exactly at the threshold", (torch.tensor([[0.0, 0.0, 3.0, 1.0], [1.0, 0.0, 4.0, 1.0]]),
                                              torch.tensor([0.9, 0.8]), 0.5),
             "a box is dropped only when its IoU is above the threshold"),
        Case("20 random boxes in clusters", (torch.cat([cluster + 2 * torch.rand(cluster.shape, generator=generator)
                                                        for _ in range(4)]),
                                             torch.randperm(20, generator=generator).float() / 20, 0.4)),
    ]
    return run_check("nms", student_nms, nms, cases)


def check_voc_ap(student_voc_ap) -> Verdict:
    """Check ``voc_ap(recall (T,), precision (T,)) -> float``, the area under the precision envelope."""
    rng = np.random.default_rng(9)
    recall = np.sort(rng.uniform(0, 0.9, 30))
    cases = [
        Case("a perfect detector", (np.array([0.5, 1.0]), np.array([1.0, 1.0]))),
        Case("recall that stops at 0.6", (np.array([0.2, 0.4, 0.6]), np.array([1.0, 1.0, 1.0])),
             "recall beyond the last point adds nothing: the envelope there is 0"),
        Case("precision that rises again", (np.array([0.25, 0.5, 0.75]), np.array([1.0, 0.5, 0.75])),
             "each precision is replaced by the largest precision at any equal or higher recall (the envelope)"),
        Case("repeated recall values", (np.array([0.2, 0.2, 0.5, 0.5, 0.8]), np.array([1.0, 0.6, 0.7, 0.4, 0.5])),
             "sum (r_(i+1) - r_i) times the envelope at r_(i+1), starting from recall 0"),
        Case("30 random points", (recall, rng.uniform(0.2, 1.0, 30))),
    ]
    return run_check("voc_ap", student_voc_ap, voc_ap, cases)


def clustered_boxes(generator: torch.Generator, clusters: int = 4, per_cluster: int = 5) -> torch.Tensor:
    """``(clusters * per_cluster, 4)`` boxes: ``per_cluster`` jittered copies of each of ``clusters`` random boxes."""
    centres = random_boxes(clusters, generator, 60)
    jitter = 3 * torch.rand(per_cluster, clusters, 4, generator=generator)
    return (centres + jitter).reshape(-1, 4)


def reference_box_vote(kept_boxes: torch.Tensor, pool_boxes: torch.Tensor, pool_scores: torch.Tensor,
                       iou_threshold: float) -> torch.Tensor:
    """The voted boxes of :func:`rfcore.postprocess.box_vote`, ``(K, 4), (M, 4), (M,) -> (K, 4)``."""
    def detections(boxes, scores):
        return Detections(boxes, scores, torch.zeros(len(boxes), 5, 2), torch.zeros(len(boxes), dtype=torch.long))

    kept = detections(kept_boxes, torch.ones(len(kept_boxes)))
    return box_vote(kept, detections(pool_boxes, pool_scores), iou_threshold).boxes


def check_box_vote(student_box_vote) -> Verdict:
    """Check ``box_vote(kept_boxes (K, 4), pool_boxes (M, 4), pool_scores (M,), iou_threshold) -> (K, 4)``.

    The kept boxes are the pool's NMS survivors by descending score [paper §4.2, box voting at IoU 0.4].
    """
    generator = seeded(18)
    a, b, c = [0.0, 0.0, 10.0, 10.0], [3.0, 0.0, 13.0, 10.0], [6.0, 0.0, 16.0, 10.0]
    pool = clustered_boxes(generator, 3, 4)
    pool_scores = torch.randperm(12, generator=generator).float() / 12 + 0.05
    survivors = nms(pool, pool_scores, 0.4)
    cases = [
        Case("a face alone", (torch.tensor([a]), torch.tensor([a]), torch.tensor([0.9]), 0.4),
             "a kept face votes for itself: alone, it stays where it is"),
        Case("two candidates, scores 0.9 and 0.3", (torch.tensor([a]), torch.tensor([a, b]),
                                                     torch.tensor([0.9, 0.3]), 0.4),
             "the voted box is the score-weighted mean: sum p_i b_i / sum p_i"),
        Case("a candidate between two kept faces", (torch.tensor([a, c]), torch.tensor([a, c, b]),
                                                    torch.tensor([0.9, 0.8, 0.7]), 0.4),
             "a candidate votes once, for the highest-scoring kept face it overlaps above the threshold (the one "
             "that suppressed it), even if it overlaps another kept face as much"),
        Case("IoU exactly at the threshold", (torch.tensor([[0.0, 0.0, 7.0, 1.0]]),
                                              torch.tensor([[0.0, 0.0, 7.0, 1.0], [3.0, 0.0, 10.0, 1.0]]),
                                              torch.tensor([0.9, 0.5]), 0.4),
             "only IoU above the threshold votes, as in NMS (here IoU = 4 / 10)"),
        Case("12 candidates in three clusters", (pool[survivors], pool, pool_scores, 0.4)),
    ]
    return run_check("box_vote", student_box_vote, reference_box_vote, cases)


def reference_match_detections(iou: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(true_positive (D,), counted (D,))`` bool from :func:`rfcore.evaluation.protocol.match_image`."""
    match = match_image(iou, counts)
    return match.true_positive, match.counted


def check_match_detections(match_detections) -> Verdict:
    """Check ``match_detections(iou (D, G), counts (G,)) -> (true_positive (D,), counted (D,))``, both bool.

    The detections are in descending score; a face counts in the subset where ``counts`` is True.
    """
    rng = np.random.default_rng(19)
    everyone = np.array([True])
    cases = [
        Case("one detection on one face", (np.array([[0.8]]), everyone), "IoU >= 0.5 on a counted face: a TP"),
        Case("a detection that overlaps too little", (np.array([[0.3]]), everyone),
             "below 0.5 the detection finds no face: a false positive, so counted but not a TP"),
        Case("IoU exactly 0.5", (np.array([[0.5]]), everyone), "the protocol asks for IoU >= 0.5"),
        Case("two detections of one face", (np.array([[0.9], [0.7]]), everyone),
             "a face counts once: the second detection of a taken face is a false positive"),
        Case("a duplicate does not fall back", (np.array([[0.9, 0.1], [0.8, 0.6]]), np.array([True, True])),
             "each detection takes the face it overlaps most; if that face is taken it is a false positive, "
             "even though it overlaps another face by 0.6"),
        Case("a detection on an ignored face", (np.array([[0.7, 0.0], [0.0, 0.8]]), np.array([True, False])),
             "a detection whose face is ignored in the subset is neither true nor false positive: not counted"),
        Case("its best face is ignored", (np.array([[0.6, 0.9]]), np.array([True, False])),
             "the detection takes its best face (the ignored one), not the best counted face"),
        Case("8 detections, 4 faces at random", (rng.uniform(0, 1, (8, 4)), np.array([True, False, True, True]))),
    ]
    return run_check("match_detections", match_detections, reference_match_detections, cases)


def reference_soft_nms(boxes: torch.Tensor, scores: torch.Tensor, sigma: float,
                       score_threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian soft-NMS [Bodla et al. 2017, Eq. 3 and Fig. 2]: decay instead of removal.

    Repeatedly the box of highest current score is kept, and every box still waiting has its score multiplied
    by ``exp(-IoU^2 / sigma)`` with it; boxes whose score falls below ``score_threshold`` are dropped.

    Returns:
        ``(K,)`` int64 indices in the order they are kept and ``(K,)`` their scores when kept.
    """
    overlaps = box_iou(boxes, boxes)  # (N, N)
    current, waiting = scores.clone(), torch.ones(len(scores), dtype=torch.bool)
    keep, kept_scores = [], []
    while waiting.any():
        best = int(current.masked_fill(~waiting, -1).argmax())
        if current[best] < score_threshold:
            break
        keep.append(best)
        kept_scores.append(current[best])
        waiting[best] = False
        current = torch.where(waiting, current * torch.exp(-overlaps[best] ** 2 / sigma), current)
    return torch.tensor(keep, dtype=torch.long), torch.stack(kept_scores) if keep else scores[:0]


def check_soft_nms(soft_nms) -> Verdict:
    """Check ``soft_nms(boxes (N, 4), scores (N,), sigma, score_threshold) -> (keep (K,), scores (K,))``."""
    generator = seeded(20)
    apart = torch.tensor([[0.0, 0.0, 3.0, 1.0], [10.0, 0.0, 13.0, 1.0]])
    half = torch.tensor([[0.0, 0.0, 3.0, 1.0], [1.0, 0.0, 4.0, 1.0]])  # IoU 0.5
    reorder = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [30.0, 0.0, 40.0, 10.0]])
    cluster = clustered_boxes(generator)
    cases = [
        Case("disjoint boxes keep their scores", (apart, torch.tensor([0.6, 0.9]), 0.5, 0.001),
             "keep the highest score first; IoU 0 decays nothing: exp(0) = 1"),
        Case("two boxes with IoU 0.5", (half, torch.tensor([0.9, 0.8]), 0.5, 0.001),
             "the second box is not removed: its score becomes 0.8 exp(-0.5^2 / sigma)"),
        Case("a decayed box falls behind another", (reorder, torch.tensor([0.9, 0.85, 0.6]), 0.5, 0.001),
             "after each decay pick the highest *current* score: sort again, not once at the start"),
        Case("a score below the threshold is dropped", (half, torch.tensor([0.9, 0.8]), 0.5, 0.5),
             "stop when the best current score is below score_threshold"),
        Case("20 boxes in four clusters", (cluster, torch.randperm(20, generator=generator).float() / 20 + 0.02,
                                           0.5, 0.001),
             "a box is decayed once by every box kept before it, with the IoU of the boxes themselves"),
    ]
    return run_check("soft_nms", soft_nms, reference_soft_nms, cases)


def reference_diou_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """DIoU-NMS [Zheng et al. 2020, Eq. 8]: greedy NMS that suppresses when ``IoU - rho^2 / c^2`` is above the threshold.

    Returns:
        ``(K,)`` int64 indices of the kept boxes, highest score first.
    """
    overlaps = distance_box_iou(boxes, boxes)  # (N, N)
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    keep = []
    for index in scores.argsort(descending=True).tolist():
        if not suppressed[index]:
            keep.append(index)
            suppressed |= overlaps[index] > iou_threshold
    return torch.tensor(keep, dtype=torch.long)


def check_diou_nms(diou_nms) -> Verdict:
    """Check ``diou_nms(boxes (N, 4), scores (N,), iou_threshold) -> (K,)`` int64 indices, best first."""
    generator = seeded(21)
    cases = [
        Case("two boxes with the same centre", (torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 9.0, 9.0]]),
                                                torch.tensor([0.9, 0.8]), 0.4),
             "same centre: DIoU = IoU = 0.64 > 0.4, so the weaker box goes"),
        Case("overlapping boxes, centres far apart", (torch.tensor([[0.0, 0.0, 10.0, 2.0], [4.0, 0.0, 14.0, 2.0]]),
                                                      torch.tensor([0.9, 0.8]), 0.4),
             "IoU is 6/14 = 0.43, but the penalty rho^2 / c^2 = 16 / 200 brings DIoU to 0.35: both stay (two "
             "faces side by side)"),
        Case("a chain: A overlaps B, B overlaps C", (torch.tensor([[0.0, 0.0, 10.0, 10.0], [2.0, 0.0, 12.0, 10.0],
                                                                   [4.0, 0.0, 14.0, 10.0]]),
                                                     torch.tensor([0.9, 0.8, 0.7]), 0.5),
             "a suppressed box suppresses nothing"),
        Case("20 boxes in four clusters", (clustered_boxes(generator),
                                           torch.randperm(20, generator=generator).float() / 20, 0.4)),
    ]
    return run_check("diou_nms", diou_nms, reference_diou_nms, cases)


def reference_voc_ap_11point(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC 2007's AP [Everingham et al. 2010, §4.2]: the mean over ``t = 0, 0.1, ..., 1`` of the best precision
    at recall ``>= t`` (0 where the recall never reaches ``t``)."""
    levels = np.arange(11) / 10  # (11,)
    reached = recall[None, :] >= levels[:, None]  # (11, T)
    return float(np.where(reached, precision[None, :], 0.0).max(axis=1).mean())


def check_voc_ap_11point(voc_ap_11point) -> Verdict:
    """Check ``voc_ap_11point(recall (T,), precision (T,)) -> float``."""
    rng = np.random.default_rng(22)
    cases = [
        Case("a perfect detector", (np.array([0.5, 1.0]), np.array([1.0, 1.0])),
             "eleven recall levels t = 0, 0.1, ..., 1, each with precision 1"),
        Case("recall that stops at 0.65", (np.array([0.25, 0.45, 0.65]), np.array([1.0, 1.0, 1.0])),
             "levels the recall never reaches (0.7 to 1) count as precision 0, and the mean is over all 11"),
        Case("precision that rises again", (np.array([0.25, 0.55, 0.75]), np.array([1.0, 0.5, 0.75])),
             "at each level take the largest precision at any recall >= t, not the precision of the first point"),
        Case("30 random points", (np.sort(rng.uniform(0, 0.93, 30)), rng.uniform(0.2, 1.0, 30))),
    ]
    return run_check("voc_ap_11point", voc_ap_11point, reference_voc_ap_11point, cases)


def reference_nme_interocular(points: np.ndarray, truth_points: np.ndarray) -> np.ndarray:
    """Mean landmark distance over the distance of the two annotated eyes, ``(F, 5, 2), (F, 5, 2) -> (F,)``.

    The normalisation of the 300-W benchmark (Sagonas et al. 2016) with eye centres, in place of the face
    box size ``sqrt(w h)`` of the paper [§4.5].
    """
    distances = np.linalg.norm(points - truth_points, axis=2)  # (F, 5)
    eyes = np.linalg.norm(truth_points[:, 0] - truth_points[:, 1], axis=1)  # (F,)
    return distances.mean(axis=1) / eyes


def check_nme_interocular(nme_interocular) -> Verdict:
    """Check ``nme_interocular(points (F, 5, 2), truth_points (F, 5, 2)) -> (F,)``."""
    rng = np.random.default_rng(23)
    face = np.array([[[40.0, 50.0], [60.0, 50.0], [50.0, 60.0], [42.0, 70.0], [58.0, 70.0]]])
    truth = face + rng.uniform(-3, 3, (6, 5, 2)) * np.array([1.0, 0.5])
    cases = [
        Case("a perfect prediction", (face.copy(), face), "no distance, no error"),
        Case("every point 2 px to the right", (face + np.array([2.0, 0.0]), face),
             "the eyes are 20 px apart: 2 / 20 = 0.1"),
        Case("the prediction's eyes are further apart", (face * np.array([1.2, 1.0]) - np.array([10.0, 0.0]), face),
             "divide by the distance of the *annotated* eyes (points 0 and 1), not the predicted ones"),
        Case("six random faces", (truth + rng.normal(0, 2, (6, 5, 2)), truth),
             "the mean over the five points of the Euclidean distance, one value per face"),
    ]
    return run_check("nme_interocular", nme_interocular, reference_nme_interocular, cases)


def reference_matrix_nms(boxes: torch.Tensor, scores: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian Matrix NMS [SOLOv2, Wang et al. 2020]: every box's decayed score in one pass.

    With the boxes by descending score (ties by index), ``f(iou) = exp(-iou^2 / sigma)`` (soft-NMS's penalty)
    and ``comp_i`` the largest IoU of box ``i`` with a box before it (0 for the first), box ``j`` keeps
    ``s_j min_(i before j) f(iou_ij) / f(comp_i)``; the first box keeps its score.

    Returns:
        ``(N,)`` decayed scores, in the input's order.
    """
    order = scores.argsort(descending=True, stable=True)  # (N,)
    overlaps = box_iou(boxes[order], boxes[order]).triu(diagonal=1)  # (N, N): [i, j] for i before j
    compensation = overlaps.max(dim=0).values  # (N,) comp_i: the largest IoU with a box before i
    # ratio[i, j] = f(iou_ij) / f(comp_i); an entry i >= j (iou 0) is >= 1, while ratio[0, j] = f(iou_0j) <= 1,
    # so the column minimum is over the boxes before j (and 1 for the first box, whose comp is 0)
    ratio = torch.exp(-(overlaps**2 - compensation[:, None] ** 2) / sigma)  # (N, N)
    decay = ratio.min(dim=0).values  # (N,)
    decayed = torch.empty_like(scores)
    decayed[order] = scores[order] * decay
    return decayed


def check_matrix_nms(matrix_nms) -> Verdict:
    """Check ``matrix_nms(boxes (N, 4), scores (N,), sigma) -> (N,)`` decayed scores in the input's order."""
    generator = seeded(28)
    apart = torch.tensor([[0.0, 0.0, 3.0, 1.0], [10.0, 0.0, 13.0, 1.0]])
    half = torch.tensor([[0.0, 0.0, 3.0, 1.0], [1.0, 0.0, 4.0, 1.0]])  # IoU 0.5
    chain = torch.tensor([[0.0, 0.0, 4.0, 1.0], [1.0, 0.0, 5.0, 1.0], [2.0, 0.0, 6.0, 1.0]])  # IoU 0.6, 0.6, 1/3
    cases = [
        Case("disjoint boxes keep their scores", (apart, torch.tensor([0.6, 0.9]), 0.5),
             "IoU 0 decays nothing: f(0) / f(0) = 1"),
        Case("two boxes with IoU 0.5", (half, torch.tensor([0.9, 0.8]), 0.5),
             "the better box keeps its score, the other becomes 0.8 exp(-0.5^2 / sigma); a box is decayed only by "
             "boxes of higher score"),
        Case("a chain: A overlaps B, B overlaps C", (chain, torch.tensor([0.9, 0.8, 0.7]), 0.5),
             "compensate: B is itself 0.6 inside A, so its decay of C is divided by f(0.6) and C keeps "
             "0.7 f(1/3), the decay A alone gives it"),
        Case("scores not in the boxes' order", (half.flip(0), torch.tensor([0.8, 0.9]), 0.5),
             "sort by score to decide who decays whom, but return the scores in the input's order"),
        Case("20 boxes in four clusters", (clustered_boxes(generator),
                                           torch.randperm(20, generator=generator).float() / 20 + 0.02, 0.5),
             "decay_j is the minimum over all boxes i of higher score, each with its own compensation"),
    ]
    return run_check("matrix_nms", matrix_nms, reference_matrix_nms, cases)
