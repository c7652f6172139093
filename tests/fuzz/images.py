"""Hand-made image bytes for the fuzz and limit tests: PNGs whose header may claim anything."""
from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def save(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_raw(width: int, height: int, idat: bytes, bit_depth: int = 8, color: int = 2) -> bytes:
    """A PNG assembled by hand, so the header may claim anything."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def zlib_bomb_png(side: int) -> bytes:
    """A grayscale PNG of side x side zero pixels: a few kB that inflate to side^2 bytes."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (side + 1)                       # filter byte + pixels
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    return png_raw(side, side, idat, 8, 0)
