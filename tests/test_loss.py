import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rfcore.boxes import IGNORED, NEGATIVE, POSITIVE
from rfcore.config import get_config
from rfcore.loss import LossTerms, classification_loss, multitask_loss, ohem_select
from rfcore.matching import AnchorTargets, TargetAssigner
from rfcore.model.retinaface import RetinaFace, RetinaFaceOutput

PAPER = dataclasses.replace(get_config("paper"), ohem_ratio=3)  # 1 / 0.25 / 0.1 / 0.01


def softplus(x: float) -> float:
    """Cross-entropy of logits (0, z): -log softmax = log(1 + e^z) for class 0, softplus(-z) for class 1."""
    return math.log1p(math.exp(x))


def smooth_l1(values) -> float:
    return sum(0.5 * v * v if abs(v) < 1 else abs(v) - 0.5 for v in values)


def face_logits(z) -> torch.Tensor:
    """``(A,)`` face logits z -> ``(1, A, 2)`` logits (0, z)."""
    z = torch.tensor(z, dtype=torch.float32)
    return torch.stack([torch.zeros_like(z), z], dim=-1)[None]


def make_targets(labels, boxes=None, landmarks=None, landmark_valid=None) -> AnchorTargets:
    labels = torch.tensor(labels, dtype=torch.long)
    if labels.ndim == 1:
        labels = labels[None]
    shape = tuple(labels.shape)
    positive = labels == POSITIVE
    return AnchorTargets(
        labels=labels,
        matched_idxs=torch.where(positive, 0, -1),
        boxes=torch.zeros(*shape, 4) if boxes is None else boxes,
        landmarks=torch.zeros(*shape, 10) if landmarks is None else landmarks,
        landmark_valid=positive if landmark_valid is None else landmark_valid,
    )


def make_output(logits, box_deltas=None, landmark_deltas=None) -> RetinaFaceOutput:
    batch, anchors = logits.shape[:2]
    return RetinaFaceOutput(
        logits=logits,
        box_deltas=torch.zeros(batch, anchors, 4) if box_deltas is None else box_deltas,
        landmark_deltas=torch.zeros(batch, anchors, 10) if landmark_deltas is None else landmark_deltas,
    )


def test_hand_sized_case_matches_eq_1():
    #         pos   neg  neg   neg  ign  neg  neg   neg
    labels = [1, 0, 0, 0, -1, 0, 0, 0]
    z = [1.0, 2.0, -1.0, 0.5, 5.0, 1.0, -2.0, 0.0]
    box_deltas = torch.full((1, 8, 4), 9.0)  # only the positive row counts
    box_deltas[0, 0] = torch.tensor([0.5, -2.0, 0.0, 0.1])
    box_targets = torch.zeros(1, 8, 4)
    box_targets[0, 0] = torch.tensor([0.0, 0.0, 0.0, 0.3])
    point_deltas = torch.full((1, 8, 10), -7.0)
    point_deltas[0, 0] = torch.arange(10) * 0.25  # 0, 0.25, ..., 2.25
    targets = make_targets(labels, boxes=box_targets)

    output = make_output(face_logits(z), box_deltas, point_deltas)
    terms = multitask_loss(output, targets, PAPER, pixel=torch.tensor(2.0))

    # one positive; 3:1 keeps the three hardest of the six negatives: z = 2, 1, 0.5
    cls = softplus(-1.0) + softplus(2.0) + softplus(1.0) + softplus(0.5)
    box = smooth_l1([0.5, -2.0, 0.0, 0.1 - 0.3])  # 0.125 + 1.5 + 0 + 0.02
    pts = smooth_l1([k * 0.25 for k in range(10)])
    assert isinstance(terms, LossTerms)
    assert terms.cls.item() == pytest.approx(cls, rel=1e-6)
    assert terms.box.item() == pytest.approx(1.645, rel=1e-6)
    assert terms.box.item() == pytest.approx(box, rel=1e-6)
    assert terms.pts.item() == pytest.approx(pts, rel=1e-6)
    assert terms.pixel.item() == 2.0
    assert terms.total.item() == pytest.approx(cls + 0.25 * box + 0.1 * pts + 0.01 * 2.0, rel=1e-6)


def test_terms_are_normalised_by_positives_and_by_faces_with_landmarks():
    # two positives, only the first one's face has landmarks
    labels = [1, 1, 0, 0, 0, 0, 0, 0]
    box_deltas = torch.zeros(1, 8, 4)
    box_deltas[0, :2, 0] = torch.tensor([0.4, 0.6])
    point_deltas = torch.zeros(1, 8, 10)
    point_deltas[0, :2, 0] = torch.tensor([0.8, 100.0])  # the second must not count
    landmark_valid = torch.tensor([[True, False, False, False, False, False, False, False]])
    targets = make_targets(labels, landmark_valid=landmark_valid)
    z = [0.0] * 8

    terms = multitask_loss(make_output(face_logits(z), box_deltas, point_deltas), targets, PAPER)

    # 2 positives -> 6 negatives kept: all of them
    assert terms.cls.item() == pytest.approx(8 * math.log(2) / 2, rel=1e-6)
    assert terms.box.item() == pytest.approx((0.5 * 0.16 + 0.5 * 0.36) / 2, rel=1e-6)
    assert terms.pts.item() == pytest.approx(0.5 * 0.64 / 1, rel=1e-6)
    assert terms.pixel.item() == 0.0


def test_ignored_anchors_contribute_nothing():
    labels = [1, 0, 0, -1, -1]
    base = [0.0, 0.0, 0.0, 0.0, 0.0]
    wild = [0.0, 0.0, 0.0, 30.0, -30.0]  # huge loss for class 0 at anchor 3
    box_deltas = torch.zeros(1, 5, 4)
    box_deltas[0, 3:] = 50.0
    ratio_all = dataclasses.replace(PAPER, ohem_ratio=100)
    logits = face_logits(wild).requires_grad_()

    terms = multitask_loss(make_output(logits, box_deltas), make_targets(labels), ratio_all)
    reference = multitask_loss(make_output(face_logits(base)), make_targets(labels), ratio_all)
    terms.total.backward()

    assert terms.cls.item() == pytest.approx(3 * math.log(2), rel=1e-6)  # 1 positive + 2 negatives
    assert torch.equal(terms.total, reference.total)
    assert torch.equal(logits.grad[0, 3:], torch.zeros(2, 2))
    assert not ohem_select(torch.tensor([[0.0, 1.0, 1.0, 99.0, 99.0]]), make_targets(labels).labels, 100)[0, 3:].any()


def test_ohem_keeps_exactly_ratio_times_positives_per_image():
    labels = torch.full((3, 30), NEGATIVE)
    labels[0, :2] = POSITIVE  # 2 positives, 28 negatives -> 6 kept
    labels[1, :4] = POSITIVE  # 4 positives, 5 negatives, 21 ignored -> all 5 kept
    labels[1, 9:] = IGNORED
    labels[2, 10:20] = IGNORED  # no positive, 20 negatives -> 3 kept
    loss = torch.rand(3, 30, generator=torch.Generator().manual_seed(0))

    selected = ohem_select(loss, labels, ratio=3)

    assert selected.sum(dim=1).tolist() == [6, 5, 3]
    assert (labels[selected] == NEGATIVE).all()
    for image in range(3):  # the kept negatives are the hardest of their image
        negative = labels[image] == NEGATIVE
        kept, dropped = loss[image][selected[image]], loss[image][negative & ~selected[image]]
        assert dropped.numel() == 0 or kept.min() >= dropped.max()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from([POSITIVE, NEGATIVE, NEGATIVE, NEGATIVE, IGNORED]), min_size=10, max_size=10),
             min_size=1, max_size=4),
    st.integers(1, 7),
    st.integers(0, 2**31 - 1),
)
def test_ohem_count_and_hardness_for_any_labels(rows, ratio, seed):
    labels = torch.tensor(rows)
    loss = torch.rand(labels.shape, generator=torch.Generator().manual_seed(seed))

    selected = ohem_select(loss, labels, ratio)

    num_positive = (labels == POSITIVE).sum(1)
    num_negative = (labels == NEGATIVE).sum(1)
    expected = torch.minimum(ratio * num_positive.clamp(min=1), num_negative)
    assert torch.equal(selected.sum(1), expected)
    assert (labels[selected] == NEGATIVE).all()
    worst_dropped = loss.masked_fill(selected | (labels != NEGATIVE), -1.0).max(dim=1).values
    best_kept = loss.masked_fill(~selected, 2.0).min(dim=1).values
    assert (best_kept >= worst_dropped).all()


def test_batch_without_positive_anchors():
    labels = [[0, 0, 0, 0, -1, 0], [0, -1, 0, 0, 0, 0]]
    z = torch.tensor([[3.0, -1.0, 2.0, 1.0, 9.0, 0.0], [0.0, 9.0, -3.0, 0.5, 4.0, 1.0]])
    logits = torch.stack([torch.zeros_like(z), z], dim=-1).requires_grad_()  # (2, 6, 2)
    box_deltas = torch.ones(2, 6, 4, requires_grad=True)
    point_deltas = torch.ones(2, 6, 10, requires_grad=True)

    terms = multitask_loss(make_output(logits, box_deltas, point_deltas), make_targets(labels), PAPER)
    terms.total.backward()

    # each image keeps its 3 hardest negatives; the batch has 0 positives, normalised by 1
    expected = sum(softplus(v) for v in (3.0, 2.0, 1.0)) + sum(softplus(v) for v in (4.0, 1.0, 0.5))
    assert terms.cls.item() == pytest.approx(expected, rel=1e-6)
    assert terms.box.item() == 0.0 and terms.pts.item() == 0.0
    assert torch.isfinite(terms.total)
    assert not box_deltas.grad.any() and not point_deltas.grad.any()
    assert logits.grad.abs().sum() > 0


def test_public_recipe_weights_two_box_plus_cls_plus_landmarks():
    cfg = get_config("mobilenet0.25")
    labels = [1, 0, 0, 0, 0, 0, 0, 0, 0]
    box_deltas = torch.zeros(1, 9, 4)
    box_deltas[0, 0, 0] = 2.0
    point_deltas = torch.zeros(1, 9, 10)
    point_deltas[0, 0, 0] = 3.0
    terms = multitask_loss(make_output(face_logits([0.0] * 9), box_deltas, point_deltas), make_targets(labels), cfg)

    assert terms.cls.item() == pytest.approx(8 * math.log(2), rel=1e-6)  # 1 positive + 7 negatives
    assert terms.total.item() == pytest.approx(8 * math.log(2) + 2 * 1.5 + 2.5, rel=1e-6)


def test_classification_loss_per_anchor():
    labels = torch.tensor([[POSITIVE, NEGATIVE, IGNORED]])
    loss = classification_loss(face_logits([2.0, 2.0, 2.0]), labels)
    assert loss.shape == (1, 3)
    assert loss[0].tolist() == pytest.approx([softplus(-2.0), softplus(2.0), softplus(2.0)], rel=1e-6)


def test_mismatched_shapes_are_reported():
    targets = make_targets([1, 0, 0])
    with pytest.raises(ValueError, match=r"box_deltas has shape \(1, 3, 5\).*need \(1, 3, 4\)"):
        multitask_loss(make_output(face_logits([0.0] * 3), torch.zeros(1, 3, 5)), targets, PAPER)


@pytest.mark.slow
def test_gradients_reach_every_head_and_the_backbone():
    torch.manual_seed(0)
    cfg = get_config("mobilenet0.25")
    model = RetinaFace.from_config(cfg)
    size = 256
    # one face per pyramid level (anchor sizes 16/32, 64/128, 256/512), and an image with no face
    faces = torch.tensor([[20.0, 20.0, 44.0, 46.0], [100.0, 90.0, 190.0, 190.0], [8.0, 8.0, 250.0, 250.0]])
    points = faces[:, None, :2] + (faces[:, None, 2:] - faces[:, None, :2]) * torch.tensor(
        [[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]]
    )
    targets = TargetAssigner(cfg, (size, size))([faces, torch.zeros(0, 4)], [points, None])
    assert targets.landmark_valid.any() and not targets.labels[1].eq(POSITIVE).any()

    output = model(torch.randn(2, 3, size, size))
    terms = multitask_loss(output, targets, cfg)
    terms.total.backward()

    for head in (model.ClassHead, model.BboxHead, model.LandmarkHead):
        for name, param in head.named_parameters():
            assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert all(p.grad is not None for p in model.body.parameters())
    assert all(torch.isfinite(t) for t in terms)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_terms_stay_on_the_input_device(device):
    targets = AnchorTargets(*(t.to(device) for t in make_targets([1, 0, 0, -1])))
    output = RetinaFaceOutput(*(t.to(device) for t in make_output(face_logits([1.0, 0.0, 0.0, 0.0]))[:3]))
    terms = multitask_loss(output, targets, PAPER, pixel=torch.tensor(1.0, device=device))
    assert all(t.device.type == device for t in terms)
