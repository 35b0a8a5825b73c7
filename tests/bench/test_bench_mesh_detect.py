"""rfcore bench mesh, its detection part: what the mesh adds to Detector.detect (the plumbing, not the timings)."""

import pytest
import torch

from rfcore.bench.mesh import DETECT_GOAL, bench_mesh_detect, format_mesh_detect_report
from rfcore.cli import main
from rfcore.detector import Detector


@pytest.mark.slow
def test_both_detectors_time_the_ten_faces_of_the_same_image():
    threads = torch.get_num_threads()
    result = bench_mesh_detect(threads=1, repeats=1)
    assert torch.get_num_threads() == threads  # restored
    assert result["faces"] == 10 and result["size"] == (480, 640) and result["threads"] == 1
    assert result["without_ms"] > 0 and result["with_ms"] > 0
    assert result["ratio"] == pytest.approx(result["with_ms"] / result["without_ms"])
    assert result["goal"] == DETECT_GOAL == 1.10


@pytest.mark.parametrize("ratio, verdict", [(1.04, "+4.0%, met"), (1.25, "+25.0%, MISSED")])
def test_the_report_gives_the_goal_s_verdict(ratio, verdict):
    result = {"threads": 1, "size": (480, 640), "faces": 10, "without_ms": 20.0, "with_ms": 20.0 * ratio,
              "ratio": ratio, "goal": DETECT_GOAL}
    report = format_mesh_detect_report(result)
    assert "group.jpg at 640x480, 10 faces, 1 threads" in report
    assert report.splitlines()[-1] == f"goal: the mesh adds < 10% per image with up to 10 faces: {verdict}"


@pytest.mark.slow
def test_the_plain_detector_shares_the_network_and_gives_no_meshes():
    meshed = Detector(mesh=True, threshold=0.0, max_faces=3)
    plain = meshed.without_mesh()
    assert plain.model is meshed.model
    image = torch.randint(0, 256, (64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)).numpy()
    without, with_mesh = plain.detect(image, color="RGB"), meshed.detect(image, color="RGB")
    assert len(without) == len(with_mesh) == 3
    assert all(face.mesh is None for face in without) and all(face.mesh is not None for face in with_mesh)
    assert [face.box for face in without] == [face.box for face in with_mesh]


@pytest.mark.slow
def test_the_command_prints_the_detection_part_and_refuses_a_negative_count(capsys):
    args = ["bench", "mesh", "--batches", "1", "--repeats", "1", "--threads", "1"]
    assert main([*args, "--detect-repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "detection with the mesh: group.jpg at 640x480, 10 faces" in out and "goal: the mesh adds" in out
    with pytest.raises(SystemExit, match="--detect-repeats must be 0 or more, got -1"):
        main([*args, "--detect-repeats", "-1"])
