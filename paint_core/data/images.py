"""Reading user images safely and faithfully: size limits, decompression bombs, corrupt or non-image files; EXIF
rotation, 16-bit grey, transparency, and big photos reduced while decoding."""
from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


MAX_UPLOAD_BYTES = 25 * 1024 * 1024
MAX_PIXELS = 40_000_000          # well below 100 MP; Pillow's own bomb check is 89 MP
ALLOWED_FORMATS = {"PNG", "JPEG", "WEBP"}
WORKING_SIZE = 1024              # longest side kept: CLIP towers read 224-336 px; a 36 MP photo is not held whole


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
            if img.format == "JPEG":
                img.draft("RGB", (WORKING_SIZE, WORKING_SIZE))  # decode at 1/2, 1/4 or 1/8 scale when big
            img.load()  # decodes now, so a truncated file fails here and not later
            img = ImageOps.exif_transpose(img)  # the way the camera was held
    except ImageInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageInputError(f"{name} is too large to decode safely (the limit is {MAX_PIXELS / 1e6:.0f} "
                              f"megapixels; decompression-bomb guard): {e}") from e
    except UnidentifiedImageError as e:
        raise ImageInputError(f"{name} is not an image Pillow can read (PNG, JPEG or WebP expected)") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageInputError(f"{name} is corrupt or truncated: {e}") from e
    img = _to_rgb(img)
    if max(img.size) > WORKING_SIZE:
        img.thumbnail((WORKING_SIZE, WORKING_SIZE), Image.LANCZOS)
    return img


def _to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB: 16-bit grey scaled (not clipped to white), transparency laid on white (palette ones too)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        grey = np.asarray(img, dtype=np.float64)
        top = 65535.0 if grey.max() > 255 or img.mode.startswith("I;16") else 255.0
        return Image.fromarray(np.clip(grey / top * 255 + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info or img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")
