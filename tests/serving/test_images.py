"""serving.images: image checks from the header, before any decoding."""
from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import pytest

from serving.config import parse_args
from serving.errors import ServingError


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height: a decompression bomb's header, no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def test_image_checks_refuse_bombs_and_non_images_from_the_header(tmp_path: Path) -> None:
    from serving.core import ServingCore
    from tests.helpers import image_bytes

    core = ServingCore(parse_args(["--model-name", "m", "--model-base-path", str(tmp_path),
                                   "--max-image-pixels", "1000000"], {}))
    core.check_image(image_bytes(1))
    started = time.perf_counter()
    for data, message in [(_png_header(100_000, 100_000), "pixel limit"), (_png_header(2000, 1000), "over the limit"),
                          (b"", "empty"), (b"GIF89a-not-really", "not a decodable image"),
                          (b"hello world", "not a decodable image")]:
        with pytest.raises(ServingError, match=message) as error:
            core.check_image(data)
        assert error.value.code == "INVALID_ARGUMENT"
    assert time.perf_counter() - started < 1.0
