"""Images in, network input out: files read within a memory budget, arrays checked, preprocessing.

Training (:mod:`rfcore.data`) and detection (:mod:`rfcore.detector`) share this module:
:func:`read_rgb` / :func:`read_image` read files, :func:`to_rgb` checks arrays and fixes the colour
order, :func:`input_size` chooses the network input size, :func:`preprocess` makes the network input
(BGR minus the mean) and :func:`network_input_to_rgb` undoes it; :func:`letterbox` fits an image into a
fixed size (benchmarks, int8 calibration). Reading is bounded: the size in the file's header
(:func:`rfcore.headers.header_size`) is checked against :data:`MAX_DECODE_PIXELS` before decoding, a JPEG
that will be shrunk is decoded smaller by libjpeg itself (:func:`jpeg_reduction`), and a truncated JPEG
is refused instead of decoding to a grey lower part.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from rfcore.detect_config import MAX_DECODE_PIXELS, OPENCV_MAX_PIXELS
from rfcore.files import check_file
from rfcore.headers import FORMATS, JPEG_SOI, JpegLayout, forged_size, header_size

REDUCED_FLAGS = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def check_jpeg_complete(path) -> None:
    """Raise ``ValueError`` if ``path`` is a JPEG whose image data is cut short."""
    with open(path, "rb") as f:
        if f.read(2) != JPEG_SOI:
            return
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            if not JpegLayout(data).complete():
                raise ValueError(f"{path} is a truncated JPEG (the file ends inside the image data, e.g. a cut "
                                 "download or a full disk): copy or export it again")


def check_header(path) -> tuple[str, tuple[int, int]]:
    """The format and ``(height, width)`` of an image file, from its header.

    Raises:
        ValueError: For a format whose size rfcore does not read first, or a damaged header.
    """
    kind, size = header_size(path)
    if not kind:
        raise ValueError(f"{path} is not a readable image in a format rfcore reads ({FORMATS})")
    if size is None or 0 in size:
        raise ValueError(f"{path} is a {kind.upper()} file whose header is damaged or cut short (no image size)")
    return kind, size


def jpeg_reduction(size: tuple[int, int], long_edge: int | None) -> int:
    """The largest of 8, 4, 2 whose reduced image still has a long edge of at least ``long_edge``; else 1.

    libjpeg's reduced image is ``ceil(side / k)`` pixels per side.
    """
    if long_edge is None:
        return 1
    return next((k for k in (8, 4, 2) if -(-max(size) // k) >= long_edge), 1)


def check_pixels(path, size: tuple[int, int], reduction: int, max_pixels: int | None) -> None:
    """Raise ``ValueError`` if decoding ``size`` reduced by ``reduction`` exceeds ``max_pixels``.

    A ``max_pixels`` of 0 or ``None`` stands for OpenCV's own limit, :data:`~rfcore.detect_config.OPENCV_MAX_PIXELS`.
    """
    height, width = (-(-side // reduction) for side in size)
    if height * width > OPENCV_MAX_PIXELS:
        raise ValueError(f"{path} is {size[1]}x{size[0]} pixels, more than OpenCV decodes "
                         f"({OPENCV_MAX_PIXELS:,} pixels): shrink it with another tool first")
    if max_pixels and height * width > max_pixels:
        shrink = f", decoded at 1/{reduction} size: {width}x{height}" if reduction > 1 else ""
        raise ValueError(
            f"{path} is {size[1]}x{size[0]} pixels{shrink} ({height * width / 1e6:.0f} megapixels, "
            f"{3 * height * width / 1e9:.1f} GB decoded), over the limit of {max_pixels / 1e6:g} megapixels; "
            f"to read it anyway raise the limit (command line: --max-pixels {height * width}, or 0 for OpenCV's own; "
            "Python: max_pixels=...)"
        )


OUT_OF_MEMORY_MESSAGES = ("can't allocate memory", "Insufficient memory", "out of memory", "Unable to allocate")
"""Words of torch's, OpenCV's and NumPy's allocation failures (torch and OpenCV raise RuntimeError / cv2.error)."""


def is_out_of_memory(err: BaseException) -> bool:
    """True for a ``MemoryError`` or an allocation failure reported by torch or OpenCV."""
    return isinstance(err, MemoryError) or (
        isinstance(err, (RuntimeError, cv2.error)) and any(m in str(err) for m in OUT_OF_MEMORY_MESSAGES)
    )


def check_image_file(
    path, long_edge: Callable[[tuple[int, int]], int] | None = None, max_pixels: int | None = MAX_DECODE_PIXELS
) -> tuple[tuple[int, int], int]:
    """Everything :func:`read_rgb` checks before decoding, without decoding.

    Returns:
        The file's ``(height, width)`` and the JPEG reduction it will be decoded at (1, 2, 4 or 8).

    Raises:
        FileNotFoundError, IsADirectoryError, ValueError: As :func:`read_rgb`, except for what only decoding finds.
    """
    path = check_file(path, "an image")
    kind, size = check_header(path)
    reduction = 1
    if kind == "jpeg":
        check_jpeg_complete(path)
        reduction = jpeg_reduction(size, long_edge(size)) if long_edge else 1
    check_pixels(path, size, reduction, max_pixels)
    forged = forged_size(path, kind, size)
    if forged:
        raise ValueError(f"{path}: {forged}")
    return size, reduction


def read_rgb(
    path, long_edge: Callable[[tuple[int, int]], int] | None = None, max_pixels: int | None = MAX_DECODE_PIXELS
) -> tuple[np.ndarray, tuple[int, int]]:
    """Read an image file as RGB, at reduced size if it will be shrunk anyway, within a pixel limit.

    Args:
        path: The image file.
        long_edge: ``(height, width)`` of the file -> the long edge the
            image will be shrunk to; a JPEG is then decoded at 1/2, 1/4 or
            1/8 size when that is still at least this long. ``None``: full size.
        max_pixels: Refuse images that would decode to more pixels; 0 or
            ``None`` lifts the limit.

    Returns:
        ``(image, size)``: ``(h, w, 3)`` uint8 RGB as decoded, and the
        file's ``(height, width)``; they differ when the JPEG was reduced.

    Raises:
        FileNotFoundError, IsADirectoryError: For a missing file or a folder.
        ValueError: For a file OpenCV cannot decode, a format whose size
            rfcore cannot read first, a damaged or forged header, a truncated
            JPEG, or one over ``max_pixels``, naming the file.
        MemoryError: If decoding runs out of memory.
    """
    path = Path(path)
    size, reduction = check_image_file(path, long_edge, max_pixels)
    try:
        bgr = cv2.imread(str(path), REDUCED_FLAGS.get(reduction, cv2.IMREAD_COLOR))
    except cv2.error as err:
        if is_out_of_memory(err):
            raise MemoryError(f"{path}: out of memory while decoding it; free memory or lower --max-pixels") from None
        raise ValueError(f"{path} is not a readable image (OpenCV: {getattr(err, 'err', '') or 'error'})") from None
    if bgr is None:
        raise ValueError(f"{path} is not a readable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size


# ---------------------------------------------------------------- arrays and network input


def read_image(path, max_pixels: int | None = MAX_DECODE_PIXELS) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB at full size (:func:`rfcore.image.read_rgb`).

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        IsADirectoryError: If it is a directory.
        ValueError: If OpenCV cannot decode it as an image, it is a truncated
            JPEG, or it has more than ``max_pixels`` pixels.
    """
    return read_rgb(path, max_pixels=max_pixels)[0]


def to_rgb(image: np.ndarray, color: str | None) -> np.ndarray:
    """Validate an image array and return it as ``(H, W, 3)`` uint8 RGB.

    Args:
        image: uint8 ``(H, W)`` greyscale (replicated to three channels),
            ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` (alpha dropped).
        color: ``"RGB"`` or ``"BGR"``: the order of the first three channels.
            Required for colour arrays; ignored for greyscale.

    Raises:
        ValueError: Wrong dtype, shape, an empty image, or a missing or
            unknown ``color``.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 with values 0..255, got dtype {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ValueError(f"image must have shape (H, W), (H, W, 3) or (H, W, 4), got {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty: shape {image.shape}")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    order = color.upper() if isinstance(color, str) else color
    if order not in ("RGB", "BGR"):
        raise ValueError(f"color must be 'RGB' or 'BGR' for a {image.shape[2]}-channel array, got {color!r}")
    rgb = image[:, :, :3] if order == "RGB" else image[:, :, 2::-1]
    return np.ascontiguousarray(rgb)


def as_batch(images) -> tuple[list, bool]:
    """``(list of images, was_single)``: a list, a tuple or an ``(N, H, W, C)`` array is a batch."""
    if isinstance(images, (list, tuple)):
        return list(images), False
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images), False
    return [images], True


def input_size(height: int, width: int, short_edge: int | None, max_size: int | None) -> tuple[int, int]:
    """Network input size: short edge scaled to ``short_edge``, long edge capped at ``max_size``.

    ``None`` (or a ``max_size`` of 0) leaves that constraint out; with both left out the size is unchanged.
    """
    factor = 1.0 if short_edge is None else short_edge / min(height, width)
    if max_size and factor * max(height, width) > max_size:
        factor = max_size / max(height, width)
    return max(1, round(height * factor)), max(1, round(width * factor))


def preprocess(images: Sequence[np.ndarray], mean_bgr: Sequence[float]) -> torch.Tensor:
    """Network input from same-size RGB images: BGR, minus the mean, no scaling.

    Args:
        images: ``N`` arrays ``(H, W, 3)`` uint8 RGB.
        mean_bgr: Per-channel mean subtracted, BGR order (``cfg.pixel_mean_bgr``).

    Returns:
        ``(N, 3, H, W)`` float32 in channels_last memory layout (the layout
        the fused model runs fastest on, and free to get from HWC images).

    Raises:
        ValueError: If the images differ in shape.
    """
    shapes = {image.shape for image in images}
    if len(shapes) != 1:
        raise ValueError(f"preprocess needs images of one size, got shapes {sorted(shapes)}")
    mean = tuple(float(m) for m in mean_bgr)  # an OpenCV scalar: one value per channel
    batch = np.empty((len(images), *images[0].shape), np.float32)  # (N, H, W, 3)
    for image, bgr in zip(images, batch):
        # OpenCV swaps the channels and subtracts into the batch in one pass each, in place: no new arrays
        cv2.subtract(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), mean, dst=bgr, dtype=cv2.CV_32F)
    return torch.from_numpy(batch).permute(0, 3, 1, 2)  # (N, H, W, 3) -> (N, 3, H, W), channels_last


def network_input_to_rgb(images: torch.Tensor, mean_bgr: Sequence[float]) -> torch.Tensor:
    """Undo :func:`rfcore.image.preprocess`: ``(N, 3, H, W)`` BGR minus the mean -> RGB in ``[0, 1]``."""
    mean = torch.tensor(mean_bgr, dtype=images.dtype, device=images.device)[:, None, None]  # (3, 1, 1)
    return (images + mean).flip(1) / 255.0


def letterbox(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale an image to fit ``size = (H, W)`` and centre it on black.

    Args:
        image: ``(h, w, 3)`` uint8.
        size: Output ``(H, W)``.

    Returns:
        ``(H, W, 3)`` uint8.
    """
    height, width = size
    factor = min(height / image.shape[0], width / image.shape[1])
    new_h, new_w = round(image.shape[0] * factor), round(image.shape[1] * factor)
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    return canvas
