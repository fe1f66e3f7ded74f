"""The embedded world's tasks: drawn deterministically from a seed per task, split and index (``world``), or the
real scikit-learn digits and their distribution shifts; nothing is downloaded or stored.
"""
from __future__ import annotations

import zlib
from functools import lru_cache
from typing import TYPE_CHECKING, Callable

import numpy as np
from PIL import Image

from . import world as w
from .task_types import SPLITS, Task, Transform

if TYPE_CHECKING:
    from torch.utils.data import Dataset


# Prompt templates. Their wording differs from the pretraining captions on purpose.
SHAPE_TEMPLATES = ("a photo of a {}.", "a drawing of a {}.", "an image of a {} shape.")
COLOUR_TEMPLATES = ("a photo of a {} object.", "something coloured {}.", "a {} thing.")
DIGIT_TEMPLATES = ("a photo of the number {}.", "an image of the digit {}.", "a picture of a {}.")
COUNT_TEMPLATES = ("a photo of {} objects.", "an image with {} shapes.", "a picture of {} things.")


class GeneratedSplit:
    """``n`` images drawn by ``draw(rng) -> (image, label)``, image i from its own seed: random access, no storage."""

    def __init__(self, draw: Callable[[np.random.Generator], tuple[Image.Image, int]], n: int, seed: tuple[int, ...],
                 transform: Transform | None):
        self.draw, self.n, self.seed, self.transform = draw, n, seed, transform

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        if not 0 <= i < self.n:
            raise IndexError(i)
        img, label = self.draw(np.random.default_rng((*self.seed, i)))
        return (self.transform(img) if self.transform else img), label


class ArraySplit:
    """Images rendered on access from stored arrays (the scikit-learn digits)."""

    def __init__(self, render: Callable[[int], Image.Image], labels: np.ndarray, transform: Transform | None):
        self.render, self.labels, self.transform = render, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        img = self.render(i)
        return (self.transform(img) if self.transform else img), int(self.labels[i])


SPLIT_SIZES = {"train": 20_000, "val": 600, "test": 1_000}


def _generated_task(name: str, classnames, templates, draw, description: str, kind: str,
                    written: Callable[[np.random.Generator], int] | None = None) -> Task:
    """``written(rng)``: the class written on the image ``draw`` makes from the same rng (replaying its first
    draws), for typographic tasks."""
    task_id = zlib.crc32(name.encode())

    def make(split: str, transform: Transform | None) -> Dataset:
        return GeneratedSplit(draw, SPLIT_SIZES[split], (task_id, SPLITS.index(split)), transform)

    def written_class(split: str) -> np.ndarray:
        seed = (task_id, SPLITS.index(split))
        return np.array([written(np.random.default_rng((*seed, i))) for i in range(SPLIT_SIZES[split])])

    return Task(name, tuple(classnames), tuple(templates), make, description, kind,
                written_class=written_class if written is not None else None)


def _draw_shape(style: str):
    def draw(rng):
        label = int(rng.integers(0, len(w.SHAPES)))
        return w.render_object(rng, w.SHAPES[label], w.pick(rng, tuple(w.COLOURS)), style), label
    return draw


def _draw_colour(rng):
    label = int(rng.integers(0, len(w.COLOURS)))
    return w.render_object(rng, w.pick(rng, w.SHAPES), list(w.COLOURS)[label]), label


def _draw_count(rng):
    label = int(rng.integers(0, w.MAX_COUNT))
    count = label + 1
    if rng.random() < 0.5:
        shapes, colours = (w.pick(rng, w.SHAPES),), (w.pick(rng, tuple(w.COLOURS)),)
    else:
        shapes = tuple(rng.choice(w.SHAPES, size=count))
        colours = tuple(rng.choice(list(w.COLOURS), size=count))
    return w.render_count(rng, count, shapes, colours), label


def _draw_typographic(rng):
    label = int(rng.integers(0, len(w.SHAPES)))
    word = w.pick(rng, [s for s in w.SHAPES if s != w.SHAPES[label]])
    return w.render_object_with_word(rng, w.SHAPES[label], w.pick(rng, tuple(w.COLOURS)), word), label


def _written_typographic(rng) -> int:
    """The class index of the word ``_draw_typographic`` writes with this rng (its first two draws)."""
    label = int(rng.integers(0, len(w.SHAPES)))
    return w.SHAPES.index(w.pick(rng, [s for s in w.SHAPES if s != w.SHAPES[label]]))


@lru_cache(maxsize=1)
def _sklearn_digits() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    from sklearn.datasets import load_digits
    d = load_digits()
    order = np.random.default_rng(1234).permutation(len(d.target))
    idx = {"train": order[:1000], "val": order[1000:1297], "test": order[1297:]}
    return d.images, d.target, idx


def _digits_task(name: str, digits: tuple[int, ...], kind: str, description: str) -> Task:
    def make(split: str, transform: Transform | None) -> Dataset:
        images, targets, idx = _sklearn_digits()
        keep = np.array([i for i in idx[split] if targets[i] in digits])
        labels = np.array([digits.index(t) for t in targets[keep]])
        return ArraySplit(lambda i: w.digit_grid_to_image(images[keep[i]]), labels, transform)

    return Task(name, tuple(w.NUMBER_WORDS[d] for d in digits), DIGIT_TEMPLATES, make, description, kind)


def _digit_in_colour(grid: np.ndarray, index: int) -> Image.Image:
    colours = list(w.COLOURS)
    return w.digit_grid_to_image(grid, ink=w.COLOURS[colours[int(index) % len(colours)]])


def _digit_rotated(grid: np.ndarray, index: int) -> Image.Image:
    angle = float(np.random.default_rng((7919, int(index))).uniform(15, 35)) * (1 if index % 2 else -1)
    return w.digit_grid_to_image(grid).rotate(angle, resample=Image.BILINEAR)


def _digit_noisy(grid: np.ndarray, index: int) -> Image.Image:
    noise = np.random.default_rng((7919, int(index))).normal(0, 60, (w.WORLD_SIZE, w.WORLD_SIZE, 1))
    rgb = np.asarray(w.digit_grid_to_image(grid), np.float32) + noise
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


# Distribution shifts of the real digits (same images, same labels, another look); each seeded per image.
# Chosen before any ensemble was measured; docs/experiments.md has the other candidates and their numbers.
DIGIT_SHIFTS = {
    "digits_colour": (_digit_in_colour, "the real digits in coloured ink (7 colours) on black"),
    "digits_rotated": (_digit_rotated, "the real digits rotated by 15-35 degrees either way"),
    "digits_noisy": (_digit_noisy, "the real digits under Gaussian pixel noise (sd 60 of 255)"),
}


def _digits_shift_task(name: str) -> Task:
    shift, description = DIGIT_SHIFTS[name]

    def make(split: str, transform: Transform | None) -> Dataset:
        images, targets, idx = _sklearn_digits()
        keep = idx[split]
        return ArraySplit(lambda i: shift(images[keep[i]], keep[i]), targets[keep], transform)

    return Task(name, tuple(w.NUMBER_WORDS[d] for d in range(10)), DIGIT_TEMPLATES, make,
                f"{description}: a distribution shift of 'digits'", "shift")


def _embedded_tasks() -> dict[str, Task]:
    tasks = [
        _generated_task("shapes", w.SHAPES, SHAPE_TEMPLATES, _draw_shape("filled"),
                        "one filled object; name its shape", "supported"),
        _generated_task("colours", tuple(w.COLOURS), COLOUR_TEMPLATES, _draw_colour,
                        "one filled object; name its colour", "supported"),
        _generated_task("shapes_outline", w.SHAPES, SHAPE_TEMPLATES, _draw_shape("outline"),
                        "shapes drawn as outlines: a distribution shift of 'shapes'", "shift"),
        _digits_task("digits", tuple(range(10)), "patch",
                     "real handwritten digits from scikit-learn's load_digits (never seen in pretraining)"),
        _generated_task("counting", w.NUMBER_WORDS[1:w.MAX_COUNT + 1], COUNT_TEMPLATES, _draw_count,
                        "count the objects (1-6)", "patch"),
        _generated_task("typographic", w.SHAPES, SHAPE_TEMPLATES, _draw_typographic,
                        "an object with another shape's name written on it; the label is the object", "patch",
                        written=_written_typographic),
        _digits_task("digits_low", (0, 1, 2, 3, 4), "transfer", "real digits 0-4 (transfer pair with digits_high)"),
        _digits_task("digits_high", (5, 6, 7, 8, 9), "transfer", "real digits 5-9 (transfer pair with digits_low)"),
        *[_digits_shift_task(name) for name in DIGIT_SHIFTS],
    ]
    return {t.name: t for t in tasks}


EMBEDDED_TASKS: dict[str, Task] = _embedded_tasks()
PATCH_TASKS = tuple(n for n, t in EMBEDDED_TASKS.items() if t.kind == "patch")
SUPPORTED_TASKS = tuple(n for n, t in EMBEDDED_TASKS.items() if t.kind == "supported")
