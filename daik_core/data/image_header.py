"""Image files without the dataset: ``(width, height)`` read from an image's header (:func:`read_image_size`:
PNG, JPEG, BMP and TIFF headers are parsed, a PNG must also end with its ``IEND`` chunk, which catches
truncated downloads; other formats are decoded once), and decoding (:func:`decode_image`). Errors are
:class:`~daik_core.errors.DataFormatError` naming the file."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from daik_core.errors import DataFormatError

__all__ = ["decode_image", "read_image_size"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame markers
_JPEG_NO_LENGTH = frozenset((0x01, *range(0xD0, 0xD8)))
_TAIL = 1024  # bytes at the end of a PNG searched for its IEND chunk


def _bad(path: Path, problem: str) -> DataFormatError:
    return DataFormatError(path, None, problem)


def _png_size(f: BinaryIO, path: Path, file_size: int) -> tuple[int, int]:
    f.seek(8)
    chunk = f.read(16)
    if len(chunk) < 16 or chunk[4:8] != b"IHDR":
        raise _bad(path, "not a readable image (PNG without an IHDR header)")
    width, height = struct.unpack(">II", chunk[8:16])
    f.seek(max(file_size - _TAIL, 0))
    if b"IEND" not in f.read(_TAIL):
        raise _bad(path, "truncated PNG image (no IEND chunk at the end of the file)")
    return width, height


def _jpeg_size(f: BinaryIO, path: Path) -> tuple[int, int]:
    f.seek(2)
    while True:
        byte = f.read(1)
        if not byte:
            break
        if byte != b"\xff":
            continue  # stray byte between segments: resynchronise on the next 0xFF
        marker = f.read(1)
        while marker == b"\xff":  # fill bytes
            marker = f.read(1)
        if not marker:
            break
        code = marker[0]
        if code in _JPEG_NO_LENGTH:
            continue
        if code in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            break
        head = f.read(2)
        if len(head) < 2:
            break
        (length,) = struct.unpack(">H", head)
        if code in _JPEG_SOF:
            frame = f.read(5)
            if len(frame) < 5:
                break
            height, width = struct.unpack(">HH", frame[1:5])
            return width, height
        f.seek(length - 2, 1)
    raise _bad(path, "not a readable image (JPEG without a frame header)")


def _tiff_size(f: BinaryIO, path: Path) -> tuple[int, int] | None:
    f.seek(0)
    head = f.read(8)
    order = "<" if head[:2] == b"II" else ">"
    (magic,) = struct.unpack(order + "H", head[2:4])
    if magic != 42:
        return None  # BigTIFF or other: decode
    (offset,) = struct.unpack(order + "I", head[4:8])
    f.seek(offset)
    raw = f.read(2)
    if len(raw) < 2:
        raise _bad(path, "not a readable image (TIFF without an image directory)")
    (count,) = struct.unpack(order + "H", raw)
    entries = f.read(12 * count)
    dims: dict[int, int] = {}
    for k in range(len(entries) // 12):
        tag, typ, _n = struct.unpack(order + "HHI", entries[12 * k : 12 * k + 8])
        if tag in (256, 257):
            value = entries[12 * k + 8 : 12 * k + 12]
            dims[tag] = struct.unpack(order + ("H" if typ == 3 else "I"), value[: 2 if typ == 3 else 4])[0]
    if 256 not in dims or 257 not in dims:
        raise _bad(path, "not a readable image (TIFF without width and height)")
    return dims[256], dims[257]


def read_image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of an image file, read from its header (cheap: a few bytes, no decoding).

    PNG (which must also end with its ``IEND`` chunk), JPEG, BMP and TIFF are parsed; any other file is
    decoded once with cv2. Raises :class:`DataFormatError` naming the file when it is not a readable image.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            file_size = path.stat().st_size
            head = f.read(32)
            dims: tuple[int, int] | None = None
            if head.startswith(_PNG_SIGNATURE):
                dims = _png_size(f, path, file_size)
            elif head.startswith(b"\xff\xd8"):
                dims = _jpeg_size(f, path)
            elif head.startswith(b"BM") and len(head) >= 26:
                (header_size,) = struct.unpack("<I", head[14:18])
                if header_size == 12:
                    dims = struct.unpack("<HH", head[18:22])
                else:
                    w, h = struct.unpack("<ii", head[18:26])
                    dims = (w, abs(h))
            elif head[:4] in (b"II*\x00", b"MM\x00*"):
                dims = _tiff_size(f, path)
    except OSError as err:
        raise _bad(path, f"cannot read the image file ({err.strerror})") from None
    except struct.error:
        raise _bad(path, "not a readable image (truncated header)") from None
    if dims is None:
        h, w = decode_image(path).shape[:2]
        dims = (w, h)
    if dims[0] <= 0 or dims[1] <= 0:
        raise _bad(path, f"not a readable image (header says {dims[0]} x {dims[1]} pixels)")
    return int(dims[0]), int(dims[1])


def decode_image(path: str | Path) -> np.ndarray:
    """An image file as a BGR ``uint8`` array ``(H, W, 3)``, EXIF orientation ignored;
    :class:`DataFormatError` naming the file when it cannot be decoded."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise _bad(path, f"cannot read the image file ({err.strerror})") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if data.size else None
    if image is None:
        raise _bad(path, "not a readable image (empty, truncated or unknown format)")
    return image
