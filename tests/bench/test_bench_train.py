"""rfcore.bench.train on a tiny setting: the figures are there and consistent."""

import pytest
import torch

from rfcore.bench.train import bench_train, format_train_report, memory_batch


def test_memory_batch_has_faces_inside_the_images():
    batch = memory_batch("mobilenet0.25", batch=3, faces=4, size=64)
    assert batch.images.shape == (3, 3, 64, 64) and batch.faces.num_images == 3
    assert len(batch.faces.boxes) == 12
    assert batch.faces.boxes.min() >= 0 and batch.faces.boxes.max() <= 64


@pytest.mark.slow
def test_bench_train_reports_speed_and_the_share_of_targets_and_loss():
    threads = torch.get_num_threads()
    result = bench_train(batch=2, faces=3, size=64, threads=1, repeats=2)
    assert torch.get_num_threads() == threads  # restored
    assert result["images_per_second"] == pytest.approx(2 / (result["step_ms"] / 1000))
    assert 0 < result["share"] == pytest.approx((result["assign_ms"] + result["loss_ms"]) / result["step_ms"])
    report = format_train_report(result)
    assert "images/s" in report and "goal: target assignment + loss < 10%" in report



@pytest.mark.slow
def test_bench_train_with_mesh_reports_what_the_branch_adds():
    result = bench_train(batch=2, faces=3, size=64, threads=1, repeats=1, mesh=True)
    assert result["mesh_images_per_second"] == pytest.approx(2 / (result["mesh_step_ms"] / 1000))
    assert result["mesh_overhead"] > -1 and result["mesh_step_ms"] > 0
    assert "goal: the mesh branch adds < 15%" in format_train_report(result)


@pytest.mark.slow
def test_bench_recipe_puts_the_recorded_run_next_to_the_paper_setting():
    from dataclasses import replace

    from rfcore.bench.train import bench_recipe, format_recipe_report
    from rfcore.train.config import FROM_SCRATCH

    recipe = replace(FROM_SCRATCH, image_size=64, batch_size=2, num_images=10, epochs=3)
    result = bench_recipe(recipe, repeats=1, paper_batch=1, paper_faces=2)
    assert result["recipe_images_per_second"] == pytest.approx(2 / (result["recipe_step_ms"] / 1000))
    assert result["ratio"] == pytest.approx(result["recipe_images_per_second"] / result["paper_images_per_second"])
    assert (result["size"], result["paper_size"], result["run_steps"]) == (64, 640, 15)
    assert result["kept_bytes"] == 10 * 64 * 64 * 3 and result["render_s"] > 0 and result["load_ms"] > 0
    report = format_recipe_report(result)
    assert "images/s" in report and "rendered once per run" in report and "15 steps" in report
