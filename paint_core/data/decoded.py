"""Decode each image once: a split at the model's input resolution as uint8 on disk, streamed back in batches.

A sweep scores every split at every alpha; decoding and resizing every image again at each alpha would cost more
than the forward pass, and holding a split as float tensors does not fit (ImageNet's validation set at 224 px is
30 GB). ``decoded_split`` runs the geometric part of the model's preprocess (resize, crop, RGB) once, through
DataLoader workers, into a uint8 file keyed by the task, the split, the transform and the files' identity;
``DecodedSplit`` reads it back a batch at a time and does ToTensor + Normalize per batch, bit for bit what the
preprocess does (``normalize_uint8``). On the CPU memory stays one batch whatever the split's size (a CUDA
device keeps a split that fits, see ``engine/feed.py``), and a later sweep, run or process with the same key
reuses the file. The cache lives in ``$PAINT_CACHE_DIR`` (default
``~/.cache/paint_explorer/decoded``); deleting it only costs a decode.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T
from tqdm.auto import tqdm


log = logging.getLogger(__name__)
CACHE_ENV = "PAINT_CACHE_DIR"
FORMAT = 1


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "paint_explorer" / "decoded")


def normalize_uint8(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, H, W], exactly ToTensor + Normalize of open_clip's preprocess, in the
    same contiguous layout as its stacked tensors: the same values in another layout (channels-last strides) gave
    other convolution kernels and logits up to 8e-5 apart on micro-rn-s; contiguous, the decoded split and the
    preprocess give the model identical inputs, and the normalisation runs twice as fast on a CPU."""
    x = images.permute(0, 3, 1, 2).contiguous().float().div_(255)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return x.sub_(m).div_(s)


def split_preprocess(preprocess: Callable) -> tuple[Callable, tuple[float, ...], tuple[float, ...]] | None:
    """(geometric part, mean, std) of a Compose ending in ToTensor + Normalize (open_clip's preprocess), or None
    for any other transform (then nothing can be cached and every pass runs the whole transform)."""
    steps = list(getattr(preprocess, "transforms", []))
    if len(steps) < 2 or not isinstance(steps[-1], T.Normalize) or "ToTensor" not in type(steps[-2]).__name__:
        return None
    return T.Compose(steps[:-2]), tuple(float(v) for v in steps[-1].mean), tuple(float(v) for v in steps[-1].std)


class DecodedSplit(Dataset):
    """A decoded split on disk: ``read(start, stop)`` gives uint8 [k, H, W, 3], ``normalize`` the model's input;
    as a Dataset it yields (normalized image, label) like the preprocessed split it replaces."""

    def __init__(self, folder: Path, mean: Sequence[float], std: Sequence[float]):
        meta = json.loads((folder / "meta.json").read_text())
        self.folder, self.n, self.shape = folder, int(meta["n"]), tuple(meta["shape"])
        self.labels = torch.from_numpy(np.load(folder / "labels.npy"))
        self.mean, self.std = tuple(mean), tuple(std)
        self._bytes = int(np.prod(self.shape))
        if len(self.labels) != self.n or (folder / "images.u8").stat().st_size != self.n * self._bytes:
            raise ValueError(f"decoded cache {folder} is incomplete")

    def __len__(self) -> int:
        return self.n

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Images start..stop-1 as uint8, read with plain file I/O (no memory map: what is read is let go)."""
        stop = min(stop, self.n)
        with open(self.folder / "images.u8", "rb") as f:
            f.seek(start * self._bytes)
            buf = f.read((stop - start) * self._bytes)
        return torch.frombuffer(bytearray(buf), dtype=torch.uint8).view(stop - start, *self.shape)

    def take(self, indices: Sequence[int]) -> torch.Tensor:
        """Images at ``indices`` (any order) as uint8 [k, H, W, 3]: a shuffled batch of a split too big to hold."""
        rows = np.memmap(self.folder / "images.u8", dtype=np.uint8, mode="r", shape=(self.n, *self.shape))
        return torch.from_numpy(np.ascontiguousarray(rows[np.asarray(indices, dtype=np.int64)]))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return normalize_uint8(images, self.mean, self.std)

    def __getitem__(self, i: int):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.normalize(self.read(i, i + 1))[0], int(self.labels[i])


class Uint8Split(Dataset):
    """A split read through the geometric part of the preprocess only: items (uint8 [H, W, 3], label), 4x fewer
    bytes to collate, pin and copy than float images; ``normalize`` finishes the preprocess on the device, bit
    for bit. For a split read about once (a fine-tune shorter than an epoch), where decoding it all would not pay."""

    def __init__(self, dataset: Dataset, mean: Sequence[float], std: Sequence[float]):
        self.items, self.mean, self.std = _Geometric(dataset, len(dataset)), tuple(mean), tuple(std)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return normalize_uint8(images, self.mean, self.std)


def uint8_split(make_split: Callable[[Callable], Dataset], preprocess: Callable) -> Uint8Split | None:
    """``make_split(geometric part of preprocess)`` as a Uint8Split; None when the preprocess cannot be split."""
    parts = split_preprocess(preprocess)
    if parts is None:
        return None
    geometric, mean, std = parts
    return Uint8Split(make_split(geometric), mean, std)


class _Geometric(Dataset):
    def __init__(self, dataset: Dataset, n: int):
        self.dataset, self.n = dataset, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        img, label = self.dataset[i]
        if not isinstance(img, Image.Image):
            raise TypeError(f"the split's transform gave {type(img).__name__}, expected a PIL image")
        return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.uint8).copy()), int(label)


def fingerprint(dataset: Dataset) -> str:
    """What identifies a split's content without reading it: its files (path, size, modification time) when it
    has ``samples``, its seeds when it is generated, its class and length otherwise; subsets add their indices."""
    h = hashlib.sha256(f"{type(dataset).__module__}.{type(dataset).__qualname__}:{len(dataset)}".encode())
    base = getattr(dataset, "base", None)
    if base is not None and hasattr(dataset, "indices"):
        h.update(np.asarray(dataset.indices, dtype=np.int64).tobytes())
        h.update(fingerprint(base).encode())
    for path, label in getattr(dataset, "samples", None) or []:
        try:
            st = os.stat(path)
            h.update(f"{path}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{path}\0missing\n".encode())
    for attr in ("seed", "root", "split", "train"):
        if hasattr(dataset, attr):
            h.update(f"{attr}={getattr(dataset, attr)!r}".encode())
    return h.hexdigest()


def decoded_split(make_split: Callable[[Callable], Dataset], name: str, preprocess: Callable,
                  limit: int | None = None, workers: int = 0, progress: bool = True,
                  code_version: str = "") -> DecodedSplit | None:
    """The split ``make_split(transform)`` (first ``limit`` images) decoded at the input resolution of
    ``preprocess``: from the cache when its key is there, else decoded once now. None when the preprocess cannot
    be split (not ToTensor + Normalize at the end): the caller then streams the whole transform."""
    parts = split_preprocess(preprocess)
    if parts is None:
        return None
    geometric, mean, std = parts
    dataset = make_split(geometric)
    n = len(dataset) if limit is None else min(int(limit), len(dataset))
    if n == 0:
        raise ValueError(f"{name}: the split is empty")
    key = hashlib.sha256(json.dumps({"format": FORMAT, "name": name, "n": n, "transform": repr(geometric),
                                     "content": fingerprint(dataset), "code": code_version}).encode()).hexdigest()[:32]
    folder = cache_dir() / key
    if (folder / "meta.json").is_file():
        try:
            return DecodedSplit(folder, mean, std)
        except (ValueError, OSError, json.JSONDecodeError) as e:
            log.warning("%s; decoding again", e)
            shutil.rmtree(folder, ignore_errors=True)
    _decode(dataset, n, folder, name, workers, progress)
    return DecodedSplit(folder, mean, std)


def _decode(dataset: Dataset, n: int, folder: Path, name: str, workers: int, progress: bool) -> None:
    """Write the split beside ``folder`` and rename it into place (a killed decode leaves no half cache; two
    processes decoding the same key both succeed, one rename wins)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    stage = folder.parent / f".{folder.name}.{os.getpid()}.tmp"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        labels, shape = np.empty(n, dtype=np.int64), None
        loader = DataLoader(_Geometric(dataset, n), batch_size=64, num_workers=workers)
        done = 0
        with open(stage / "images.u8", "wb") as f, tqdm(total=n, desc=f"decode {name}", unit="img",
                                                        disable=not progress) as bar:
            for images, ys in loader:
                if shape is None:
                    shape = tuple(images.shape[1:])
                elif tuple(images.shape[1:]) != shape:
                    raise ValueError(f"{name}: images of different sizes after the transform ({shape} and "
                                     f"{tuple(images.shape[1:])}); the preprocess must crop to a fixed size")
                f.write(images.numpy().tobytes())
                labels[done:done + len(ys)] = ys.numpy()
                done += len(ys)
                bar.update(len(ys))
        np.save(stage / "labels.npy", labels)
        (stage / "meta.json").write_text(json.dumps({"n": n, "shape": list(shape), "name": name}))
        try:
            os.rename(stage, folder)
        except OSError:
            if not (folder / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
