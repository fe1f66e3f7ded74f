import io

import numpy as np
import pytest
from PIL import Image

from paint_core.data.images import ImageInputError, read_image
from paint_core.live.sessions import parse_classnames


def _png(size=(20, 10)) -> bytes:
    buf = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(noise).save(buf, "PNG")
    return buf.getvalue()


def test_reads_a_png():
    assert read_image(_png()).size == (20, 10)


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"this is not an image at all", "not an image"),
    (_png()[:len(_png()) // 2], "corrupt or truncated"),
])
def test_bad_uploads_are_clear_errors(data, message):
    with pytest.raises(ImageInputError, match=message):
        read_image(data, "x.png")


def test_decompression_bomb_is_refused_before_decoding():
    buf = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buf, "PNG")  # 100 megapixels, a few kB compressed
    assert len(buf.getvalue()) < 200_000
    with pytest.raises(ImageInputError, match="megapixels"):
        read_image(buf.getvalue(), "bomb.png")


def test_gif_is_refused():
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "GIF")
    with pytest.raises(ImageInputError, match="PNG, JPEG or WebP"):
        read_image(buf.getvalue())


def test_class_lists():
    assert parse_classnames("cat\ndog, bird\n\n") == ["cat", "dog", "bird"]
    with pytest.raises(ValueError, match="empty"):
        parse_classnames(" \n , ")
    with pytest.raises(ValueError, match="duplicate class names: cat"):
        parse_classnames("cat\ncat")
