"""PAINT's typographic-attack data as a task: one folder of images named ``label=<class>_text=<word>.png``.

``typographic:PATH`` is evaluation-only (every image is scored; train / val are refused rather than carved
from the test images), ``typographic-split:PATH`` carves 70/10/20 for fine-tuning on it; ``?words`` after the
path adds the written words to the classes, so an attack can be measured when the words are not classes
themselves. The written word of every image is kept (``Task.written_class``), so the attack-success rate
(the model predicts the written word) is reported next to accuracy.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..io.uploads import unpack_zip
from .tasks import (FOLDER_MAX_ENTRIES, GENERIC_TEMPLATES, SPLITS, ImageFiles, Task, Transform, _carve,
                    _readable_class, _Subset)


FILENAME = re.compile(r"^label=(?P<label>.+?)_text=(?P<text>.+)\.(?:png|jpe?g|webp|bmp)$", re.IGNORECASE)


def looks_typographic(folder: Path) -> bool:
    """Whether ``folder`` holds files in PAINT's ``label=..._text=...`` naming (for a hint in other errors)."""
    try:
        with os.scandir(folder) as it:
            return any(FILENAME.match(e.name) for _, e in zip(range(200), it))
    except OSError:
        return False


def _scan(root: Path) -> list[tuple[str, str, str]]:
    """(path, label, written text) of every image in the flat folder ``root``; other files are an error."""
    found, odd, seen = [], [], 0
    with os.scandir(root) as it:
        for e in it:
            seen += 1
            if seen > FOLDER_MAX_ENTRIES:
                raise ValueError(f"typographic task: {root} has more than {FOLDER_MAX_ENTRIES:,} entries")
            if e.name.startswith(".") or e.is_dir(follow_symlinks=False):
                continue
            m = FILENAME.match(e.name)
            if m is None or e.is_symlink():
                odd.append(e.name)
                continue
            found.append((e.path, _readable_class(m["label"]), _readable_class(m["text"])))
    if odd:
        raise ValueError(f"typographic task: {len(odd)} file(s) in {root} are not named label=<class>_text=<word>"
                         f".<png|jpg> (first: {sorted(odd)[0]!r})")
    if not found:
        raise ValueError(f"typographic task: no images named label=<class>_text=<word>.png in {root}")
    return sorted(found)


def typographic_task(spec: str, carve: bool = False, seed: int = 0) -> Task:
    """The task of ``spec`` = ``PATH`` or ``PATH?words`` (see the module docstring)."""
    path, _, option = spec.partition("?")
    if option not in ("", "words"):
        raise ValueError(f"typographic task: unknown option {option!r} (the one option is ?words)")
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"typographic task: {root} is not a folder")
    files = _scan(root)
    labels = sorted({label for _, label, _ in files})
    classes = sorted(set(labels) | {text for _, _, text in files}) if option == "words" else labels
    if len(classes) < 2:
        raise ValueError(f"typographic task: {root} has a single class ({classes[0]!r}); every image would be "
                         "counted correct. Add ?words to score the written words as classes too")
    index = {c: i for i, c in enumerate(classes)}
    images = ImageFiles(classes, [(p, index[label]) for p, label, _ in files])
    written = np.array([index.get(text, -1) for _, _, text in files])
    parts = dict(zip(SPLITS, _carve(len(files), seed, (0.7, 0.1, 0.2)))) if carve else None

    def indices(split: str) -> np.ndarray:
        if parts is not None:
            return parts[split]
        if split != "test":
            raise ValueError(f"typographic:{spec} is evaluation-only (every image is scored as test); to fine-tune "
                             f"on it, use typographic-split:{spec} (70/10/20)")
        return np.arange(len(files))

    def make(split: str, transform: Transform | None):
        return _Subset(images, indices(split), transform)

    kind = "typographic-split" if carve else "typographic"
    return Task(f"{kind}:{spec}", tuple(classes), GENERIC_TEMPLATES, make,
                f"PAINT typographic layout at {path} ({len(files)} images)", "user",
                written_class=lambda split: written[indices(split)])


def unpack_typographic_zip(data: bytes, root: str | Path, user: str) -> Path:
    """The folder of a zip of PAINT-layout images, unpacked flat under ``root`` once per content for ``user``
    (limits, damage and clean-up: ``io.uploads``); ``UploadRefused`` with one line for anything odd."""
    return unpack_zip(data, root, user, lambda name: FILENAME.match(name) is not None,
                      "label=<class>_text=<word>.png")
