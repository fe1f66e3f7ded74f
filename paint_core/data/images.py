"""Reading user images safely: size limits, decompression bombs, corrupt or non-image files."""
from __future__ import annotations

import io
import warnings
from PIL import Image, UnidentifiedImageError


MAX_UPLOAD_BYTES = 25 * 1024 * 1024
MAX_PIXELS = 40_000_000          # well below 100 MP; Pillow's own bomb check is 89 MP
ALLOWED_FORMATS = {"PNG", "JPEG", "WEBP"}


class ImageInputError(ValueError):
    """An upload that is not a usable image; the message says why, for the user."""


def read_image(data: bytes, name: str = "upload") -> Image.Image:
    """Decode ``data`` into an RGB image, or raise ``ImageInputError`` with a message for the user."""
    if not data:
        raise ImageInputError(f"{name} is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise ImageInputError(f"{name} is {len(data) / 1e6:.0f} MB; the limit is {MAX_UPLOAD_BYTES / 1e6:.0f} MB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if img.format not in ALLOWED_FORMATS:
                raise ImageInputError(f"{name} is {img.format or 'not an image'}; upload a PNG, JPEG or WebP image")
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageInputError(f"{name} is {w}x{h} = {w * h / 1e6:.0f} megapixels; the limit is "
                                      f"{MAX_PIXELS / 1e6:.0f} MP (decompression-bomb guard)")
            img.load()  # decodes now, so a truncated file fails here and not later
    except ImageInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageInputError(f"{name} is too large to decode safely (the limit is {MAX_PIXELS / 1e6:.0f} "
                              f"megapixels; decompression-bomb guard): {e}") from e
    except UnidentifiedImageError as e:
        raise ImageInputError(f"{name} is not an image Pillow can read (PNG, JPEG or WebP expected)") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageInputError(f"{name} is corrupt or truncated: {e}") from e
    return img.convert("RGB")
