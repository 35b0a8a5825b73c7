"""Tests of rfcore.bench.cli: the start-up benchmark runs fresh processes and reports against the goal."""

from rfcore.bench.cli import COMMANDS, bench_cli, format_cli_report

PEER = "python -c 'import rfcore' (peer)"


def test_bench_cli_times_every_command_in_fresh_processes():
    medians = bench_cli(repeats=1)
    assert list(medians) == list(COMMANDS) and all(seconds > 0 for seconds in medians.values())


def test_the_report_gives_ratios_to_the_peer_and_the_goal():
    report = format_cli_report({"rfcore --help": 0.3, "rfcore detect --help": 0.6, PEER: 0.15}, 10)
    assert "rfcore --help                      0.300 s   2.00x the peer" in report
    assert "0.600 s   4.00x" in report and "goal: rfcore --help under 0.5 s: met (0.300 s)" in report
    missed = format_cli_report({"rfcore --help": 0.7, "rfcore detect --help": 0.7, PEER: 0.1}, 10)
    assert "MISSED (0.700 s)" in missed
