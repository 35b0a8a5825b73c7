"""rfcore.viz.train: reading a training log and plotting its loss terms."""

import json

import numpy as np
import pytest
from matplotlib.figure import Figure

from rfcore.viz.train import moving_average, plot_loss_terms, read_log

RECORDS = [{"step": s, "total": 10.0 / s, "cls": 1.0 / s, "box": 2.0, "pts": 3.0} for s in range(1, 7)]


def test_read_log_from_file_or_folder(tmp_path):
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    assert read_log(tmp_path) == RECORDS
    assert read_log(tmp_path / "log.jsonl") == RECORDS


def test_a_folder_without_a_log_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"no training log at {tmp_path / 'missing' / 'log.jsonl'}"):
        read_log(tmp_path / "missing" / "log.jsonl")
    (tmp_path / "run").mkdir()
    with pytest.raises(FileNotFoundError, match="log.jsonl"):
        read_log(tmp_path / "run")


def test_moving_average_known_values():
    np.testing.assert_allclose(moving_average([1, 2, 3, 4], 2), [1.0, 1.5, 2.5, 3.5])
    np.testing.assert_allclose(moving_average([1, 2, 3], 1), [1, 2, 3])
    np.testing.assert_allclose(moving_average([2, 4], 10), [2, 3])
    with pytest.raises(ValueError, match="window"):
        moving_average([1.0], 0)


def test_plot_loss_terms_one_panel_per_term():
    fig = plot_loss_terms(RECORDS, ("total", "cls", "box"), window=2, title="run")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3
    raw, smooth = fig.axes[0].lines
    np.testing.assert_allclose(raw.get_xdata(), range(1, 7))
    np.testing.assert_allclose(raw.get_ydata(), [10.0 / s for s in range(1, 7)])
    np.testing.assert_allclose(smooth.get_ydata()[1], (10.0 + 5.0) / 2)


def test_plot_loss_terms_rejects_bad_records():
    with pytest.raises(ValueError, match="no log records"):
        plot_loss_terms([])
    with pytest.raises(ValueError, match="pixel"):
        plot_loss_terms(RECORDS, ("total", "pixel"))
