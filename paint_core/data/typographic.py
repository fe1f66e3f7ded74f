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
from typing import Sequence

import numpy as np

from .task_types import (FOLDER_MAX_ENTRIES, GENERIC_TEMPLATES, SPLITS, ImageFiles, Subset, Task, Transform,
                         carve_indices, readable_class)


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
            found.append((e.path, readable_class(m["label"]), readable_class(m["text"])))
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
    parts = dict(zip(SPLITS, carve_indices(len(files), seed, (0.7, 0.1, 0.2)))) if carve else None

    def indices(split: str) -> np.ndarray:
        if parts is not None:
            return parts[split]
        if split != "test":
            raise ValueError(f"typographic:{spec} is evaluation-only (every image is scored as test); to fine-tune "
                             f"on it, use typographic-split:{spec} (70/10/20)")
        return np.arange(len(files))

    def make(split: str, transform: Transform | None):
        return Subset(images, indices(split), transform)

    kind = "typographic-split" if carve else "typographic"
    return Task(f"{kind}:{spec}", tuple(classes), GENERIC_TEMPLATES, make,
                f"PAINT typographic layout at {path} ({len(files)} images)", "user",
                written_class=lambda split: written[indices(split)])


def unpack_typographic_zip(data: bytes, root: str | Path, user: str) -> Path:
    """The folder of a zip of PAINT-layout images, unpacked flat under ``root`` once per content for ``user``
    (limits, damage and clean-up: ``io.uploads``); ``UploadRefused`` with one line for anything odd."""
    from ..io.uploads import unpack_zip  # here, not at the top: io.uploads' writes bring torch, the registry must not
    return unpack_zip(data, root, user, lambda name: FILENAME.match(name) is not None,
                      "label=<class>_text=<word>.png")


# ------------------------------------------------------------------ the layouts other typographic sets ship in
# RTA-100 (Azuma & Matsui 2023, github.com/azuma164/Defense-Prefix, rta100.zip): PAINT's file names
# (label=<object>_text=<word>.jpg) in ours/data/, scored with the written words among the classes and the one
# template "a photo of a {}." (their datasets/rta100.py). SCAM (Westerhoff et al. 2025, a Hugging Face dataset,
# BLISS-e-V/SCAM): one table, columns image, object_label, attack_word, type (SCAM / SynthSCAM / NoSCAM), id,
# postit_area_pct, read here from the parquet files `datasets`' push_to_hub writes (image: {bytes, path}) or
# from an image folder with a metadata.csv / metadata.jsonl (file_name column), the imagefolder layout.
LITERATURE_TEMPLATES = ("a photo of a {}.",)
LAYOUT_MAX_DEPTH = 3  # folders searched below a given path for RTA-100's images or SCAM's parquet files
SCAM_PARTS = ("SCAM", "SynthSCAM", "NoSCAM")
SCAM_COLUMNS = ("object_label", "attack_word", "type")


def _find_rta_folder(root: Path) -> Path:
    """The one folder at most ``LAYOUT_MAX_DEPTH`` below ``root`` (``root`` included) holding PAINT-named images:
    RTA-100's zip puts them in ours/data/."""
    found, level = [], [root]
    for _ in range(LAYOUT_MAX_DEPTH + 1):
        found = [f for f in level if looks_typographic(f)]
        if found:
            break
        level = [Path(e.path) for f in level for e in _subfolders(f)]
    if len(found) != 1:
        raise ValueError(f"rta100 task: {root} holds " + (f"{len(found)} folders of label=<object>_text=<word> images "
                         f"({', '.join(str(f) for f in found[:3])}); name the one to score" if found else
                         f"no label=<object>_text=<word> images within {LAYOUT_MAX_DEPTH} folders (RTA-100's zip "
                         "unpacks them to ours/data/)"))
    return found[0]


def _entries(folder: Path) -> list[os.DirEntry]:
    """The visible entries of ``folder``, by name; past ``FOLDER_MAX_ENTRIES`` a clear error, not a long stall."""
    out = []
    with os.scandir(folder) as it:
        for e in it:
            if len(out) == FOLDER_MAX_ENTRIES:
                raise ValueError(f"{folder} has more than {FOLDER_MAX_ENTRIES:,} entries")
            if not e.name.startswith("."):
                out.append(e)
    return sorted(out, key=lambda e: e.name)


def _subfolders(folder: Path) -> list[os.DirEntry]:
    return [e for e in _entries(folder) if e.is_dir(follow_symlinks=False)]


def _parquet_files(folder: Path) -> list[Path]:
    """The parquet files at most ``LAYOUT_MAX_DEPTH`` folders below ``folder`` (a hub snapshot links its files
    to the cache's blobs: a link to a file counts)."""
    found, level = [], [folder]
    for _ in range(LAYOUT_MAX_DEPTH + 1):
        found += [Path(e.path) for f in level for e in _entries(f)
                  if e.name.endswith(".parquet") and Path(e.path).is_file()]
        level = [Path(e.path) for f in level for e in _subfolders(f)]
    return sorted(found)


def rta100_task(spec: str) -> Task:
    """``rta100:PATH``: RTA-100 as its zip unpacks (or any folder of PAINT-named images), evaluation-only, the
    written words among the classes, as its authors score it."""
    root = Path(spec)
    if not root.is_dir():
        raise ValueError(f"rta100 task: {root} is not a folder")
    files = _scan(_find_rta_folder(root))
    return _written_word_task(f"rta100:{spec}", ImageFiles([], [(p, -1) for p, _, _ in files]), range(len(files)),
                              [label for _, label, _ in files], [text for _, _, text in files],
                              f"RTA-100 layout at {spec} ({len(files)} images)")


def _written_word_task(name: str, images, rows: Sequence[int], labels: list[str], words: list[str | None],
                       description: str) -> Task:
    """An evaluation-only task of the ``rows`` of ``images`` (an indexable of (PIL image, anything)) whose classes
    are the objects' labels and the written words (per row); ``None`` for an image with nothing written on it."""
    classes = sorted(set(labels) | {w for w in words if w is not None})
    if len(classes) < 2:
        raise ValueError(f"{name}: a single class ({classes[0]!r}); every image would be counted correct")
    index = {c: i for i, c in enumerate(classes)}
    base = _Relabelled(images, rows, [index[label] for label in labels])
    written = np.array([-1 if w is None else index[w] for w in words])
    everything = np.arange(len(labels))

    def indices(split: str) -> np.ndarray:
        if split != "test":
            raise ValueError(f"{name} is evaluation-only (every image is scored as test)")
        return everything

    return Task(name, tuple(classes), LITERATURE_TEMPLATES, lambda split, transform: Subset(base, indices(split),
                transform), description, "user", written_class=lambda split: written[indices(split)])


class _Relabelled:
    """(PIL image, label): the image of ``images[rows[i]]`` (an (image, anything) pair), the label ``labels[i]``."""

    def __init__(self, images, rows: Sequence[int], labels: list[int]):
        self.images, self.rows, self.labels = images, rows, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.images[self.rows[i]][0], self.labels[i]


def scam_task(spec: str) -> Task:
    """``scam:PATH[?part=SCAM|SynthSCAM|NoSCAM|all]`` (default SCAM, the real post-its) where PATH is a folder of
    SCAM's parquet files or an image folder with its metadata, or ``scam:hf-hub:ORG/NAME`` (the dataset
    repository, fetched or found in the local cache). NoSCAM images have nothing written on them."""
    path, _, option = spec.partition("?")
    key, _, part = option.partition("=")
    if option and key != "part":
        raise ValueError(f"scam task: unknown option {option!r} (the one option is ?part=SCAM|SynthSCAM|NoSCAM|all)")
    part = part or "SCAM"
    if part not in SCAM_PARTS + ("all",):
        raise ValueError(f"scam task: unknown part {part!r}; choose from {', '.join(SCAM_PARTS)} or all")
    table, images = _scam_table(_dataset_folder(path))
    keep = [i for i, t in enumerate(table["type"]) if part == "all" or t == part]
    if not keep:
        raise ValueError(f"scam task: no {part} rows in {path} (parts found: {', '.join(sorted(set(table['type'])))})")
    labels = [str(table["object_label"][i]).strip() for i in keep]
    words = [None if table["type"][i] == "NoSCAM" else str(table["attack_word"][i]).strip() for i in keep]
    return _written_word_task(f"scam:{spec}", images, keep, labels, words,
                              f"SCAM layout at {path}, part {part} ({len(keep)} images)")


def _dataset_folder(path: str) -> Path:
    """A folder, or a ``hf-hub:ORG/NAME`` dataset repository's snapshot (fetched, or from the local cache)."""
    from ..models.clip import HUB_PREFIX, hub_unavailable
    if not path.startswith(HUB_PREFIX):
        if not Path(path).is_dir():
            raise ValueError(f"scam task: {path} is not a folder")
        return Path(path)
    from huggingface_hub import snapshot_download
    try:
        return Path(snapshot_download(path[len(HUB_PREFIX):], repo_type="dataset",
                                      allow_patterns=["*.parquet", "*.csv", "*.jsonl", "*.md"]))
    except Exception as e:  # noqa: BLE001 -- hub errors come in many types; one message for all
        raise hub_unavailable(path, "the dataset", e) from None


def _scam_table(folder: Path) -> tuple[dict[str, list], object]:
    """SCAM's columns (object_label, attack_word, type) and its images, from parquet files or a metadata file."""
    parquets = _parquet_files(folder)
    if parquets:
        images = ParquetImages(parquets)
        return images.columns, images
    for meta in ("metadata.csv", "metadata.jsonl"):
        if (folder / meta).is_file():
            return _metadata_table(folder, folder / meta)
    raise ValueError(f"scam task: {folder} holds neither parquet files nor a metadata.csv / metadata.jsonl")


def _metadata_table(folder: Path, meta: Path) -> tuple[dict[str, list], ImageFiles]:
    import pandas as pd
    frame = pd.read_csv(meta) if meta.suffix == ".csv" else pd.read_json(meta, lines=True)
    missing = [c for c in ("file_name",) + SCAM_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"scam task: {meta} lacks the column(s) {', '.join(missing)}")
    paths = []
    for name in frame["file_name"]:
        p = (folder / str(name)).resolve()
        if not p.is_relative_to(folder.resolve()) or not p.is_file():
            raise ValueError(f"scam task: {meta} names {name!r}, which is not a file inside {folder}")
        paths.append(str(p))
    return {c: frame[c].tolist() for c in SCAM_COLUMNS}, ImageFiles([], [(p, -1) for p in paths])


class ParquetImages:
    """The images of a dataset stored as parquet files (an ``image`` column of {bytes, path} structs, as
    ``datasets`` writes them), read one row group at a time: a whole set is never held in memory."""

    def __init__(self, files: list[Path]):
        import pyarrow as pa
        import pyarrow.parquet as pq
        self.files, self.rows, columns = files, [], {c: [] for c in SCAM_COLUMNS}
        for f in files:
            try:
                meta = pq.ParquetFile(f)
                names = meta.schema_arrow.names
                missing = [c for c in ("image",) + SCAM_COLUMNS if c not in names]
                if missing:
                    raise ValueError(f"scam task: {f} lacks the column(s) {', '.join(missing)}")
                table = meta.read(columns=list(SCAM_COLUMNS))
            except (OSError, pa.ArrowException) as e:
                raise ValueError(f"scam task: {f} is not a readable parquet file ({e})") from None
            for c in SCAM_COLUMNS:
                columns[c] += table.column(c).to_pylist()
            for group in range(meta.num_row_groups):
                self.rows += [(f, group, r) for r in range(meta.metadata.row_group(group).num_rows)]
        self.columns, self._cached = columns, None

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self):  # DataLoader workers get the file list, not the cached row group
        return {**self.__dict__, "_cached": None}

    def __getitem__(self, i: int):
        import io
        from PIL import Image
        file, group, row = self.rows[i]
        if self._cached is None or self._cached[0] != (file, group):
            import pyarrow.parquet as pq
            self._cached = ((file, group), pq.ParquetFile(file).read_row_group(group, columns=["image"])
                            .column("image").to_pylist())
        cell = self._cached[1][row]
        data = cell.get("bytes") if isinstance(cell, dict) else None
        if not data:
            raise ValueError(f"scam task: row {row} of {file} holds no image bytes")
        with Image.open(io.BytesIO(data)) as img:
            return img.convert("RGB"), -1
