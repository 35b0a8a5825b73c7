"""rfcore.bench.train on a tiny setting: the figures are there and consistent."""

import pytest
import torch

from rfcore.bench.train import bench_train, format_train_report, memory_batch


def test_memory_batch_has_faces_inside_the_images():
    batch = memory_batch("mobilenet0.25", batch=3, faces=4, size=64)
    assert batch.images.shape == (3, 3, 64, 64) and batch.faces.num_images == 3
    assert len(batch.faces.boxes) == 12
    assert batch.faces.boxes.min() >= 0 and batch.faces.boxes.max() <= 64


def test_bench_train_reports_speed_and_the_share_of_targets_and_loss():
    threads = torch.get_num_threads()
    result = bench_train(batch=2, faces=3, size=64, threads=1, repeats=2)
    assert torch.get_num_threads() == threads  # restored
    assert result["images_per_second"] == pytest.approx(2 / (result["step_ms"] / 1000))
    assert 0 < result["share"] == pytest.approx((result["assign_ms"] + result["loss_ms"]) / result["step_ms"])
    report = format_train_report(result)
    assert "images/s" in report and "goal: target assignment + loss < 10%" in report



def test_bench_train_with_mesh_reports_what_the_branch_adds():
    result = bench_train(batch=2, faces=3, size=64, threads=1, repeats=1, mesh=True)
    assert result["mesh_images_per_second"] == pytest.approx(2 / (result["mesh_step_ms"] / 1000))
    assert result["mesh_overhead"] > -1 and result["mesh_step_ms"] > 0
    assert "goal: the mesh branch adds < 15%" in format_train_report(result)
