"""What every task source shares: the Task type, its splits, and the pieces real-data sources build splits from.

The sources (``embedded``, ``folders``, ``torchvision_tasks``, ``typographic``) import from here and never from
the registry in ``tasks``, which imports them: the registry sits on top, this module at the bottom.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # the splits are plain map-style datasets (len + getitem), which DataLoader takes as they
    import torch   # are: the registry imports without torch, so `paint-core list` and a task-name check are quick
    from torch.utils.data import Dataset


SPLITS = ("train", "val", "test")
Transform = Callable[[Image.Image], "torch.Tensor"]
# the templates of a task whose classes have no templates of their own (folders, most torchvision sets)
GENERIC_TEMPLATES = ("a photo of a {}.", "a blurry photo of a {}.", "a photo of the {}.", "a close-up photo of a {}.")
FOLDER_MAX_ENTRIES = 1_000_000  # directory entries looked at in one walk of a user's folder


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


class Subset:
    """The rows ``indices`` of ``base`` (an indexable of (image, label)), images in RGB and transformed: torch's
    Subset plus the conversion and the transform, without importing torch."""

    def __init__(self, base, indices: np.ndarray, transform: Transform | None):
        self.base, self.indices, self.transform = base, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        img, label = self.base[int(self.indices[i])]
        img = img.convert("RGB") if isinstance(img, Image.Image) else img
        return (self.transform(img) if self.transform else img), int(label)


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


def carve_indices(n: int, seed: int, fractions: tuple[float, ...]) -> list[np.ndarray]:
    """``range(n)`` shuffled by ``seed`` and cut into parts of these fractions (the last takes the rest):
    (0.7, 0.1, 0.2) for train / val / test of a set with one part, (0.9, 0.1) for val carved from train."""
    order = np.random.default_rng(seed).permutation(n)
    cuts = np.cumsum([int(round(f * n)) for f in fractions[:-1]])
    return np.split(order, cuts)


def readable_class(name: str) -> str:
    """A folder or file-name class as a prompt reads it: ``traffic_light`` is ``traffic light``."""
    return name.replace("_", " ").strip()
