"""rfcore.progress: a bar redraws in place on a terminal and writes whole lines to a pipe or a log file."""

import io
import sys

from rfcore import progress
from rfcore.progress import LineStream, progress_bar


class Pipe(io.StringIO):
    def isatty(self):
        return False


def test_redraws_become_lines_without_carriage_returns():
    sink = io.StringIO()
    stream = LineStream(sink)
    for text in ("\r", "\rdetect:  10%|#   | 1/10", "\rdetect: 100%|####| 10/10", "\n"):
        stream.write(text)
    assert sink.getvalue() == "detect:  10%|#   | 1/10\ndetect: 100%|####| 10/10\n"


def test_a_bar_on_a_pipe_writes_few_whole_lines(monkeypatch):
    pipe = Pipe()
    monkeypatch.setattr(sys, "stderr", pipe)
    monkeypatch.setattr(progress, "LOG_INTERVAL", 3600.0)
    for _ in progress_bar(range(1000), desc="detect", unit="image"):
        pass
    lines = pipe.getvalue().splitlines()
    assert "\r" not in pipe.getvalue()
    assert 1 <= len(lines) <= 3 and lines[-1].startswith("detect: 100%") and "1000/1000" in lines[-1]


def test_disable_none_hides_the_bar_off_a_terminal_as_tqdm_does(monkeypatch):
    pipe = Pipe()
    monkeypatch.setattr(sys, "stderr", pipe)
    for _ in progress_bar(range(10), disable=None):
        pass
    assert pipe.getvalue() == ""
