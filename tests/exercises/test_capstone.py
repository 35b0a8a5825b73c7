"""The capstone names a wrong part before it trains, trains with the learner's parts only, and is drawn."""

import dataclasses

import pytest
import torch

from rfcore.exercises import capstone as cap
from rfcore.exercises.capstone import CHECKERS, CapstoneConfig, Parts, capstone, solution_parts, verify_parts
from rfcore.exercises.check import NOT_IMPLEMENTED, PASSED, WRONG
from rfcore.exercises.mistakes import MISTAKES
from rfcore.viz.capstone import plot_capstone

TINY = CapstoneConfig(images=8, batch_size=4, steps=3, warmup_steps=1, decay_steps=(2,), val_every=2, val_images=2,
                      final_images=3, workers=0)
"""A recipe of seconds: what the loop calls, not what it learns."""


def test_every_part_has_a_checker_and_a_mistake():
    assert list(CHECKERS) == [f.name for f in dataclasses.fields(Parts)]
    assert set(MISTAKES) == set(CHECKERS)


@pytest.mark.parametrize("part", sorted(MISTAKES))
def test_a_plausible_mistake_in_one_part_is_named_before_any_training(part, monkeypatch, capsys):
    monkeypatch.setattr(cap, "train", lambda *args: pytest.fail("trained despite a wrong part"))
    result = capstone(dataclasses.replace(solution_parts(), **{part: MISTAKES[part]}))
    assert result.failed == part and result.checks[part] == WRONG
    assert all(status == PASSED for name, status in result.checks.items() if name != part)
    assert result.ap is None and result.losses == [] and result.summary is None
    out = capsys.readouterr().out
    assert f"{part}: failed on the case '" in out and f"fix `{part}`" in out and "Nothing was trained" in out


def test_a_stub_stops_the_capstone_at_its_part(capsys):
    def stub(*args):
        raise NotImplementedError  # your code here

    statuses, failed = verify_parts(dataclasses.replace(solution_parts(), match=stub))
    assert failed == "match" and statuses["match"] == NOT_IMPLEMENTED
    assert list(statuses) == ["level_anchors", "iou", "match"]  # stops at the first failure


def test_skip_leaves_a_part_unchecked_and_names_unknown_parts():
    wrong = dataclasses.replace(solution_parts(), encode_boxes=MISTAKES["encode_boxes"])
    statuses, failed = verify_parts(wrong, skip=["encode_boxes"])
    assert failed is None and statuses["encode_boxes"] == "skipped"
    with pytest.raises(ValueError, match="skip names no part: \\['encode_box'\\]"):
        verify_parts(wrong, skip=["encode_box"])


def test_training_calls_the_learner_parts_and_nothing_else(monkeypatch):
    calls = {name: 0 for name in CHECKERS}

    def counted(name, function):
        def wrapper(*args):
            calls[name] += 1
            return function(*args)
        return wrapper

    parts = Parts(**{name: counted(name, getattr(solution_parts(), name)) for name in CHECKERS})
    for name in ("match_anchors", "label_anchors", "encode_boxes", "encode_landmarks", "decode_boxes", "nms"):
        monkeypatch.setattr(f"rfcore.boxes.{name}" if name != "nms" else "torchvision.ops.nms",
                            lambda *args, **kwargs: pytest.fail("rfcore's part used"), raising=False)
    monkeypatch.setattr(cap, "verify_parts", lambda parts, skip: ({n: PASSED for n in CHECKERS}, None))
    monkeypatch.setattr("rfcore.loss.multitask_loss", lambda *args: pytest.fail("rfcore's loss used"))
    result = capstone(parts, TINY)
    assert all(count > 0 for count in calls.values()), calls
    assert [r["step"] for r in result.validations] == [2, 3]
    assert [r["images"] for r in result.validations] == [2, 3]
    assert result.losses[-1]["step"] == 3 and set(result.losses[-1]) == {"step", "total", "cls", "box", "pts"}
    assert 0 <= result.ap <= 1 and result.summary["faces"]["all"] > 0
    faces = result.detect([cap.validation_set(1)[0].image])[0]
    assert all(0 < face.score <= 1 and len(face.landmarks) == 5 for face in faces)
    assert all(face.box[0] < face.box[2] and face.box[1] < face.box[3] for face in faces)
    assert "network" not in result.to_dict() and result.to_dict()["losses"] == result.losses
    assert not any(hasattr(cap, name) for name in ("multitask_loss", "match_anchors", "encode_boxes", "nms"))


def test_the_learner_anchors_follow_the_preset_layout():
    detector = cap.LearnerDetector(solution_parts(), cap.get_config("mobilenet0.25"), 0.35, 0.35)
    from rfcore.anchors import make_anchors

    assert torch.equal(detector.anchors(160), make_anchors(cap.get_config("mobilenet0.25"), (160, 160)))


def test_the_plot_draws_each_run_and_the_goal():
    runs = {"right": {"losses": [{"step": 10, "total": 9.0}, {"step": 20, "total": 5.0}],
                      "validations": [{"step": 20, "ap": 0.5}]},
            "wrong": {"losses": [{"step": 10, "total": 3.0}], "validations": []}}
    fig = plot_capstone(runs, steps=100)
    loss_ax, ap_ax = fig.axes
    assert len(loss_ax.lines) == 2 and loss_ax.get_xlim() == (0, 100)
    assert [line.get_label() for line in ap_ax.lines] == ["right", "goal 0.9"]
