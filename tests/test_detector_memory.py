"""Bounded memory in rfcore.detect: the default long-edge cap, reduced JPEG decoding, the pixel limit and
out-of-memory errors; the weights checks that name the problem (folder, preset, NaN)."""

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torchvision.ops import box_iou

from rfcore.assets import IMAGES
from rfcore.bench.memory import PEAK_GOAL_BYTES, peak_rss, write_large_image
from rfcore.detect_config import DEFAULT_MAX_SIZE
from rfcore.detector import Detector, TTAConfig
from rfcore.image import read_image
from rfcore.weights import DEFAULT_WEIGHTS
from rfcore.weights_io import save_weights


@pytest.fixture(scope="module")
def detector():
    return Detector(max_size=960)


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory):
    """group.jpg enlarged four times (3840x2160), as a JPEG."""
    path = tmp_path_factory.mktemp("big") / "group_x4.jpg"
    image = cv2.resize(cv2.imread(str(IMAGES / "group.jpg")), (3840, 2160), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(path), image)
    return path


def boxes(faces):
    return torch.tensor([face.box for face in faces]).reshape(-1, 4)


@pytest.mark.slow
def test_the_default_cap_leaves_the_bundled_images_and_the_paper_scales_alone():
    default, uncapped = Detector(), Detector(max_size=0)
    assert default.max_size == DEFAULT_MAX_SIZE == 4096
    for name in ("group.jpg", "grace_hopper.jpg", "astronaut.jpg"):
        size = read_image(IMAGES / name).shape[:2]
        assert default.largest_input_edge(size) == uncapped.largest_input_edge(size) == max(size)
    tta = Detector(tta=TTAConfig())
    assert tta.largest_input_edge((540, 960)) == round(1700 * 960 / 540) < DEFAULT_MAX_SIZE
    assert Detector(max_size=None).largest_input_edge((20000, 20000)) == 20000
    assert default.largest_input_edge((20000, 20000)) == 4096


@pytest.mark.slow
def test_a_large_jpeg_is_decoded_reduced_and_faces_come_back_in_its_pixels(detector, big_jpeg):
    image, size = detector.load(big_jpeg)
    assert image.shape == (540, 960, 3) and size == (2160, 3840)  # decoded at 1/4, just the network input
    reduced = detector.detect(big_jpeg)
    full = detector.detect(read_image(big_jpeg), color="RGB")  # decoded whole, then shrunk
    small = detector.detect(IMAGES / "group.jpg")
    assert len(reduced) == len(full) >= 8
    assert box_iou(boxes(reduced), boxes(full)).diagonal().min() > 0.9
    assert box_iou(boxes(reduced), 4 * boxes(small)).max(dim=1).values.min() > 0.8


def test_an_image_over_the_pixel_limit_is_refused_by_the_api(tmp_path, detector):
    path = tmp_path / "huge.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR" + (20000).to_bytes(4, "big") * 2 + b"\x08\x02\0\0\0")
    with pytest.raises(ValueError, match=r"huge.png is 20000x20000 pixels .*--max-pixels 400000000"):
        detector.detect(path)
    with pytest.raises(ValueError, match="max_pixels must be None, 0 or a positive int"):
        Detector(max_pixels=-1)


def test_running_out_of_memory_is_a_memory_error_naming_the_size_and_what_to_lower(monkeypatch):
    detector = Detector()

    def out_of_memory(images):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 7516192768 bytes")

    monkeypatch.setattr(detector, "model", out_of_memory)
    with pytest.raises(MemoryError) as caught:
        detector.detect(np.zeros((6000, 8000, 3), np.uint8), color="RGB")
    assert str(caught.value) == ("out of memory detecting faces on an image of 8000x6000 pixels (network input long "
                                 "edge 4096); lower max_size (command line: --max-size, default 4096)")


def test_a_weights_folder_names_the_files_inside(tmp_path):
    save_weights(load_file(DEFAULT_WEIGHTS), tmp_path / "weights.safetensors")
    with pytest.raises(IsADirectoryError, match=rf"weights {tmp_path} is a folder, not a file \(it holds "
                                                rf"weights.safetensors\): pass the file itself, e.g. --weights "
                                                rf"{tmp_path}/weights.safetensors"):
        Detector(tmp_path)


def test_a_preset_mismatch_says_what_the_file_holds():
    with pytest.raises(ValueError) as caught:
        Detector(preset="resnet50")
    assert str(caught.value) == (f"{DEFAULT_WEIGHTS}: these weights are mobilenet0.25 (file metadata), not resnet50: "
                                 "leave out the preset (--preset) to use the file's")


def test_weights_that_are_not_finite_are_refused(tmp_path):
    state = load_file(DEFAULT_WEIGHTS)
    broken = {key: value.float().fill_(float("nan")) if value.is_floating_point() else value
              for key, value in state.items()}
    save_weights(broken, tmp_path / "nan.safetensors")
    floating = sum(value.is_floating_point() for value in state.values())
    with pytest.raises(ValueError, match=rf"nan.safetensors: {floating} of {len(state)} tensors hold NaN or "
                                         r"infinite values \(e.g. \S+\), so nothing would be detected.*use an "
                                         r"earlier checkpoint"):
        Detector(tmp_path / "nan.safetensors")


@pytest.mark.slow
def test_peak_memory_of_detect_on_a_6000_square_jpeg_stays_under_the_goal(tmp_path):
    """Peak resident memory of `rfcore detect` in a fresh process, as `rfcore bench memory` measures it."""
    path = write_large_image(tmp_path / "large.jpg", 6000)
    peak, status, _ = peak_rss(["detect", str(path)])
    assert status == 0 and peak < PEAK_GOAL_BYTES
    huge = tmp_path / "huge.png"
    huge.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR" + (20000).to_bytes(4, "big") * 2 + b"\x08\x02\0\0\0")
    peak, status, message = peak_rss(["detect", str(huge)])
    assert status == 1 and "over the limit of 100 megapixels" in message and peak < PEAK_GOAL_BYTES / 2
