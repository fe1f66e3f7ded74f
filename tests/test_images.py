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


def _png_of(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_sixteen_bit_grey_is_scaled_not_washed_out():
    grey = np.full((8, 8), 32768, dtype=np.uint16)  # mid grey in 16 bits
    img = read_image(_png_of(Image.fromarray(grey)))
    assert img.mode == "RGB" and abs(int(np.asarray(img)[0, 0, 0]) - 128) <= 1


def test_exif_rotation_is_applied():
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: rotate 90 degrees to view
    Image.new("RGB", (40, 20), (200, 10, 10)).save(buf, "JPEG", exif=exif)
    assert read_image(buf.getvalue()).size == (20, 40)


def test_transparency_becomes_white_for_rgba_and_palette_images():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert np.asarray(read_image(_png_of(rgba)))[0, 0].tolist() == [255, 255, 255]
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.putpixel((1, 1), 1)
    buf = io.BytesIO()
    pal.save(buf, "PNG", transparency=0)
    out = np.asarray(read_image(buf.getvalue()))
    assert out[0, 0].tolist() == [255, 255, 255] and out[1, 1].tolist() == [255, 0, 0]


def test_a_big_photo_is_reduced_while_decoding():
    buf = io.BytesIO()
    Image.new("RGB", (6000, 4000), (10, 120, 200)).save(buf, "JPEG", quality=70)
    img = read_image(buf.getvalue())
    assert max(img.size) == 1024 and img.size[0] / img.size[1] == pytest.approx(1.5, abs=0.01)
    assert abs(int(np.asarray(img)[500, 500, 2]) - 200) <= 3
