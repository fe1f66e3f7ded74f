"""``imagefolder:PATH`` tasks: ``PATH/{train,val,test}/<class>/*`` or one ``PATH/<class>/*`` folder split 70/10/20
by a seed, found by a bounded walk that follows no symbolic links (validation is carved from training data,
never from test data).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .task_types import (FOLDER_MAX_ENTRIES, GENERIC_TEMPLATES, SPLITS, ImageFiles, Subset, Task, Transform,
                         carve_indices, readable_class)
from .typographic import looks_typographic

if TYPE_CHECKING:
    from torch.utils.data import Dataset


log = logging.getLogger(__name__)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
FOLDER_MAX_DEPTH = 4          # folders below a class folder


class FolderWalkError(ValueError):
    """A folder that is not a dataset, or too big or too deep to walk."""


def scan_image_folder(root: str | Path, max_depth: int = FOLDER_MAX_DEPTH,
                      max_entries: int = FOLDER_MAX_ENTRIES) -> ImageFiles:
    """``root/<class>/**/<image>``, walked without following symbolic links, at most ``max_depth`` folders
    below a class folder and ``max_entries`` entries in all; past either limit it stops with a clear error."""
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
            return Subset(ds, np.arange(len(ds)), transform)
        if has_splits and (root / "val").is_dir() and split == "val":
            ds = scan_image_folder(root / "val")
            if ds.classes != base.classes:
                raise ValueError(f"imagefolder task: classes of {root / 'val'} differ from {root / 'train'}")
            return Subset(ds, np.arange(len(ds)), transform)
        if has_splits:  # carve val from train
            train, val = carve_indices(len(base), seed, (0.9, 0.1))
            return Subset(base, {"train": train, "val": val}[split], transform)
        parts = dict(zip(SPLITS, carve_indices(len(base), seed, (0.7, 0.1, 0.2))))
        return Subset(base, parts[split], transform)

    classes = tuple(readable_class(c) for c in base.classes)
    return Task(f"imagefolder:{path}", classes, GENERIC_TEMPLATES, make, f"ImageFolder at {path}", "user")
