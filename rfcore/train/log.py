"""The training log: one JSON line per logged step, appended and flushed line by line.

Two kinds of line share the file, both with a ``step``: a step's loss terms
(:func:`log_record`) and, with ``--val``, a validation result
(``{"step": s, "validation": {...}}``, :mod:`rfcore.train.validation`);
:func:`step_records` and :func:`validation_records` tell them apart.

A crash or a full disk can cut the last line short; :func:`parse_log` drops
such a line with a note, and :func:`trim_log` rewrites the log to the steps
a resumed run keeps.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from rfcore.files import write_text
from rfcore.loss import LossTerms

TERMS = LossTerms._fields
"""Names of the logged loss terms: ``total``, ``cls``, ``box``, ``pts``, ``pixel``."""


def parse_log(path: Path) -> tuple[list[dict], str | None]:
    """The records of a ``log.jsonl``, and a note if its last line was torn (and dropped).

    A crash or a full disk can cut the last line short; that line is
    dropped with a note. Any other line that is not a JSON record is an error.

    Returns:
        ``(records, note)``; ``note`` is ``None`` when every line was whole.

    Raises:
        ValueError: Naming the file and the line that cannot be read.
    """
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True) if path.is_file() else []
    records, note = [], None
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("step"), int) or not line.endswith("\n"):
                raise ValueError("not a whole log record")
        except ValueError as err:
            if number < len(lines):
                raise ValueError(f"{path} line {number} is not a log record ({err}): remove that line, "
                                 "or the file, and resume again") from None
            note = f"{path} line {number} was cut short (a crash or a full disk); dropped it"
            continue
        records.append(record)
    return records, note


def trim_log(path: Path, step: int) -> str | None:
    """Keep the log lines of steps up to ``step``: later ones are about to be trained again, a torn one is dropped.

    Returns:
        A note if the last line was torn (see :func:`parse_log`), else ``None``.
    """
    if not path.is_file():
        return None
    records, note = parse_log(path)
    write_text(path, "".join(json.dumps(record) + "\n" for record in records if record["step"] <= step))
    return note


def log_record(step: int, epoch: int, lr: float, values: torch.Tensor, seconds: float) -> dict:
    """One log line: the step's number (from 1), epoch, learning rate, images, time and loss terms."""
    terms = dict(zip(TERMS, values.tolist()))
    return {"step": step, "epoch": epoch, "lr": lr, "images": int(values[len(TERMS)]),
            "seconds": round(seconds, 4), **terms}



def step_records(records: list[dict]) -> list[dict]:
    """The loss-term lines of a log's records (:func:`parse_log`)."""
    return [record for record in records if "validation" not in record]


def validation_records(records: list[dict]) -> list[dict]:
    """The validation lines of a log's records: ``{"step": s, "validation": {...}}``."""
    return [record for record in records if "validation" in record]
