"""The embedded world: procedurally drawn images with captions.

Everything here is deterministic given a ``numpy.random.Generator``: the same seed draws the same image.
Images are RGB ``PIL.Image`` of ``WORLD_SIZE`` pixels; models resize them with their own preprocess.

The world has shapes, colours, counts of objects, handwritten-looking digits (reduced to 8x8 and upsampled
exactly like scikit-learn's ``load_digits`` images) and written words, so a model pretrained on it can read,
count, and half-know digits, like real CLIP half-knows MNIST.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ..core.names import unknown_name


WORLD_SIZE = 64

SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 230),
    "yellow": (240, 215, 40),
    "purple": (145, 60, 200),
    "orange": (245, 140, 30),
    "white": (245, 245, 245),
}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
MAX_COUNT = 6
# Words that are no class name of any task: the control for "does the model read".
OTHER_WORDS = ("cat", "dog", "sun", "tree", "car", "book", "apple", "fish", "hat", "moon", "bird", "cup")
STYLES = ("filled", "outline")


def pick(rng: np.random.Generator, options):
    """One of ``options``, drawn with ``rng``."""
    return options[int(rng.integers(0, len(options)))]


def _check(name: str, value: str, choices) -> None:
    if value not in choices:
        raise unknown_name(name, value, choices)


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont:
    # Pillow's bundled font: no system font needed, identical on every machine.
    return ImageFont.load_default(size=size)


def _background(rng: np.random.Generator, avoid: tuple[int, int, int] | None, size: int) -> Image.Image:
    """A dark or mid-tone background, far enough from ``avoid`` to keep objects visible."""
    while True:
        base = rng.integers(0, 110, size=3)
        if avoid is None or np.abs(base - np.array(avoid)).sum() > 200:
            break
    arr = np.empty((size, size, 3), dtype=np.float32)
    arr[:] = base
    kind = rng.integers(0, 3)
    if kind == 1:  # gradient
        ramp = np.linspace(-25, 25, size, dtype=np.float32)
        arr += ramp[None, :, None] if rng.random() < 0.5 else ramp[:, None, None]
    elif kind == 2:  # noise texture
        arr += rng.normal(0, 12, size=(size, size, 1)).astype(np.float32)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    def ring(n: int, radii: list[float], offset: float) -> list[tuple[float, float]]:
        pts = []
        for i in range(n * len(radii)):
            rad = radii[i % len(radii)] * r
            t = offset + angle + 2 * math.pi * i / (n * len(radii))
            pts.append((cx + rad * math.cos(t), cy + rad * math.sin(t)))
        return pts

    if shape == "square":
        return ring(4, [1.0], math.pi / 4)
    if shape == "diamond":
        return [(cx, cy - r), (cx + 0.65 * r, cy), (cx, cy + r), (cx - 0.65 * r, cy)]
    if shape == "triangle":
        return ring(3, [1.0], -math.pi / 2)
    if shape == "star":
        return ring(5, [1.0, 0.42], -math.pi / 2)
    if shape == "cross":
        a = 0.33 * r
        pts = [(-a, -r), (a, -r), (a, -a), (r, -a), (r, a), (a, a), (a, r), (-a, r), (-a, a), (-r, a), (-r, -a), (-a, -a)]
        c, s = math.cos(angle), math.sin(angle)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]
    raise ValueError(f"Unknown shape {shape!r}; choose from: {', '.join(SHAPES)}")


def draw_shape(img: Image.Image, shape: str, colour: str, cx: float, cy: float, r: float,
               style: str = "filled", angle: float = 0.0) -> None:
    """Draw one object in place. ``style`` "outline" is the distribution-shifted drawing style."""
    _check("shape", shape, SHAPES)
    _check("colour", colour, COLOURS)
    _check("style", style, STYLES)
    draw = ImageDraw.Draw(img)
    rgb = COLOURS[colour]
    width = max(2, int(r / 4))
    if shape == "circle":
        box = [cx - r, cy - r, cx + r, cy + r]
        if style == "filled":
            draw.ellipse(box, fill=rgb)
        else:
            draw.ellipse(box, outline=rgb, width=width)
        return
    pts = _polygon(shape, cx, cy, r, angle)
    if style == "filled":
        draw.polygon(pts, fill=rgb)
    else:
        draw.line(pts + [pts[0]], fill=rgb, width=width, joint="curve")


def draw_text(img: Image.Image, text: str, x: float, y: float, size: int,
              colour: tuple[int, int, int] = (255, 255, 255), outline: bool = True) -> None:
    """Write ``text`` with its top-left corner at (x, y); a dark outline keeps it legible on any object."""
    if size < 4:
        raise ValueError(f"text size must be at least 4 px, got {size}")
    draw = ImageDraw.Draw(img)
    draw.text((x, y), text, font=_font(size), fill=colour,
              stroke_width=1 if outline else 0, stroke_fill=(0, 0, 0))


def text_box(text: str, size: int) -> tuple[int, int]:
    left, top, right, bottom = _font(size).getbbox(text)
    return right - left, bottom - top


def fit_text_size(text: str, size: int, max_width: float, min_size: int) -> int:
    """``size`` reduced one pixel at a time until ``text`` is at most ``max_width`` wide (never below ``min_size``)."""
    while size > min_size and text_box(text, size)[0] > max_width:
        size -= 1
    return size


# ---------------------------------------------------------------------------------------------- scenes
@dataclass(frozen=True)
class Scene:
    """What an image shows; captions and task labels are derived from it."""
    kind: str                      # "object", "scene", "digit", "word", "object_word"
    shapes: tuple[str, ...] = ()
    colours: tuple[str, ...] = ()
    style: str = "filled"
    digit: int | None = None
    word: str | None = None


def render_object(rng: np.random.Generator, shape: str, colour: str, style: str = "filled",
                  size: int = WORLD_SIZE, radius: tuple[float, float] = (0.22, 0.38)) -> Image.Image:
    """One object of ``shape`` and ``colour`` on a random background."""
    _check("shape", shape, SHAPES)
    _check("colour", colour, COLOURS)
    img = _background(rng, COLOURS[colour], size)
    r = size * rng.uniform(*radius)
    cx = rng.uniform(r, size - r)
    cy = rng.uniform(r, size - r)
    draw_shape(img, shape, colour, cx, cy, r, style, angle=rng.uniform(-0.3, 0.3))
    return img


def render_count(rng: np.random.Generator, count: int, shapes: tuple[str, ...], colours: tuple[str, ...],
                 size: int = WORLD_SIZE) -> Image.Image:
    """``count`` non-overlapping objects (1..MAX_COUNT); object i gets shapes[i % len], colours[i % len]."""
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"count must be between 1 and {MAX_COUNT}, got {count}")
    if not shapes or not colours:
        raise ValueError("render_count needs at least one shape and one colour")
    img = _background(rng, None, size)
    r = size * rng.uniform(0.08, 0.11)
    placed: list[tuple[float, float]] = []
    for _ in range(2000):
        if len(placed) == count:
            break
        x, y = rng.uniform(r + 1, size - r - 1, size=2)
        if all((x - px) ** 2 + (y - py) ** 2 > (2.3 * r) ** 2 for px, py in placed):
            placed.append((x, y))
    if len(placed) < count:  # pragma: no cover - radius bound makes this unreachable for MAX_COUNT
        raise RuntimeError("could not place objects without overlap")
    for i, (x, y) in enumerate(placed):
        draw_shape(img, shapes[i % len(shapes)], colours[i % len(colours)], x, y, r)
    return img


def render_word(rng: np.random.Generator, word: str, size: int = WORLD_SIZE) -> Image.Image:
    """A word written large on a plain background."""
    if not word:
        raise ValueError("word must be a non-empty string")
    img = _background(rng, (255, 255, 255), size)
    font_size = fit_text_size(word, int(rng.integers(13, 19)), size - 4, 6)
    w, h = text_box(word, font_size)
    x = rng.uniform(1, max(1.5, size - w - 2))
    y = rng.uniform(1, max(1.5, size - h - 6))
    colour = tuple(int(c) for c in rng.integers(170, 256, size=3))
    draw_text(img, word, x, y, font_size, colour)
    return img


# Radius range (share of the image) of an object that carries a word: smaller than alone, to leave room for ink.
WORDED_OBJECT_RADIUS = (0.24, 0.34)


def render_object_with_word(rng: np.random.Generator, shape: str, colour: str, word: str,
                            size: int = WORLD_SIZE, font_size: int | None = None,
                            position: str = "random", text_colour: tuple[int, int, int] = (255, 255, 255)
                            ) -> Image.Image:
    """An object with ``word`` written on or beside it (a typographic attack when the word names a class).

    position: "random", "over" (centred on the object), "top" or "bottom" (a strip of the image).
    """
    if position not in ("random", "over", "top", "bottom"):
        raise ValueError(f"Unknown position {position!r}; choose from: random, over, top, bottom")
    img = render_object(rng, shape, colour, size=size, radius=WORDED_OBJECT_RADIUS)
    fs = fit_text_size(word, font_size or int(rng.integers(11, 16)), size - 4, 6)
    w, h = text_box(word, fs)
    if position == "random":
        position = ("over", "top", "bottom")[int(rng.integers(0, 3))]
    x = rng.uniform(1, max(1.5, size - w - 2))
    y = {"over": (size - h) / 2 - 3 + rng.uniform(-6, 6), "top": rng.uniform(0, 4),
         "bottom": size - h - 6 - rng.uniform(0, 3)}[position]
    draw_text(img, word, x, y, fs, text_colour)
    return img


# ---------------------------------------------------------------------------------------------- digits
def digit_grid_to_image(grid: np.ndarray, size: int = WORLD_SIZE,
                        ink: tuple[int, int, int] = (255, 255, 255),
                        paper: tuple[int, int, int] = (0, 0, 0)) -> Image.Image:
    """An 8x8 grid of ink levels 0..16 (scikit-learn's ``load_digits`` format) as an RGB image.

    The same function renders the real digits and the pretraining look-alikes, so the only difference
    between them is the handwriting, never the pipeline.
    """
    grid = np.asarray(grid, dtype=np.float32)
    if grid.shape != (8, 8):
        raise ValueError(f"digit grid must be 8x8, got {grid.shape}")
    level = Image.fromarray(np.clip(grid / 16.0 * 255, 0, 255).astype(np.uint8), "L")
    level = np.asarray(level.resize((size, size), Image.BILINEAR), dtype=np.float32)[..., None] / 255.0
    rgb = np.array(paper, np.float32) * (1 - level) + np.array(ink, np.float32) * level
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


# Stroke skeletons of the ten digits on a unit square (x right, y down), as polylines.
def _arc(cx, cy, rx, ry, a0, a1, n=10):
    return [(cx + rx * math.cos(a0 + (a1 - a0) * i / (n - 1)), cy + ry * math.sin(a0 + (a1 - a0) * i / (n - 1)))
            for i in range(n)]


_STROKES: dict[int, list[list[tuple[float, float]]]] = {
    0: [_arc(0.5, 0.5, 0.3, 0.42, 0, 2 * math.pi, 16)],
    1: [[(0.35, 0.25), (0.55, 0.08), (0.55, 0.92)]],
    2: [_arc(0.5, 0.32, 0.28, 0.24, math.pi * 1.1, math.pi * 2.25) + [(0.2, 0.9), (0.82, 0.9)]],
    3: [_arc(0.48, 0.3, 0.27, 0.21, -math.pi * 0.9, math.pi * 0.5), _arc(0.48, 0.7, 0.3, 0.22, -math.pi * 0.5, math.pi * 0.9)],
    4: [[(0.65, 0.92), (0.65, 0.08), (0.18, 0.65), (0.85, 0.65)]],
    5: [[(0.78, 0.1), (0.3, 0.1), (0.26, 0.45)] + _arc(0.5, 0.64, 0.3, 0.26, -math.pi * 0.75, math.pi * 0.85)],
    6: [_arc(0.5, 0.45, 0.3, 0.4, -math.pi * 0.35, -math.pi * 1.1, 8) + _arc(0.5, 0.68, 0.28, 0.23, math.pi, 3 * math.pi, 14)],
    7: [[(0.18, 0.1), (0.82, 0.1), (0.4, 0.92)]],
    8: [_arc(0.5, 0.3, 0.22, 0.2, 0, 2 * math.pi, 14), _arc(0.5, 0.7, 0.28, 0.22, 0, 2 * math.pi, 14)],
    9: [_arc(0.5, 0.32, 0.27, 0.23, 0, 2 * math.pi, 14), [(0.77, 0.32), (0.7, 0.92)]],
}


def _digit_canvas(rng: np.random.Generator, digit: int, res: int = 32) -> np.ndarray:
    """A high-resolution handwritten-looking digit (float ink 0..1), from a font or from strokes."""
    canvas = Image.new("L", (res, res), 0)
    draw = ImageDraw.Draw(canvas)
    if rng.random() < 0.45:
        fs = int(rng.integers(24, 34))
        text = str(digit)
        w, h = text_box(text, fs)
        draw.text(((res - w) / 2 - 1, (res - h) / 2 - fs * 0.2), text, font=_font(fs), fill=255,
                  stroke_width=int(rng.integers(0, 3)), stroke_fill=255)
    else:
        width = int(rng.integers(2, 5))
        jitter = rng.normal(0, 0.03, size=2)
        for line in _STROKES[digit]:
            pts = [((x + jitter[0] + rng.normal(0, 0.015)) * res * 0.8 + res * 0.1,
                    (y + jitter[1] + rng.normal(0, 0.015)) * res * 0.9 + res * 0.05) for x, y in line]
            draw.line(pts, fill=255, width=width, joint="curve")
    # Handwriting variation: rotation, shear, scale.
    angle = rng.uniform(-15, 15)
    shear = rng.uniform(-0.3, 0.3)
    scale = rng.uniform(0.9, 1.2)
    c = res / 2
    a, b, d, e = 1 / scale, shear / scale, 0.0, 1 / scale
    canvas = canvas.transform((res, res), Image.AFFINE, (a, b, c - a * c - b * c, d, e, c - e * c),
                              resample=Image.BILINEAR)
    canvas = canvas.rotate(angle, resample=Image.BILINEAR)
    if rng.random() < 0.3:
        canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    return np.asarray(canvas, dtype=np.float32) / 255.0


def digit_lookalike_grid(rng: np.random.Generator, digit: int) -> np.ndarray:
    """A procedural digit reduced to an 8x8 grid of 0..16 ink levels by 4x4 block averages."""
    if not 0 <= digit <= 9:
        raise ValueError(f"digit must be 0..9, got {digit}")
    ink = _digit_canvas(rng, digit)
    grid = ink.reshape(8, 4, 8, 4).mean(axis=(1, 3))
    grid = grid / max(grid.max(), 1e-6) * rng.uniform(12, 16)
    return np.round(np.clip(grid, 0, 16))


def render_digit_lookalike(rng: np.random.Generator, digit: int, size: int = WORLD_SIZE) -> Image.Image:
    grid = digit_lookalike_grid(rng, digit)
    if rng.random() < 0.5:
        return digit_grid_to_image(grid, size)
    ink = tuple(int(c) for c in rng.integers(150, 256, size=3))
    paper = tuple(int(c) for c in rng.integers(0, 70, size=3))
    return digit_grid_to_image(grid, size, ink, paper)


WORD_POSITIONS = ("center", "top", "bottom")


def write_word(img: Image.Image, word: str, position: str = "center", size_fraction: float = 0.2) -> Image.Image:
    """A copy of any image with ``word`` written on it, ``size_fraction`` of the image height tall."""
    if position not in WORD_POSITIONS:
        raise ValueError(f"Unknown position {position!r}; choose from: {', '.join(WORD_POSITIONS)}")
    if not 0.02 <= size_fraction <= 0.8:
        raise ValueError(f"size_fraction must be in [0.02, 0.8], got {size_fraction}")
    out = img.convert("RGB").copy()
    if not word.strip():
        return out
    w_img, h_img = out.size
    fs = fit_text_size(word, max(4, int(size_fraction * h_img)), w_img - 2, 4)
    tw, th = text_box(word, fs)
    y = {"center": (h_img - th) / 2 - fs * 0.2, "top": 1, "bottom": h_img - th - fs * 0.35}[position]
    draw_text(out, word, (w_img - tw) / 2, y, fs, (255, 255, 255))
    return out
