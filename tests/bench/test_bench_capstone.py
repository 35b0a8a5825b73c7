"""``rfcore bench capstone``: its report and its arguments (the benchmark itself takes minutes: run it by hand)."""

import pytest

from rfcore.bench.capstone import format_capstone_report
from rfcore.cli import main


def test_the_report_states_time_ap_goal_load_and_the_step_ratio():
    report = format_capstone_report({
        "wall_seconds": 250.0, "cpu_seconds": 200.0, "training_seconds": 240.0, "ap": 0.95, "steps": 700, "goal_met": True,
        "load_before": 1.5, "load_after": 2.0, "cores": 2, "threads": 1, "workers": 1,
        "step_seconds": {"learner's parts": 0.2, "rfcore": 0.16}, "step_ratio": 1.25})
    assert "250 s wall (4.2 min) for 700 steps, 200 s of CPU time" in report and "AP 0.950" in report
    assert "goal (AP >= 0.9 within 5 min): met" in report
    assert "load average (1 min) 1.5 before, 2.0 after" in report
    assert "learner's parts 200 ms, rfcore's 160 ms (medians; ratio 1.25)" in report


@pytest.mark.parametrize("flag", ["--steps", "--threads", "--repeats"])
def test_a_count_below_one_is_refused_in_one_sentence(flag, capsys):
    with pytest.raises(SystemExit, match=f"rfcore bench capstone: {flag} must be at least 1, got 0"):
        main(["bench", "capstone", flag, "0"])
