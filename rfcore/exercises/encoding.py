"""Exercises of notebook 03: box and landmark targets relative to anchors, and their decoding."""

from __future__ import annotations

import torch

from rfcore.boxes import decode_landmarks, encode_boxes, encode_landmarks, xyxy_to_cxcywh
from rfcore.exercises.check import Case, Verdict, random_boxes, run_check, seeded

VARIANCES = (0.1, 0.2)
"""The variances of the public RetinaFace recipe; the cases also use others, to tell v_0 from v_1."""


def random_anchors(boxes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``(N, 4)`` anchors ``(cx, cy, w, h)`` near each box, as a matched anchor would be."""
    faces = xyxy_to_cxcywh(boxes)
    jitter = 1 + 0.3 * (torch.rand(boxes.shape, generator=generator) - 0.5)  # (N, 4) factors in [0.85, 1.15]
    return faces * jitter


def random_landmarks(boxes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``(N, 5, 2)`` points inside each box."""
    where = torch.rand(boxes.shape[0], 5, 2, generator=generator)
    return boxes[:, None, :2] + where * (boxes[:, None, 2:] - boxes[:, None, :2])


def check_encode_boxes(student_encode_boxes) -> Verdict:
    """Check ``encode_boxes(boxes (N, 4) xyxy, anchors (N, 4) cxcywh, variances) -> (N, 4)`` targets."""
    generator = seeded(4)
    boxes = random_boxes(6, generator)
    cases = [
        Case("a face equal to its anchor", (torch.tensor([[10.0, 20.0, 30.0, 60.0]]),
                                            torch.tensor([[20.0, 40.0, 20.0, 40.0]]), VARIANCES),
             "a face the size of its anchor and centred on it has target zero"),
        Case("a face shifted and twice as wide", (torch.tensor([[12.0, 20.0, 52.0, 60.0]]),
                                                   torch.tensor([[20.0, 40.0, 20.0, 40.0]]), VARIANCES),
             "t_x = (g_x - a_x) / (v_0 a_w): the centre offset in units of v_0 anchor widths; "
             "t_w = log(g_w / a_w) / v_1"),
        Case("unequal variances", (boxes, random_anchors(boxes, generator), (0.5, 0.25)),
             "v_0 scales the centre offsets, v_1 the log size ratios"),
        Case("six random faces", (boxes, random_anchors(boxes, generator), VARIANCES)),
    ]
    return run_check("encode_boxes", student_encode_boxes, encode_boxes, cases)


def landmark_cases(generator: torch.Generator) -> list[tuple]:
    """Arguments ``(landmarks (N, 5, 2), anchors (N, 4), variances)`` for the landmark exercises."""
    boxes = random_boxes(4, generator)
    anchor = torch.tensor([[50.0, 50.0, 20.0, 40.0]])
    return [
        (anchor[:, None, :2].expand(1, 5, 2).clone(), anchor, VARIANCES),
        (torch.tensor([[[40.0, 40.0], [60.0, 40.0], [50.0, 50.0], [42.0, 60.0], [58.0, 60.0]]]), anchor, VARIANCES),
        (random_landmarks(boxes, generator), random_anchors(boxes, generator), (0.5, 0.25)),
        (random_landmarks(boxes, generator), random_anchors(boxes, generator), VARIANCES),
    ]


LANDMARK_CASES = ("five points on the anchor centre", "a face on a 20 x 40 anchor", "unequal variances",
                  "four random faces")
LANDMARK_HINTS = ("a point on the anchor centre has target zero",
                  "x offsets divide by v_0 times the anchor width, y offsets by v_0 times its height; the result "
                  "is flat: (l_1x, l_1y, ..., l_5x, l_5y)",
                  "landmarks use v_0 only; v_1 is for the log of the box size", "")


def check_encode_landmarks(student_encode_landmarks) -> Verdict:
    """Check ``encode_landmarks(landmarks (N, 5, 2), anchors (N, 4), variances) -> (N, 10)`` targets."""
    args = landmark_cases(seeded(5))
    cases = [Case(name, a, hint) for name, a, hint in zip(LANDMARK_CASES, args, LANDMARK_HINTS)]
    return run_check("encode_landmarks", student_encode_landmarks, encode_landmarks, cases)


def check_decode_landmarks(student_decode_landmarks) -> Verdict:
    """Check ``decode_landmarks(targets (N, 10), anchors (N, 4), variances) -> (N, 5, 2)``: the round trip.

    The targets are rfcore's encodings of known landmarks, so a right answer gives those landmarks back.
    """
    args = landmark_cases(seeded(5))
    cases = [Case(f"round trip: {name}", (encode_landmarks(*a), a[1], a[2]),
                  "decoding undoes encoding: multiply by v_0 times the anchor size, then add the anchor centre")
             for name, a in zip(LANDMARK_CASES, args)]
    return run_check("decode_landmarks", student_decode_landmarks, decode_landmarks, cases)
