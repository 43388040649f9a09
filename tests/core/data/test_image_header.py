"""Image sizes from file headers and image decoding (daik_core.data.image_header)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from daik_core.data.image_header import decode_image, read_image_size
from daik_core.errors import DataFormatError


def test_image_sizes_from_headers(tmp_path: Path) -> None:
    img = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    for ext in (".png", ".jpg", ".bmp", ".tif"):
        path = tmp_path / f"a{ext}"
        assert cv2.imwrite(str(path), img)
        assert read_image_size(path) == (53, 37), ext
        assert decode_image(path).shape == (37, 53, 3)
    gray = tmp_path / "g.png"
    cv2.imwrite(str(gray), img[..., 0])
    assert read_image_size(gray) == (53, 37) and decode_image(gray).shape == (37, 53, 3)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DataFormatError, match=r"empty\.png"):
        read_image_size(tmp_path / "empty.png")


def test_truncated_png_and_unknown_bytes_are_named(tmp_path: Path) -> None:
    img = np.zeros((8, 12, 3), dtype=np.uint8)
    png = tmp_path / "t.png"
    assert cv2.imwrite(str(png), img)
    data = png.read_bytes()
    png.write_bytes(data[: len(data) - 12])  # the IEND chunk cut off
    with pytest.raises(DataFormatError, match=r"t\.png.*truncated PNG image"):
        read_image_size(png)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(DataFormatError, match=r"junk\.png.*not a readable image"):
        read_image_size(junk)
