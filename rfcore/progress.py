"""Progress bars that suit both a terminal and a log file.

On a terminal a tqdm bar redraws itself in place with carriage returns. In a
pipe or a file (``rfcore eval ... 2> log``, ``rfcore train ... 2> log``)
those redraws would pile up on one line, so there the bar prints one whole
line at most every :data:`LOG_INTERVAL` seconds instead.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tqdm

LOG_INTERVAL = 5.0
"""Seconds between progress lines when stderr is not a terminal."""


class LineStream:
    """A stream for tqdm that writes each redraw of the bar as one line of ``stream``."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").strip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable=None, **options) -> tqdm.tqdm:
    """A tqdm bar on stderr: redrawn in place on a terminal, a line every few seconds elsewhere.

    Args:
        iterable: What to iterate over, as for ``tqdm``.
        **options: Other ``tqdm`` options (``total``, ``unit``, ``desc`` ...);
            ``disable=None`` shows the bar on a terminal only, as in tqdm.
    """
    from tqdm import tqdm  # noqa: F811 (here, so that building the command line's parser stays light)

    if sys.stderr.isatty():
        return tqdm(iterable, dynamic_ncols=True, **options)
    if options.get("disable", False) is None:
        options["disable"] = True
    # no width limit: a log line keeps the whole postfix (a training run's losses)
    return tqdm(iterable, file=LineStream(sys.stderr), mininterval=LOG_INTERVAL, **options)
