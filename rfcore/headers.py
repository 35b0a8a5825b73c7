"""Image sizes from file headers, read before anything is decoded.

A decoder allocates what the header announces, so every format rfcore
reads has its header parsed here (:func:`header_size`): PNG, JPEG, GIF,
TIFF, BMP, WebP, the PNM family (PBM, PGM, PPM, PAM, PFM) and Sun raster.
Files in other formats OpenCV could decode are refused by the reader
(:func:`rfcore.image.read_rgb`), since their size would be known only
after the allocation. :func:`forged_size` catches a header that claims far
more pixels than the file's bytes can encode (a 30 kB JPEG claiming
65000x65000), from the densest each codec can be: one bit per 8x8 block
for Huffman-coded JPEG, deflate's 1032:1 for PNG, LZW's 4096 pixels per
3-bit code for GIF.
"""

from __future__ import annotations

import mmap
import os
import re

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI, JPEG_SOS, JPEG_EOI = b"\xff\xd8", 0xDA, b"\xff\xd9"
JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
"""Start-of-frame markers (they carry the size); C4, C8 and CC are other segments."""

JPEG_ARITHMETIC = frozenset(range(0xC9, 0xD0)) - {0xCC}
"""Start-of-frame markers of arithmetic-coded JPEG, which can spend less than a bit per block."""

DEFLATE_MAX_RATIO = 1032
"""deflate's largest compression ratio (a 258-byte match in about two bits), the bound for PNG data."""

LZW_PIXELS_PER_BYTE = 8 * 4096 // 3
"""Most GIF pixels one byte can encode: an LZW code has at least 3 bits and stands for at most 4096 pixels."""

FORMATS = "PNG, JPEG, GIF, TIFF, BMP, WebP, PNM (PBM, PGM, PPM, PAM, PFM) and Sun raster"
"""The image formats whose size rfcore reads from the header, for messages."""


class JpegLayout:
    """Where the parts of a JPEG file are: its size, and where its image data starts.

    Attributes:
        size: ``(height, width)`` from the start-of-frame segment, or ``None``.
        scan: Offset of the first scan's image data, or ``None``.
        arithmetic: The image data is arithmetic-coded (rare; no bytes-per-block bound holds).
    """

    def __init__(self, data: mmap.mmap | bytes) -> None:
        self.data, self.size, self.scan, self.arithmetic = data, None, None, False
        pos = 2
        while pos + 4 <= len(data) and data[pos] == 0xFF:
            marker, length = data[pos + 1], int.from_bytes(data[pos + 2 : pos + 4], "big")
            if marker == 0xFF:  # fill byte before a marker
                pos += 1
                continue
            if marker in JPEG_SOF and pos + 9 <= len(data):
                self.size = (int.from_bytes(data[pos + 5 : pos + 7], "big"), int.from_bytes(data[pos + 7 : pos + 9], "big"))
                self.arithmetic = marker in JPEG_ARITHMETIC
            if marker == JPEG_SOS:
                self.scan = pos + 2 + length
                return
            pos += 2 + length

    def complete(self) -> bool:
        """True if an end-of-image marker follows the image data."""
        # 0xFF 0xD9 cannot occur inside entropy-coded data (0xFF is stuffed as 0xFF 0x00)
        return self.scan is not None and self.data.find(JPEG_EOI, self.scan) >= 0


def header_size(path) -> tuple[str, tuple[int, int] | None]:
    """The format and ``(height, width)`` announced by a file's header, without decoding.

    Returns:
        ``(kind, size)``: kind ``"png"``, ``"jpeg"``, ``"gif"``, ``"tiff"``, ``"bmp"``, ``"webp"``,
        ``"pnm"`` or ``"sun"`` with the size (``None`` if the header is cut short or damaged), or
        ``("", None)`` for any other format.
    """
    with open(path, "rb") as f:
        head = f.read(64)
        if head.startswith(JPEG_SOI):
            if os.fstat(f.fileno()).st_size == 0:
                return "jpeg", None
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return "jpeg", JpegLayout(data).size
        if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
            return "tiff", _tiff_size(f, head)
    for kind, signature, parse in HEADERS:
        if head.startswith(signature):
            return kind, _checked(parse, head)
    return "", None


def _checked(parse, head: bytes) -> tuple[int, int] | None:
    try:
        return parse(head)
    except (IndexError, ValueError):
        return None


def _le(data: bytes, start: int, count: int) -> int:
    return int.from_bytes(data[start : start + count], "little")


def _be(data: bytes, start: int, count: int) -> int:
    return int.from_bytes(data[start : start + count], "big")


def _png(head: bytes) -> tuple[int, int] | None:
    return (_be(head, 20, 4), _be(head, 16, 4)) if head[12:16] == b"IHDR" and len(head) >= 24 else None


def _gif(head: bytes) -> tuple[int, int] | None:
    return (_le(head, 8, 2), _le(head, 6, 2)) if len(head) >= 10 else None  # the logical screen


def _bmp(head: bytes) -> tuple[int, int] | None:
    if _le(head, 14, 4) == 12:  # OS/2 core header: 16-bit sides
        return _le(head, 20, 2), _le(head, 18, 2)
    width, height = (int.from_bytes(head[k : k + 4], "little", signed=True) for k in (18, 22))
    return (abs(height), abs(width)) if len(head) >= 26 else None  # a negative height is a top-down image


def _webp(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 ":
        return _le(head, 28, 2) & 0x3FFF, _le(head, 26, 2) & 0x3FFF
    if chunk == b"VP8L":
        bits = _le(head, 21, 4)
        return ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1
    if chunk == b"VP8X":
        return _le(head, 27, 3) + 1, _le(head, 24, 3) + 1
    return None


def _pnm(head: bytes) -> tuple[int, int] | None:
    text = re.sub(rb"#[^\n]*", b" ", head[2:])  # comments may stand between the numbers
    if head.startswith(b"P7"):
        fields = dict(re.findall(rb"(WIDTH|HEIGHT)\s+(\d+)", text))
        return int(fields[b"HEIGHT"]), int(fields[b"WIDTH"])
    width, height = text.split()[:2]
    return int(height), int(width)


def _sun(head: bytes) -> tuple[int, int] | None:
    return (_be(head, 8, 4), _be(head, 4, 4)) if len(head) >= 12 else None


HEADERS = (
    ("png", PNG_SIGNATURE, _png),
    ("gif", (b"GIF87a", b"GIF89a"), _gif),
    ("bmp", b"BM", _bmp),
    ("webp", b"RIFF", lambda head: _webp(head) if head[8:12] == b"WEBP" else None),
    ("pnm", (b"P1", b"P2", b"P3", b"P4", b"P5", b"P6", b"P7", b"PF", b"Pf"), _pnm),
    ("sun", b"\x59\xa6\x6a\x95", _sun),
)
"""``(kind, signature, parser of the first 64 bytes)`` of the formats whose size sits at the start of the file."""


def _tiff_size(f, head: bytes) -> tuple[int, int] | None:
    """ImageWidth and ImageLength of a TIFF's first directory (the image OpenCV decodes), classic or BigTIFF."""
    order = "little" if head.startswith(b"II") else "big"
    big = head[2:4] in (b"+\x00", b"\x00+")

    def number(data: bytes) -> int:
        return int.from_bytes(data, order)

    count_size, entry_size, offset = (8, 20, number(head[8:16])) if big else (2, 12, number(head[4:8]))
    f.seek(offset)
    entries = number(f.read(count_size))
    table = f.read(min(entries, 4096) * entry_size)
    sides = {}
    for k in range(0, len(table) - entry_size + 1, entry_size):
        tag, kind = number(table[k : k + 2]), number(table[k + 2 : k + 4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT (3) or LONG (4), LONG8 (16) in BigTIFF
            width = {3: 2, 4: 4, 16: 8}.get(kind, 4)
            value = table[k + (12 if big else 8) :][:width]
            sides[tag] = number(value)
    return (sides[257], sides[256]) if len(sides) == 2 else None


def forged_size(path, kind: str, size: tuple[int, int]) -> str | None:
    """Why ``size`` cannot be what the file holds (too few bytes to encode it), or ``None``.

    Only JPEG (Huffman-coded), PNG and GIF have a bound here; other formats are limited by the pixel count alone.
    """
    height, width = size
    file_bytes = os.path.getsize(path)
    if kind == "jpeg":
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            layout = JpegLayout(data)
            if layout.arithmetic or layout.scan is None:
                return None
            least = -(-height // 8) * -(-width // 8) // 8  # one bit per 8x8 luma block
            have = file_bytes - layout.scan
    elif kind == "png":
        with open(path, "rb") as f:
            depth, colour = f.read(26)[24:26]
        bits = depth * {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour, 1)
        least = height * (1 + -(-width * bits // 8)) // DEFLATE_MAX_RATIO  # filter byte + packed row, deflated
        have = file_bytes
    elif kind == "gif":  # the decoder allocates the whole logical screen, however small the frames in it
        least, have = height * width // LZW_PIXELS_PER_BYTE, file_bytes
    else:
        return None
    if have >= least:
        return None
    return (f"its header claims {width}x{height} pixels, but it holds {have:,} bytes of image data, fewer than the "
            f"{least:,} that size needs: a damaged or forged header")
