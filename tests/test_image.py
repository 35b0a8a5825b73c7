"""rfcore.image: header sizes, reduced JPEG decoding, the pixel limit before decoding, truncated JPEGs."""

import cv2
import numpy as np
import pytest

from rfcore import image
from rfcore.assets import IMAGES
from rfcore.image import header_size, is_out_of_memory, jpeg_reduction, preprocess, read_rgb


def write(path, image, *params):
    ok, data = cv2.imencode(path.suffix, image, list(params))
    assert ok
    path.write_bytes(data.tobytes())
    return path


def fake_png(path, width, height):
    """The signature and header chunk of a PNG claiming ``width x height``: enough to be refused unread."""
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + width.to_bytes(4, "big")
                     + height.to_bytes(4, "big") + b"\x08\x02\x00\x00\x00")
    return path


def test_header_size_of_png_jpeg_and_other_formats(tmp_path):
    image = np.zeros((30, 70, 3), np.uint8)
    assert header_size(write(tmp_path / "a.png", image)) == ("png", (30, 70))
    assert header_size(write(tmp_path / "a.jpg", image)) == ("jpeg", (30, 70))
    assert header_size(IMAGES / "group.jpg") == ("jpeg", (540, 960))


ENCODED = [(".gif", "gif", ()), (".tif", "tiff", ()), (".tiff", "tiff", (cv2.IMWRITE_TIFF_COMPRESSION, 1)),
           (".bmp", "bmp", ()), (".webp", "webp", ()), (".webp", "webp", (cv2.IMWRITE_WEBP_QUALITY, 101)),
           (".ppm", "pnm", ()), (".ppm", "pnm", (cv2.IMWRITE_PXM_BINARY, 0)), (".pgm", "pnm", ()),
           (".pbm", "pnm", ()), (".pam", "pnm", ()), (".pfm", "pnm", ()), (".ras", "sun", ())]
"""Every other format whose header rfcore reads, as OpenCV writes it (lossless WebP is quality 101)."""


@pytest.mark.parametrize(("suffix", "kind", "params"), ENCODED)
def test_header_size_of_every_format_rfcore_reads_agrees_with_the_decoder(tmp_path, suffix, kind, params):
    picture = (np.random.default_rng(0).random((30, 70, 3)) * 255).astype(np.uint8)
    if suffix in (".pgm", ".pbm"):
        picture = picture[:, :, 0]
    if suffix == ".pfm":
        picture = picture.astype(np.float32)
    path = write(tmp_path / f"a{suffix}", picture, *params)
    assert header_size(path) == (kind, (30, 70))
    assert read_rgb(path)[0].shape == (30, 70, 3)


def test_a_format_whose_size_rfcore_cannot_read_first_is_refused(tmp_path):
    path = tmp_path / "a.hdr"
    path.write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 60000 +X 60000\n")
    assert header_size(path) == ("", None)
    with pytest.raises(ValueError, match=rf"^{path} is not a readable image in a format rfcore reads \(PNG, JPEG, GIF, TIFF"):
        read_rgb(path)


@pytest.mark.parametrize(("long_edge", "expected"), [(None, 1), (5001, 1), (5000, 2), (4096, 2), (2000, 4), (1250, 8), (10, 8)])
def test_jpeg_reduction_never_goes_below_the_needed_long_edge(long_edge, expected):
    assert jpeg_reduction((10000, 6000), long_edge) == expected


def test_a_jpeg_that_will_be_shrunk_is_decoded_smaller(tmp_path):
    path = write(tmp_path / "big.jpg", np.full((800, 1200, 3), 128, np.uint8))
    image, size = read_rgb(path, lambda size: 300)
    assert image.shape == (200, 300, 3) and size == (800, 1200)
    image, size = read_rgb(path, lambda size: 301)  # a quarter would be too small: half
    assert image.shape == (400, 600, 3)
    assert read_rgb(path)[0].shape == (800, 1200, 3)
    png = write(tmp_path / "big.png", np.zeros((800, 1200, 3), np.uint8))
    assert read_rgb(png, lambda size: 300)[0].shape == (800, 1200, 3)  # only JPEG decodes reduced


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    path = fake_png(tmp_path / "huge.png", 20000, 20000)
    monkeypatch.setattr(image.cv2, "imread", lambda *a: pytest.fail("decoded"))
    with pytest.raises(ValueError) as caught:
        read_rgb(path)
    assert str(caught.value) == (
        f"{path} is 20000x20000 pixels (400 megapixels, 1.2 GB decoded), over the limit of 100 megapixels; to read "
        "it anyway raise the limit (command line: --max-pixels 400000000, or 0 for OpenCV's own; Python: max_pixels=...)")
    with pytest.raises(ValueError, match="over the limit of 1 megapixels"):
        read_rgb(path, max_pixels=1_000_000)


def test_the_pixel_limit_counts_a_reduced_jpeg_at_its_decoded_size(tmp_path):
    path = write(tmp_path / "big.jpg", np.zeros((800, 1200, 3), np.uint8))
    with pytest.raises(ValueError, match=r"1200x800 pixels, decoded at 1/2 size: 600x400 \(0 megapixels"):
        read_rgb(path, lambda size: 600, max_pixels=1000)
    assert read_rgb(path, lambda size: 150, max_pixels=20_000)[0].shape == (100, 150, 3)
    assert read_rgb(path, max_pixels=0)[0].shape == (800, 1200, 3)


def test_a_truncated_jpeg_is_refused_with_its_name(tmp_path):
    whole = (IMAGES / "group.jpg").read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match=rf"{path} is a truncated JPEG .*copy or export it again"):
        read_rgb(path)
    (tmp_path / "trailer.jpg").write_bytes(whole + b"\x00" * 64 + b"appended data")  # data after the end is fine
    assert read_rgb(tmp_path / "trailer.jpg")[0].shape == (540, 960, 3)


def test_unreadable_files_are_named(tmp_path):
    (tmp_path / "not.png").write_bytes(b"hello")
    with pytest.raises(ValueError, match="not.png is not a readable image"):
        read_rgb(tmp_path / "not.png")
    with pytest.raises(FileNotFoundError, match="missing.jpg does not exist"):
        read_rgb(tmp_path / "missing.jpg")


def test_out_of_memory_errors_of_torch_opencv_and_numpy_are_recognised():
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate "
                                         "memory: you tried to allocate 16000000000 bytes."))
    assert is_out_of_memory(cv2.error("OpenCV(4.10.0) (-4:Insufficient memory) Failed to allocate 1200000000 bytes"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("can't allocate memory"))


def test_preprocess_refuses_images_of_different_sizes():
    with pytest.raises(ValueError, match=r"preprocess needs images of one size, got shapes \[\(4, 6, 3\), \(5, 6, 3\)\]"):
        preprocess([np.zeros((4, 6, 3), np.uint8), np.zeros((5, 6, 3), np.uint8)], (104.0, 117.0, 123.0))
