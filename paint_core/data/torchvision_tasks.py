"""``torchvision:NAME`` tasks: a torchvision dataset under a data root (``download=True`` fetches it there), with
deterministic splits; class names and templates are CLIP's own where its evaluation has them.
"""
from __future__ import annotations

import inspect
from functools import lru_cache
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..core.names import unknown_name
from .task_types import GENERIC_TEMPLATES, SPLITS, Subset, Task, Transform, carve_indices

if TYPE_CHECKING:
    from torch.utils.data import Dataset


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
            return Subset(ds, np.arange(len(ds)), transform)
        if has_test:
            train, val = carve_indices(len(load("train")), seed, (0.9, 0.1))
            return Subset(load("train"), {"train": train, "val": val}[split], transform)
        parts = dict(zip(SPLITS, carve_indices(len(load("all")), seed, (0.7, 0.1, 0.2))))
        return Subset(load("all"), parts[split], transform)

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
