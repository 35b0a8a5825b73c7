"""Solutions of the exercises, one function per exercise, named as in the notebooks.

Each is written from the formula, not from the rfcore function it is checked against (loops where rfcore
vectorises, explicit coordinates where rfcore slices), so a checker that passes a solution compares two
independent implementations. A notebook shows one with ``show_solution("iou")``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from rfcore.boxes import FLIP_ORDER, IGNORED, NEGATIVE, POSITIVE

# ---------------------------------------------------------------- notebook 01: anchors


def iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """IoU of every pair, ``(N, 4), (M, 4) -> (N, M)``, boxes ``(x1, y1, x2, y2)``."""
    top_left = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])  # (N, M, 2)
    bottom_right = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])  # (N, M, 2)
    overlap = (bottom_right - top_left).clamp(min=0).prod(dim=2)  # (N, M)
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])  # (N,)
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])  # (M,)
    return overlap / (area1[:, None] + area2[None, :] - overlap)


def level_anchors(rows: int, cols: int, stride: int, sizes: tuple) -> torch.Tensor:
    """Anchors ``(cx, cy, w, h)`` of one level, ordered row, column, size: ``(rows * cols * len(sizes), 4)``."""
    anchors = []
    for i in range(rows):
        for j in range(cols):
            for size in sizes:
                anchors.append([(j + 0.5) * stride, (i + 0.5) * stride, size, size])
    return torch.tensor(anchors)


# ---------------------------------------------------------------- notebook 02: the loss


def smooth_l1(x: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Elementwise smooth-L1 of ``x`` against zero: ``0.5 x^2 / beta`` below ``beta``, ``|x| - 0.5 beta`` above."""
    return torch.where(x.abs() < beta, 0.5 * x**2 / beta, x.abs() - 0.5 * beta)


def smooth_l1_grad(x: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Derivative of :func:`smooth_l1`: ``x / beta`` inside ``(-beta, beta)``, ``sign(x)`` outside."""
    return torch.where(x.abs() < beta, x / beta, torch.sign(x))


def ohem_select(cls_loss: torch.Tensor, labels: torch.Tensor, ratio: int) -> torch.Tensor:
    """Per image, the ``ratio * max(positives, 1)`` negatives of largest loss, ``(B, A), (B, A) -> (B, A)`` bool.

    Only anchors labelled ``NEGATIVE`` are candidates: positives train anyway, ``IGNORED`` ones never.
    """
    selected = torch.zeros(labels.shape, dtype=torch.bool)
    for image in range(labels.shape[0]):
        negatives = (labels[image] == NEGATIVE).nonzero().flatten()  # anchor indices
        quota = ratio * max(int((labels[image] == POSITIVE).sum()), 1)
        hardest_first = cls_loss[image, negatives].argsort(descending=True)
        selected[image, negatives[hardest_first[:quota]]] = True
    return selected


# ---------------------------------------------------------------- notebook 03: landmark normalisation


def encode_boxes(boxes: torch.Tensor, anchors: torch.Tensor, variances: tuple[float, float]) -> torch.Tensor:
    """Targets ``(t_x, t_y, t_w, t_h)`` of ``(N, 4)`` faces ``xyxy`` on ``(N, 4)`` anchors ``(cx, cy, w, h)``."""
    v0, v1 = variances
    face_w, face_h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    face_x, face_y = boxes[:, 0] + face_w / 2, boxes[:, 1] + face_h / 2
    anchor_x, anchor_y, anchor_w, anchor_h = anchors.unbind(dim=1)
    return torch.stack([
        (face_x - anchor_x) / (v0 * anchor_w),
        (face_y - anchor_y) / (v0 * anchor_h),
        torch.log(face_w / anchor_w) / v1,
        torch.log(face_h / anchor_h) / v1,
    ], dim=1)


def encode_landmarks(landmarks: torch.Tensor, anchors: torch.Tensor, variances: tuple[float, float]) -> torch.Tensor:
    """Targets ``(N, 10)`` of ``(N, 5, 2)`` points on ``(N, 4)`` anchors: centre offsets in ``v_0`` anchor sizes."""
    centre = anchors[:, None, :2]  # (N, 1, 2)
    unit = variances[0] * anchors[:, None, 2:]  # (N, 1, 2): v_0 a_w for x, v_0 a_h for y
    # (N, 5, 2) -> (N, 10)
    return ((landmarks - centre) / unit).reshape(len(landmarks), 10)


def decode_landmarks(targets: torch.Tensor, anchors: torch.Tensor, variances: tuple[float, float]) -> torch.Tensor:
    """Inverse of :func:`encode_landmarks`: ``(N, 10)`` targets -> ``(N, 5, 2)`` points in pixels."""
    centre = anchors[:, None, :2]  # (N, 1, 2)
    unit = variances[0] * anchors[:, None, 2:]  # (N, 1, 2)
    # (N, 10) -> (N, 5, 2)
    return targets.reshape(len(targets), 5, 2) * unit + centre


# ---------------------------------------------------------------- notebook 04: the mesh decoder


def chebyshev_filter(laplacian: torch.Tensor, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """``sum_k theta_k T_k(L~) x`` for a dense ``(V, V)`` ``L~``, ``(V, C)`` signal and ``(K,)`` coefficients."""
    previous, current = x, laplacian @ x  # T_0(L~) x and T_1(L~) x
    filtered = theta[0] * previous
    if len(theta) > 1:
        filtered = filtered + theta[1] * current
    for k in range(2, len(theta)):
        previous, current = current, 2 * laplacian @ current - previous
        filtered = filtered + theta[k] * current
    return filtered


# ---------------------------------------------------------------- notebook 06: training


def crop_boxes(boxes: np.ndarray, window: tuple[int, int, int]) -> np.ndarray:
    """The faces a square crop ``(x, y, side)`` keeps, those whose box centre lies strictly inside it, ``(K, 4)``.

    The kept boxes are moved into the crop's pixels and clipped to it.
    """
    x, y, side = window
    kept = []
    for x1, y1, x2, y2 in boxes.tolist():
        centre_x, centre_y = (x1 + x2) / 2, (y1 + y2) / 2
        if x < centre_x < x + side and y < centre_y < y + side:
            kept.append([min(max(value - corner, 0), side) for value, corner in zip((x1, y1, x2, y2), (x, y, x, y))])
    return np.array(kept, np.float32).reshape(-1, 4)


def flip(boxes: torch.Tensor, landmarks: torch.Tensor, width: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Faces of an image mirrored left to right: ``(F, 4)`` boxes and ``(F, 5, 2)`` points, ``x -> width - x``."""
    x1, y1, x2, y2 = boxes.unbind(dim=1)
    flipped_boxes = torch.stack([width - x2, y1, width - x1, y2], dim=1)  # the right edge becomes the left
    flipped_points = landmarks[:, FLIP_ORDER].clone()  # the left eye of the mirror image was the right eye
    flipped_points[..., 0] = width - flipped_points[..., 0]
    return flipped_boxes, flipped_points


def learning_rate(step: int, steps_per_epoch: int, lr: float, warmup_lr: float, warmup_epochs: float,
                  step_epochs: tuple[float, ...], decay: float) -> float:
    """Linear warm-up from ``warmup_lr`` to ``lr``, then ``lr`` times ``decay`` per step epoch reached."""
    epoch = step / steps_per_epoch
    if epoch < warmup_epochs:
        return warmup_lr + (lr - warmup_lr) * epoch / warmup_epochs
    decays = len([mark for mark in step_epochs if epoch >= mark])
    return lr * decay**decays


# ---------------------------------------------------------------- notebook 07: evaluation


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression: indices of the kept boxes, best score first, ``(K,)`` int64."""
    overlaps = iou(boxes, boxes)  # (N, N)
    removed = torch.zeros(len(boxes), dtype=torch.bool)
    keep = []
    for i in scores.argsort(descending=True).tolist():
        if removed[i]:
            continue  # a suppressed box suppresses nothing
        keep.append(i)
        removed |= overlaps[i] > iou_threshold
    return torch.tensor(keep, dtype=torch.long)


def voc_ap(recall, precision) -> float:
    """Area under the precision envelope, with recall 0 and 1 (precision 0) added at the ends."""
    recall = [0.0, *recall, 1.0]
    envelope = [0.0, *precision, 0.0]
    for i in range(len(envelope) - 2, -1, -1):  # from the right: the best precision at any higher recall
        envelope[i] = max(envelope[i], envelope[i + 1])
    return float(sum((recall[i + 1] - recall[i]) * envelope[i + 1] for i in range(len(recall) - 1)))


# ---------------------------------------------------------------- notebook 05: the network


def receptive_field(layers: list[tuple[int, int, int]]) -> tuple[int, int]:
    """``(size, jump)`` after ``(kernel, stride, dilation)`` layers: size grows by ``(k - 1) d`` input jumps."""
    size, jump = 1, 1  # one input pixel
    for kernel, stride, dilation in layers:
        size += (kernel - 1) * dilation * jump  # neighbouring taps are `dilation` cells, `jump` pixels each, apart
        jump *= stride
    return size, jump


def top_down(coarse: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
    """``lateral + upsample(coarse)``: each finer cell adds the coarse cell it falls in (nearest neighbour)."""
    height, width = lateral.shape[-2:]
    rows = torch.arange(height) * coarse.shape[-2] // height  # (H,) coarse row under each finer row
    cols = torch.arange(width) * coarse.shape[-1] // width  # (W,)
    return lateral + coarse[..., rows[:, None], cols[None, :]]  # (N, C, H, W)


# ================================================================ new exercises of notebooks 01-05 and 07
# Variants extend the paper's idea; each cites where its formula comes from.


# ---------------------------------------------------------------- notebook 01


def ratio_anchors(rows: int, cols: int, stride: int, sizes: tuple, ratios: tuple) -> torch.Tensor:
    """Anchors ``(cx, cy, w, h)`` with aspect ratios ``r = h / w`` at the area ``s^2`` [Ren et al. 2015, §3.1.1].

    Ordered row, column, size, ratio: ``(rows * cols * len(sizes) * len(ratios), 4)``.
    """
    anchors = []
    for i in range(rows):
        for j in range(cols):
            for size in sizes:
                for ratio in ratios:
                    anchors.append([(j + 0.5) * stride, (i + 0.5) * stride, size / ratio**0.5, size * ratio**0.5])
    return torch.tensor(anchors)


def diou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Distance IoU of every pair, ``IoU - rho^2 / c^2`` [Zheng et al. 2020, Eq. 6], ``(N, 4), (M, 4) -> (N, M)``."""
    centre1 = (boxes1[:, None, :2] + boxes1[:, None, 2:]) / 2  # (N, 1, 2)
    centre2 = (boxes2[None, :, :2] + boxes2[None, :, 2:]) / 2  # (1, M, 2)
    rho2 = ((centre1 - centre2) ** 2).sum(dim=2)  # (N, M) squared distance of the centres
    outer_low = torch.minimum(boxes1[:, None, :2], boxes2[None, :, :2])  # (N, M, 2)
    outer_high = torch.maximum(boxes1[:, None, 2:], boxes2[None, :, 2:])  # (N, M, 2)
    c2 = ((outer_high - outer_low) ** 2).sum(dim=2)  # (N, M) squared diagonal of the enclosing box
    return iou(boxes1, boxes2) - rho2 / c2


def dense_anchors(rows: int, cols: int, stride: int, size: float, density: int) -> torch.Tensor:
    """FaceBoxes' anchor densification [Zhang et al. 2017, §3.3]: ``density^2`` square anchors per cell.

    They sit on an ``n x n`` sub-grid centred on the cell, at ``(j + (b + 0.5) / n) * stride``; ordered row,
    column, sub-row, sub-column: ``(rows * cols * density^2, 4)`` ``(cx, cy, w, h)``.
    """
    anchors = []
    for i in range(rows):
        for j in range(cols):
            for a in range(density):
                for b in range(density):
                    centre_x = (j + (b + 0.5) / density) * stride
                    centre_y = (i + (a + 0.5) / density) * stride
                    anchors.append([centre_x, centre_y, size, size])
    return torch.tensor(anchors)


# ---------------------------------------------------------------- notebook 02


def focal_loss(logits: torch.Tensor, labels: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """``-alpha_t (1 - p_t)^gamma log p_t`` per anchor [Lin et al. 2017, Eq. 5], 0 for ignored anchors, ``(B, A)``."""
    log_p = torch.log_softmax(logits, dim=-1)  # (B, A, 2)
    positive = labels == POSITIVE
    log_p_t = torch.where(positive, log_p[..., 1], log_p[..., 0])  # log-probability of the anchor's own class
    alpha_t = torch.where(positive, alpha, 1 - alpha)
    loss = -alpha_t * (1 - log_p_t.exp()) ** gamma * log_p_t
    return torch.where(labels == IGNORED, torch.zeros_like(loss), loss)


def giou_loss(boxes: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``1 - GIoU`` of corresponding boxes [Rezatofighi et al. 2019, Alg. 1], ``(P, 4), (P, 4) -> (P,)``."""
    losses = []
    for (x1, y1, x2, y2), (u1, v1, u2, v2) in zip(boxes.tolist(), targets.tolist()):
        overlap = max(0.0, min(x2, u2) - max(x1, u1)) * max(0.0, min(y2, v2) - max(y1, v1))
        union = (x2 - x1) * (y2 - y1) + (u2 - u1) * (v2 - v1) - overlap
        enclosing = (max(x2, u2) - min(x1, u1)) * (max(y2, v2) - min(y1, v1))
        losses.append(1 - (overlap / union - (enclosing - union) / enclosing))
    return torch.tensor(losses)


def ciou_loss(boxes: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``1 - IoU + rho^2 / c^2 + alpha v`` of corresponding boxes [Zheng et al. 2020, Eqs. 9-11], ``(P,)``."""
    losses = []
    for (x1, y1, x2, y2), (u1, v1, u2, v2) in zip(boxes.tolist(), targets.tolist()):
        overlap = max(0.0, min(x2, u2) - max(x1, u1)) * max(0.0, min(y2, v2) - max(y1, v1))
        iou_value = overlap / ((x2 - x1) * (y2 - y1) + (u2 - u1) * (v2 - v1) - overlap)
        rho2 = ((x1 + x2 - u1 - u2) / 2) ** 2 + ((y1 + y2 - v1 - v2) / 2) ** 2  # squared distance of the centres
        c2 = (max(x2, u2) - min(x1, u1)) ** 2 + (max(y2, v2) - min(y1, v1)) ** 2  # squared enclosing diagonal
        v = 4 / math.pi**2 * (math.atan((u2 - u1) / (v2 - v1)) - math.atan((x2 - x1) / (y2 - y1))) ** 2
        alpha = v / ((1 - iou_value) + v) if v > 0 else 0.0  # 0 / 0 for a box on its target: no shape term
        losses.append(1 - iou_value + rho2 / c2 + alpha * v)
    return torch.tensor(losses)


def quality_focal_loss(logits: torch.Tensor, quality: torch.Tensor, beta: float) -> torch.Tensor:
    """``-|y - sigma|^beta ((1 - y) log(1 - sigma) + y log sigma)`` per anchor [Li et al. 2020, GFL], ``(B, A)``.

    ``sigma`` is the softmax face probability, ``y`` the anchor's quality target (its box's IoU, 0 for negatives).
    """
    log_p = torch.log_softmax(logits, dim=-1)  # (B, A, 2): log(1 - sigma), log sigma
    sigma = log_p[..., 1].exp()
    cross_entropy = -((1 - quality) * log_p[..., 0] + quality * log_p[..., 1])
    return (quality - sigma).abs() ** beta * cross_entropy


# ---------------------------------------------------------------- notebook 03


def encode_ltrb(boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Distances ``(l, t, r, b)`` from the anchor centre to the face's sides in anchor sizes [after Tian et al. 2019]."""
    x1, y1, x2, y2 = boxes.unbind(dim=1)
    anchor_x, anchor_y, anchor_w, anchor_h = anchors.unbind(dim=1)
    return torch.stack([(anchor_x - x1) / anchor_w, (anchor_y - y1) / anchor_h,
                        (x2 - anchor_x) / anchor_w, (y2 - anchor_y) / anchor_h], dim=1)


def wing_loss(x: torch.Tensor, width: float, epsilon: float) -> torch.Tensor:
    """Wing loss [Feng et al. 2018, Eq. 5]: logarithmic for ``|x| < w``, then linear, joined continuously."""
    join = width - width * math.log(1 + width / epsilon)  # C: both pieces equal w ln(1 + w / epsilon) at |x| = w
    inside = width * torch.log(1 + x.abs() / epsilon)
    return torch.where(x.abs() < width, inside, x.abs() - join)


def soft_argmax(heatmaps: torch.Tensor, stride: float) -> torch.Tensor:
    """Expected cell centre under each map's softmax [integral regression, Sun et al. 2018], ``(N, K, 2)``."""
    height, width = heatmaps.shape[-2:]
    weights = torch.exp(heatmaps - heatmaps.amax(dim=(2, 3), keepdim=True))  # exp(z), shifted against overflow
    p = weights / weights.sum(dim=(2, 3), keepdim=True)  # (N, K, H, W) sums to 1 over each map
    centre_x = (torch.arange(width) + 0.5) * stride  # (W,) the x of each column's centre
    centre_y = (torch.arange(height) + 0.5) * stride  # (H,)
    x = (p * centre_x[None, None, None, :]).sum(dim=(2, 3))  # (N, K)
    y = (p * centre_y[None, None, :, None]).sum(dim=(2, 3))  # (N, K)
    return torch.stack([x, y], dim=2)


# ---------------------------------------------------------------- notebook 04


def chebyshev_gain(theta: torch.Tensor, eigenvalues: torch.Tensor, lambda_max: float) -> torch.Tensor:
    """``g(lambda) = sum_k theta_k T_k(2 lambda / lambda_max - 1)`` from ``T_k(cos t) = cos(k t)``, ``(N,)``."""
    angle = torch.arccos((2 * eigenvalues / lambda_max - 1).clamp(-1, 1))  # (N,) t with cos t = lambda~
    k = torch.arange(len(theta), dtype=eigenvalues.dtype)  # (K,)
    return torch.cos(k[:, None] * angle[None, :]).T @ theta.to(eigenvalues.dtype)  # (N, K) @ (K,) -> (N,)


def gcn_layer(adjacency: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Kipf & Welling's graph convolution [2017, Eq. 2] of a ``(V, C_in)`` signal: ``(V, C_out)``.

    Each vertex sums ``x_j / sqrt(d~_i d~_j)`` over itself and its neighbours (``d~`` the degree plus the
    self-loop), then the sum is multiplied by ``W``.
    """
    num_vertices = len(adjacency)
    degree = [1.0 + float(adjacency[i].sum()) for i in range(num_vertices)]  # d~: the self-loop counts
    propagated = torch.zeros_like(x)
    for i in range(num_vertices):
        for j in range(num_vertices):
            if i == j or adjacency[i, j] != 0:
                propagated[i] += x[j] / math.sqrt(degree[i] * degree[j])
    return propagated @ weight


# ---------------------------------------------------------------- notebook 05


def receptive_field_start(layers: list[tuple[int, int, int, int]]) -> tuple[int, int, float]:
    """``(size, jump, start)`` after ``(kernel, stride, dilation, padding)`` layers [Araujo et al. 2019].

    ``start`` is the centre of output cell 0's field in input pixels (pixel ``i`` covers ``[i, i + 1]``): each
    layer's cell 0 reads its input cells ``-p, -p + d, ..., -p + (k - 1) d``, centred ``(k - 1) d / 2 - p``
    input cells after cell 0 of its input.
    """
    size, jump, start = 1, 1, 0.5
    for kernel, stride, dilation, padding in layers:
        size += (kernel - 1) * dilation * jump
        start += ((kernel - 1) * dilation / 2 - padding) * jump
        jump *= stride
    return size, jump, start


def top_down_bilinear(coarse: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
    """``lateral + up(coarse)``, bilinear on half-pixel centres [as in Panoptic FPN, Kirillov et al. 2019].

    Output cell ``x`` reads the coarse map at ``(x + 0.5) w / W - 0.5``, clamped to ``[0, w - 1]``, and blends
    the two coarse cells around it; the same along ``y``.
    """
    def weights(fine: int, coarse_size: int) -> torch.Tensor:
        """``(fine, coarse_size)`` interpolation matrix along one axis."""
        matrix = torch.zeros(fine, coarse_size)
        for out in range(fine):
            source = min(max((out + 0.5) * coarse_size / fine - 0.5, 0.0), coarse_size - 1)
            low = math.floor(source)
            high = min(low + 1, coarse_size - 1)
            matrix[out, low] += 1 - (source - low)
            matrix[out, high] += source - low
        return matrix

    rows = weights(lateral.shape[-2], coarse.shape[-2])  # (H, h)
    cols = weights(lateral.shape[-1], coarse.shape[-1])  # (W, w)
    return lateral + rows @ coarse @ cols.T  # (H, h) @ (N, C, h, w) @ (w, W) -> (N, C, H, W)


# ---------------------------------------------------------------- notebook 07


def box_vote(kept_boxes: torch.Tensor, pool_boxes: torch.Tensor, pool_scores: torch.Tensor,
             iou_threshold: float) -> torch.Tensor:
    """Box voting [paper §4.2]: each kept box becomes the score-weighted mean of the candidates it stands for.

    A candidate stands for the first (highest-scoring) kept box it overlaps with IoU above the threshold.
    """
    overlaps = iou(kept_boxes, pool_boxes)  # (K, M)
    totals = torch.zeros(len(kept_boxes), 4)
    weights = torch.zeros(len(kept_boxes))
    for candidate in range(len(pool_boxes)):
        above = (overlaps[:, candidate] > iou_threshold).nonzero().flatten()
        if len(above):
            owner = int(above[0])
            totals[owner] += pool_scores[candidate] * pool_boxes[candidate]
            weights[owner] += pool_scores[candidate]
    return totals / weights[:, None]


def match_detections(iou: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The WIDER FACE matching of one image's detections (by descending score) with its faces.

    Each detection takes the face it overlaps most; with IoU >= 0.5 on an ignored face it is left out (not
    counted), on a counted face it is a true positive if that face is not taken yet; otherwise a false positive.

    Returns:
        ``(D,)`` bool true positives and ``(D,)`` bool counted (true or false positive).
    """
    true_positive = np.zeros(len(iou), dtype=bool)
    counted = np.ones(len(iou), dtype=bool)
    taken = set()
    for detection, overlaps in enumerate(iou):
        face = int(np.argmax(overlaps))
        if overlaps[face] < 0.5:
            continue  # no face: a false positive
        if not counts[face]:
            counted[detection] = False  # an ignored face: neither true nor false
        elif face not in taken:
            taken.add(face)
            true_positive[detection] = True
    return true_positive, counted


def soft_nms(boxes: torch.Tensor, scores: torch.Tensor, sigma: float,
             score_threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian soft-NMS [Bodla et al. 2017]: each kept box multiplies the others' scores by ``exp(-IoU^2 / sigma)``.

    Returns:
        ``(K,)`` int64 indices in the order they are kept and ``(K,)`` their scores at that moment.
    """
    current = scores.tolist()
    waiting = list(range(len(boxes)))
    keep, kept_scores = [], []
    while waiting:
        best = max(waiting, key=lambda i: current[i])
        if current[best] < score_threshold:
            break
        keep.append(best)
        kept_scores.append(current[best])
        waiting.remove(best)
        overlaps = iou(boxes[[best]], boxes)[0]  # (N,)
        for other in waiting:
            current[other] *= math.exp(-float(overlaps[other]) ** 2 / sigma)
    return torch.tensor(keep, dtype=torch.long), torch.tensor(kept_scores, dtype=scores.dtype)


def diou_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS that removes a box when its DIoU with a kept one is above the threshold [Zheng et al. 2020]."""
    overlaps = diou(boxes, boxes)  # (N, N)
    keep = []
    for i in scores.argsort(descending=True).tolist():
        if all(overlaps[j, i] <= iou_threshold for j in keep):
            keep.append(i)
    return torch.tensor(keep, dtype=torch.long)


def voc_ap_11point(recall, precision) -> float:
    """Mean over ``t = 0, 0.1, ..., 1`` of the best precision at recall ``>= t`` [Everingham et al. 2010, §4.2]."""
    total = 0.0
    for level in range(11):
        reached = [p for r, p in zip(recall, precision) if r >= level / 10]
        total += max(reached) if reached else 0.0
    return total / 11


def nme_interocular(points: np.ndarray, truth_points: np.ndarray) -> np.ndarray:
    """Mean landmark distance divided by the annotated eyes' distance (300-W, Sagonas et al. 2016), ``(F,)``."""
    errors = []
    for predicted, truth in zip(points, truth_points):
        eyes = math.dist(truth[0], truth[1])
        errors.append(sum(math.dist(p, g) for p, g in zip(predicted, truth)) / 5 / eyes)
    return np.array(errors)
# ---------------------------------------------------------------- notebook 06: variants of the schedule


def matrix_nms(boxes: torch.Tensor, scores: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian Matrix NMS [SOLOv2, Wang et al. 2020]: ``(N,)`` decayed scores, in the input's order.

    Box ``j`` is decayed by every box ``i`` of higher score, by ``f(IoU_ij) / f(comp_i)`` with
    ``f(u) = exp(-u^2 / sigma)`` and ``comp_i`` box ``i``'s own largest IoU with a box of higher score;
    the smallest factor counts.
    """
    order = scores.argsort(descending=True, stable=True).tolist()
    overlaps = iou(boxes, boxes)  # (N, N)
    decayed = scores.clone()
    for n, j in enumerate(order):
        factors = []
        for m, i in enumerate(order[:n]):
            compensation = max((float(overlaps[k, i]) for k in order[:m]), default=0.0)
            factors.append(math.exp(-(float(overlaps[i, j]) ** 2 - compensation**2) / sigma))
        decayed[j] = scores[j] * min(factors, default=1.0)
    return decayed


def cosine_learning_rate(step: int, total_steps: int, lr: float, warmup_lr: float, warmup_steps: int,
                         final_lr: float) -> float:
    """Linear warm-up to ``lr``, then ``final_lr + (lr - final_lr) (1 + cos(pi t / T)) / 2`` [SGDR, Eq. 5]."""
    if step < warmup_steps:
        return warmup_lr + (lr - warmup_lr) * step / warmup_steps
    t, period = step - warmup_steps, total_steps - warmup_steps  # the cosine's own clock
    return final_lr + (lr - final_lr) * (1 + np.cos(np.pi * min(t / period, 1.0))) / 2


def warm_restart_learning_rate(step: int, lr_max: float, lr_min: float, period: int, mult: int) -> float:
    """SGDR [Loshchilov & Hutter 2017, Eq. 5]: cosine cycles of ``period``, ``period * mult``, ... steps."""
    t_cur, t_i = step, period
    while t_cur >= t_i:  # skip the finished cycles
        t_cur -= t_i
        t_i *= mult
    return lr_min + (lr_max - lr_min) * (1 + np.cos(np.pi * t_cur / t_i)) / 2


# ---------------------------------------------------------------- notebook 08: matching, Eq. 1, decoding


def match(iou: torch.Tensor, pos_iou: float, neg_iou: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's matching [§4.2] from the ``(A, F)`` IoU matrix: ``(A,)`` labels and matched faces, int64.

    Positive from ``pos_iou`` (matched to the face of highest IoU), negative below ``neg_iou``, ignored in
    between; then each face that overlaps some anchor takes its best anchor (the lowest index on ties), the
    face of highest IoU winning an anchor two faces pick.
    """
    return match_forcing_floor(iou, pos_iou, neg_iou, floor=0.0)


def match_forcing_floor(iou: torch.Tensor, pos_iou: float, neg_iou: float,
                        floor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`match`, forcing only the faces whose best anchor has IoU ``>= floor`` (the public recipe's 0.2)."""
    num_anchors, num_faces = iou.shape
    labels = torch.full((num_anchors,), NEGATIVE, dtype=torch.long)
    matched = torch.full((num_anchors,), -1, dtype=torch.long)
    if num_faces == 0:
        return labels, matched
    best_iou, best_face = iou.max(dim=1)  # (A,) each anchor's best face, the first on ties
    labels[best_iou >= neg_iou] = -1  # ignored, unless the next line makes it positive
    labels[best_iou >= pos_iou] = POSITIVE
    matched[labels == POSITIVE] = best_face[labels == POSITIVE]
    forced_iou = torch.full((num_anchors,), -1.0)  # IoU of the face that forced each anchor
    for face in range(num_faces):  # a few faces per image: a loop reads like the rule
        anchor = int(torch.argmax(iou[:, face]))  # argmax returns the first of equal maxima
        best = float(iou[anchor, face])
        if best > 0 and best >= floor and best > forced_iou[anchor]:
            forced_iou[anchor] = best
            labels[anchor], matched[anchor] = POSITIVE, face
    return labels, matched


def image_loss(logits, box_deltas, landmark_deltas, labels, box_targets, landmark_targets, landmark_valid,
               ohem_ratio, lambdas):
    """Eq. 1 [§3.1] for one image with OHEM: ``(total, cls, box, pts)``, sums over the positives' count."""
    positive = labels == POSITIVE
    num_positive = max(int(positive.sum()), 1)
    cross_entropy = -torch.log_softmax(logits.float(), dim=1)  # (A, 2): column c is the loss of class c
    cls_loss = torch.where(positive, cross_entropy[:, 1], cross_entropy[:, 0])  # (A,)
    negatives = (labels == NEGATIVE).nonzero().flatten()
    quota = min(ohem_ratio * num_positive, len(negatives))
    hardest = negatives[cls_loss[negatives].detach().argsort(descending=True)[:quota]]
    cls = (cls_loss[positive].sum() + cls_loss[hardest].sum()) / num_positive
    box = smooth_l1(box_deltas[positive] - box_targets[positive]).sum() / num_positive
    num_points = max(int(landmark_valid.sum()), 1)
    pts = smooth_l1(landmark_deltas[landmark_valid] - landmark_targets[landmark_valid]).sum() / num_points
    lambda_cls, lambda_box, lambda_pts = lambdas
    return lambda_cls * cls + lambda_box * box + lambda_pts * pts, cls, box, pts


def decode(box_deltas, landmark_deltas, anchors, variances):
    """Network outputs to pixels: ``(N, 4)`` ``xyxy`` boxes and ``(N, 5, 2)`` landmarks, inverting the encoding."""
    v0, v1 = variances
    cx, cy, w, h = anchors.unbind(dim=1)
    centre_x = cx + box_deltas[:, 0] * v0 * w
    centre_y = cy + box_deltas[:, 1] * v0 * h
    width, height = w * torch.exp(box_deltas[:, 2] * v1), h * torch.exp(box_deltas[:, 3] * v1)
    boxes = torch.stack([centre_x - width / 2, centre_y - height / 2, centre_x + width / 2, centre_y + height / 2], 1)
    points = landmark_deltas.reshape(-1, 5, 2) * v0  # (N, 10) -> (N, 5, 2) in units of the anchor size
    landmarks = torch.stack([cx[:, None] + points[..., 0] * w[:, None], cy[:, None] + points[..., 1] * h[:, None]], 2)
    return boxes, landmarks


def balanced_l1(x: torch.Tensor, alpha: float = 0.5, gamma: float = 1.5) -> torch.Tensor:
    """Balanced L1 [Libra R-CNN, Pang et al. 2019, §3.3] of ``x`` against zero, elementwise."""
    b = np.exp(gamma / alpha) - 1  # alpha ln(b + 1) = gamma: equal slopes at |x| = 1
    constant = gamma / b - alpha  # L_b continuous at |x| = 1
    a = x.abs()
    inner = alpha / b * (b * a + 1) * torch.log(b * a + 1) - alpha * a
    return torch.where(a < 1, inner, gamma * a + constant)
