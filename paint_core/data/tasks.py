"""Tasks: class names, prompt templates, and train/val/test splits as torch Datasets of (image, label).

Three sources, one interface:
- the embedded world's tasks (``list_tasks()``), generated deterministically from a seed per split and index;
- ``torchvision:<DatasetName>`` (``root=`` and, for users with internet, ``download=True``);
- ``imagefolder:<path>`` (``path/{train,val,test}/<class>/*`` or one folder split 70/10/20 by a seed).
Validation splits are carved from training data, never from test data.
"""
from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import inspect
import numpy as np
from PIL import Image

from . import world as w
from ..core.names import unknown_name

if TYPE_CHECKING:  # the splits below are plain map-style datasets (len + getitem), which DataLoader takes as they
    import torch   # are: the registry imports without torch, so `paint-core list` and a task-name check are quick
    from torch.utils.data import Dataset


log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
Transform = Callable[[Image.Image], "torch.Tensor"]

# Prompt templates. Their wording differs from the pretraining captions on purpose.
SHAPE_TEMPLATES = ("a photo of a {}.", "a drawing of a {}.", "an image of a {} shape.")
COLOUR_TEMPLATES = ("a photo of a {} object.", "something coloured {}.", "a {} thing.")
DIGIT_TEMPLATES = ("a photo of the number {}.", "an image of the digit {}.", "a picture of a {}.")
COUNT_TEMPLATES = ("a photo of {} objects.", "an image with {} shapes.", "a picture of {} things.")
GENERIC_TEMPLATES = ("a photo of a {}.", "a blurry photo of a {}.", "a photo of the {}.", "a close-up photo of a {}.")


@dataclass(frozen=True)
class Task:
    """A classification task: ``split(name, transform)`` gives a Dataset of (transformed image, label)."""
    name: str
    classnames: tuple[str, ...]
    templates: tuple[str, ...]
    make_split: Callable[[str, Transform | None], Dataset] = field(repr=False)
    description: str = ""
    kind: str = "supported"      # embedded world role: "supported", "patch", "shift", "transfer" (or "user")
    # per split, the class index of the word written on each image (-1: not a class); typographic data only
    written_class: Callable[[str], np.ndarray] | None = field(default=None, repr=False)

    def split(self, name: str, transform: Transform | None = None) -> Dataset:
        if name not in SPLITS:
            raise ValueError(f"Unknown split {name!r}; choose from: {', '.join(SPLITS)}")
        return self.make_split(name, transform)


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


# ------------------------------------------------------------------------------------ embedded tasks
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


def list_tasks() -> dict[str, str]:
    """The embedded world's tasks (name -> description); ``torchvision:NAME`` and ``imagefolder:PATH`` work too."""
    return {n: f"[{t.kind}] {t.description}" for n, t in EMBEDDED_TASKS.items()}


def get_task(name: str, root: str | None = None, download: bool = False) -> Task:
    """A task by name; ``root``/``download`` are for torchvision datasets."""
    if name in EMBEDDED_TASKS:
        return EMBEDDED_TASKS[name]
    if name.startswith("imagefolder:"):
        return imagefolder_task(name[len("imagefolder:"):])
    if name.startswith("torchvision:"):
        return torchvision_task(name[len("torchvision:"):], root, download)
    for prefix, carve in (("typographic:", False), ("typographic-split:", True)):
        if name.startswith(prefix):
            from .typographic import typographic_task
            return typographic_task(name[len(prefix):], carve=carve)
    if name.startswith(("rta100:", "scam:")):
        from .typographic import rta100_task, scam_task
        kind, _, spec = name.partition(":")
        return (rta100_task if kind == "rta100" else scam_task)(spec)
    raise unknown_name("task", name, EMBEDDED_TASKS,
                       more=", torchvision:<DatasetName>, imagefolder:<path>, typographic:<path>, rta100:<path> "
                            "or scam:<path>")


# ------------------------------------------------------------------------------------ real data
class _Subset:
    def __init__(self, base, indices: np.ndarray, transform: Transform | None):
        self.base, self.indices, self.transform = base, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        img, label = self.base[int(self.indices[i])]
        img = img.convert("RGB") if isinstance(img, Image.Image) else img
        return (self.transform(img) if self.transform else img), int(label)


def _carve(n: int, seed: int, fractions: tuple[float, ...]) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    cuts = np.cumsum([int(round(f * n)) for f in fractions[:-1]])
    return np.split(order, cuts)


def _readable_class(name: str) -> str:
    return name.replace("_", " ").strip()


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
FOLDER_MAX_DEPTH = 4          # folders below a class folder
FOLDER_MAX_ENTRIES = 1_000_000  # directory entries looked at in one walk


class FolderWalkError(ValueError):
    """A folder that is not a dataset, or too big or too deep to walk."""


class ImageFiles:
    """(PIL image, label) for ``samples``, the files a bounded walk found (torchvision's ImageFolder follows
    symbolic links and walks without limit, which on a server means ``imagefolder:/`` fills the disk)."""

    def __init__(self, classes: list[str], samples: list[tuple[str, int]]):
        self.classes, self.samples = classes, samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, label = self.samples[i]
        with Image.open(path) as img:
            return img.convert("RGB"), label


def scan_image_folder(root: str | Path, max_depth: int = FOLDER_MAX_DEPTH,
                      max_entries: int = FOLDER_MAX_ENTRIES) -> ImageFiles:
    """``root/<class>/**/<image>``, walked without following symbolic links, at most ``max_depth`` folders
    below a class folder and ``max_entries`` entries in all; past either limit it stops with a clear error."""
    import os
    root = Path(root)
    seen = 0

    def entries(folder: Path) -> list[os.DirEntry]:
        nonlocal seen
        with os.scandir(folder) as it:
            out = []
            for e in it:
                seen += 1
                if seen > max_entries:
                    raise FolderWalkError(f"imagefolder task: {root} has more than {max_entries:,} entries; "
                                          "point it at the dataset's own folder")
                out.append(e)
        return sorted(out, key=lambda e: e.name)

    classes = [e.name for e in entries(root) if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")]
    samples: list[tuple[str, int]] = []
    skipped_links = 0
    for label, name in enumerate(classes):
        stack = [(root / name, 0)]
        while stack:
            folder, depth = stack.pop()
            for e in entries(folder):
                if e.is_symlink():
                    skipped_links += 1
                elif e.is_dir(follow_symlinks=False):
                    if depth + 1 > max_depth:
                        raise FolderWalkError(f"imagefolder task: {root} is nested deeper than {max_depth} folders "
                                              "below a class folder; point it at the dataset's own folder")
                    stack.append((Path(e.path), depth + 1))
                elif e.name.lower().endswith(IMAGE_EXTENSIONS):
                    samples.append((e.path, label))
    if skipped_links:
        log.warning("imagefolder task: skipped %d symbolic links under %s (links are not followed)", skipped_links, root)
    if classes and not samples:
        raise FolderWalkError(f"imagefolder task: no images ({', '.join(IMAGE_EXTENSIONS)}) in the class folders "
                              f"of {root}")
    samples.sort()
    return ImageFiles(classes, samples)


def imagefolder_task(path: str, seed: int = 0) -> Task:
    """``path/{train,val,test}/<class>/*.png`` if present; otherwise one ``path/<class>/*`` folder, split 70/10/20."""
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"imagefolder task: {root} is not a folder")
    has_splits = (root / "train").is_dir() and not (root / "train").is_symlink()
    base = scan_image_folder(root / "train") if has_splits else scan_image_folder(root)
    from .typographic import looks_typographic
    hint = (f"; its files are named like PAINT's typographic data: use typographic:{path}"
            if looks_typographic(root) or any(looks_typographic(root / c) for c in base.classes) else "")
    if not base.classes:
        raise ValueError(f"imagefolder task: no class folders in {root}{hint}")
    if len(base.classes) < 2:
        raise ValueError(f"imagefolder task: {root} resolves to a single class ({base.classes[0]!r}), so every "
                         f"image would be counted correct{hint}")

    def make(split: str, transform: Transform | None) -> Dataset:
        if has_splits and split == "test":
            folder = root / "test"
            if not folder.is_dir():
                raise ValueError(f"imagefolder task: {folder} is missing")
            ds = scan_image_folder(folder)
            if ds.classes != base.classes:
                raise ValueError(f"imagefolder task: classes of {folder} differ from {root / 'train'}")
            return _Subset(ds, np.arange(len(ds)), transform)
        if has_splits and (root / "val").is_dir() and split == "val":
            ds = scan_image_folder(root / "val")
            if ds.classes != base.classes:
                raise ValueError(f"imagefolder task: classes of {root / 'val'} differ from {root / 'train'}")
            return _Subset(ds, np.arange(len(ds)), transform)
        if has_splits:  # carve val from train
            train, val = _carve(len(base), seed, (0.9, 0.1))
            return _Subset(base, {"train": train, "val": val}[split], transform)
        parts = dict(zip(SPLITS, _carve(len(base), seed, (0.7, 0.1, 0.2))))
        return _Subset(base, parts[split], transform)

    classes = tuple(_readable_class(c) for c in base.classes)
    return Task(f"imagefolder:{path}", classes, GENERIC_TEMPLATES, make, f"ImageFolder at {path}", "user")


def torchvision_dataset_class(name: str) -> type:
    """The torchvision dataset class named ``name``, in any letter case (``mnist`` is MNIST)."""
    import torchvision.datasets as tvd
    from torch.utils.data import Dataset
    known = {n.lower(): n for n in dir(tvd)
             if isinstance(getattr(tvd, n), type) and issubclass(getattr(tvd, n), Dataset)}
    if name.lower() not in known:
        raise unknown_name("torchvision dataset", name, sorted(known.values()), listed=[],
                           more=" Choose from the dataset classes of torchvision.datasets")
    return getattr(tvd, known[name.lower()])


def torchvision_task(name: str, root: str | None, download: bool = False, seed: int = 0) -> Task:
    """A torchvision dataset, with deterministic splits:

    - datasets with ``train=`` or ``split=`` (MNIST, CIFAR, SVHN, GTSRB, Food101, ...): their test set is the
      test split, and val is 10% carved from their training set (as PAINT does);
    - datasets with one set only (EuroSAT, SUN397, Caltech101, ...): 70/10/20 carved with ``seed``.
    """
    cls = torchvision_dataset_class(name)
    name = cls.__name__
    if root is None:
        raise ValueError(f"torchvision:{name} needs a data root (--data-root DIR); add --download to fetch it there")
    params = inspect.signature(cls.__init__).parameters
    options = {"download": download} if "download" in params else {}

    @lru_cache(maxsize=3)
    def load(part: str):
        try:
            if "train" in params:
                return cls(root, train=part == "train", **options)
            if "split" in params:
                try:
                    return cls(root, split=part, **options)
                except ValueError:
                    if part != "train":
                        raise
                    return cls(root, split="trainval", **options)  # OxfordIIITPet names its training set so
            return cls(root, **options)
        except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
            hint = "" if download else " (add --download to fetch it there)"
            raise ValueError(f"torchvision:{name} is not readable under {root}: {e}{hint}") from e

    has_test = "train" in params or "split" in params

    def make(split: str, transform: Transform | None) -> Dataset:
        if has_test and split == "test":
            ds = load("test")
            return _Subset(ds, np.arange(len(ds)), transform)
        if has_test:
            train, val = _carve(len(load("train")), seed, (0.9, 0.1))
            return _Subset(load("train"), {"train": train, "val": val}[split], transform)
        parts = dict(zip(SPLITS, _carve(len(load("all")), seed, (0.7, 0.1, 0.2))))
        return _Subset(load("all"), parts[split], transform)

    classnames, templates = _torchvision_prompts(name, getattr(load("train" if has_test else "all"), "classes", None))
    return Task(f"torchvision:{name}", classnames, templates, make, f"torchvision {name} at {root}", "user")


def _torchvision_prompts(name: str, classes: Sequence | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Class names and templates of torchvision dataset ``name``: CLIP's own where its evaluation has them (names
    by position: torchvision's label order is the one CLIP's lists follow), else the dataset's names cleaned
    with the generic templates."""
    from .clip_prompts import clean_classname, clip_prompts
    clip = clip_prompts(name)
    templates = clip.templates if clip else GENERIC_TEMPLATES
    if clip and clip.classnames:
        if classes and len(classes) != len(clip.classnames):
            raise ValueError(f"torchvision:{name} has {len(classes)} classes where the full dataset has "
                             f"{len(clip.classnames)}: the copy under the data root is incomplete or not {name}")
        return clip.classnames, templates
    if not classes:
        raise ValueError(f"torchvision:{name} has no .classes list; use an imagefolder task instead")
    return tuple(clean_classname(c) for c in classes), templates


def export_imagefolder(task_name: str, out: str | Path, limit: int | None = None) -> dict[str, int]:
    """Write an embedded task as ``out/{train,val,test}/<class>/<i>.png``: try the real ImageFolder path on it.

    ``out`` must be new or empty: nothing already there is overwritten."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} already exists and is not an empty folder; choose a new folder")
    task = get_task(task_name)
    counts = {}
    for split in SPLITS:
        ds = task.split(split)
        n = len(ds) if limit is None else min(limit, len(ds))
        for i in range(n):
            img, label = ds[i]
            folder = Path(out) / split / task.classnames[label].replace(" ", "_")
            folder.mkdir(parents=True, exist_ok=True)
            img.save(folder / f"{i:05d}.png")
        counts[split] = n
    return counts
