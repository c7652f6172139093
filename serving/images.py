"""The one check every encoded image passes before a model sees it: requests and warm-up alike.

It reads the header only (Pillow gives the size without decoding pixels), so a decompression bomb
costs nothing, and it refuses what the exported graph's decode_image cannot decode, or would
decode wrongly: an 8-bit palette BMP, whose palette TensorFlow ignores (the pixels become palette
indices, grey, with no error).
"""
from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

from serving.errors import invalid

IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP")   # what the exported graph's decode_image accepts


def check_image(data: object, max_pixels: int, what: str = "image") -> None:
    """INVALID_ARGUMENT naming `what` for an empty, non-image, unsupported or oversized image."""
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise invalid(f"{what} is empty")
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt, mode, (width, height) = image.format, image.mode, image.size
    except Image.DecompressionBombError as error:
        raise invalid(f"{what} is over the pixel limit ({error})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise invalid(f"{what} is not a decodable image (JPEG, PNG, GIF or BMP): "
                      f"{type(error).__name__}") from None
    if fmt not in IMAGE_FORMATS:
        raise invalid(f"{what} is {fmt}; send JPEG, PNG, GIF or BMP")
    if fmt == "BMP" and mode == "P":
        raise invalid(f"{what} is an 8-bit palette BMP, which the model decodes without its palette "
                      f"(wrong colours); send a 24-bit BMP, PNG or JPEG")
    if width * height > max_pixels:
        raise invalid(f"{what} is {width}x{height} = {width * height} pixels, over the limit of "
                      f"{max_pixels} (--max-image-pixels)")
