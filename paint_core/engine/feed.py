"""How batches reach the device: the one feed of every trainer and of the one forward pass.

Profiled on the CPU (docs/experiments.md, issue 28): per-sample indexing and collation of in-memory images cost
more than a small tower's training step, and a sweep re-read and re-normalised every split at every alpha
through freshly started workers. So:

- in-memory tensors are cut whole: slices in order, ``index_select`` for a shuffled batch, never one sample at
  a time; on a CUDA device they are moved there once when they fit (``fits``) and cut there;
- a decoded split (uint8 on disk) is read once and kept as uint8 on the device while it lives, when it fits;
  images travel as uint8 (4x fewer bytes) and are normalised on the device (``normalize_uint8``, exactly the
  preprocess's ToTensor + Normalize);
- a decoded split that does not stay is read a batch ahead by one thread (no worker processes to start at
  every alpha); anything else streams through a DataLoader (workers, pinned memory); on CUDA the next batch is
  copied on a side stream while the current one computes.

Batches keep their order and their values: the shuffled order is the DataLoader's own (same sampler, same
generator), so a run gives the numbers it gave before.
"""
from __future__ import annotations

import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, TensorDataset

from ..data.decoded import DecodedSplit
from ..runtime import current_runtime

RESIDENT_FRACTION = 0.25  # of a CUDA device's free memory one split may take to stay there
READ_CHUNK = 1024         # images read from a decoded split's file at once when it is moved to the device
_RESIDENT: "weakref.WeakKeyDictionary[DecodedSplit, dict[str, torch.Tensor]]" = weakref.WeakKeyDictionary()


def fits(nbytes: int, device: torch.device) -> bool:
    """Whether ``nbytes`` may stay on ``device`` for a whole run: up to a quarter of a CUDA device's free memory.
    Never on the CPU: there a split streams from the page cache a batch at a time, so memory does not grow with
    the split (tests/test_streaming.py), and reading a batch costs far less than the CPU's forward pass on it."""
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= RESIDENT_FRACTION * free


def resident_images(split: DecodedSplit, device: torch.device) -> torch.Tensor | None:
    """All of ``split``'s images, uint8 [N, H, W, 3] on ``device``, read once and kept while the split lives
    (every alpha of a sweep reuses them); None when they do not fit."""
    copies = _RESIDENT.setdefault(split, {})
    key = str(device)
    if key not in copies:
        if not fits(split.n * int(np.prod(split.shape)), device):
            return None
        images = torch.empty((split.n, *split.shape), dtype=torch.uint8, device=device)
        for i in range(0, split.n, READ_CHUNK):  # a chunk at a time: the host never holds the whole split
            images[i:i + READ_CHUNK].copy_(split.read(i, i + READ_CHUNK))
        copies[key] = images
    return copies[key]


def normalized(batch: Any, normalize) -> Any:
    """The batch with its first element (uint8 images) normalised where it lies; others as they are."""
    if normalize is None:
        return batch
    return type(batch)((normalize(batch[0]), *batch[1:]))


# ------------------------------------------------------------------------------ moving batches
def _tensors(batch: Any) -> list[torch.Tensor]:
    if isinstance(batch, torch.Tensor):
        return [batch]
    if isinstance(batch, (list, tuple)):
        return [t for b in batch for t in _tensors(b)]
    return []


def _send(batch: Any, device: torch.device) -> Any:
    """Tensors of a (nested) batch moved to ``device``; from pinned memory the copy does not wait."""
    if isinstance(batch, torch.Tensor):
        if batch.device == device:
            return batch
        if device.type == "cuda" and batch.device.type == "cpu" and not batch.is_pinned():
            batch = batch.pin_memory()
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_send(b, device) for b in batch)
    return batch


def on_device(batches: Iterable[Any], device: torch.device) -> Iterator[Any]:
    """``batches`` moved to ``device``; on CUDA the next batch is copied on a side stream while the consumer
    computes on the current one (batches already there pass through untouched)."""
    if device.type != "cuda":
        for batch in batches:
            yield _send(batch, device)
        return
    stream, main = torch.cuda.Stream(device), torch.cuda.current_stream(device)
    it = iter(batches)

    def ahead():
        try:
            batch = next(it)
        except StopIteration:
            return None, False
        with torch.cuda.stream(stream):
            return _send(batch, device), True

    nxt, more = ahead()
    while more:
        main.wait_stream(stream)
        current = nxt
        for t in _tensors(current):
            if t.device.type == "cuda":
                t.record_stream(main)  # the copy's memory is not reused before the compute on it is done
        nxt, more = ahead()
        yield current


# ------------------------------------------------------------------------------ evaluation order
def eval_batches(data: torch.Tensor | Dataset, batch_size: int, device: torch.device, world: int = 1,
                 rank: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """(model input on ``device``, labels on the CPU or None), batches in order; only batches k with
    k % world == rank (each image meets the same batch as in one process)."""
    if isinstance(data, torch.Tensor):
        data = (data,)
    elif isinstance(data, TensorDataset):
        data = tuple(data.tensors)
    if isinstance(data, tuple):
        n = len(data[0])
        starts = range(rank * batch_size, n, world * batch_size)
        pairs = ((data[0][i:i + batch_size], data[1][i:i + batch_size] if len(data) > 1 else None) for i in starts)
        yield from ((x, y) for x, y in _with_cpu_labels(pairs, device))
        return
    rt = current_runtime()
    if isinstance(data, DecodedSplit):
        images = resident_images(data, device)
        total = (len(data) + batch_size - 1) // batch_size
        if images is not None:
            for k in range(rank, total, world):
                i = k * batch_size
                yield data.normalize(images[i:i + batch_size]), data.labels[i:i + batch_size]
            return
        if device.type == "cpu":  # normalised by the reading thread, beside the forward pass
            yield from _read_ahead(data, batch_size, range(rank, total, world), data.normalize)
            return
        stream = _read_ahead(data, batch_size, range(rank, total, world), lambda x: x.pin_memory())
        for x, y in _with_cpu_labels(stream, device):
            yield data.normalize(x), y
        return
    normalize = getattr(data, "normalize", None)
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=rt.workers,
                        pin_memory=device.type == "cuda")
    mine = (b for k, b in enumerate(loader) if k % world == rank)
    for x, y in _with_cpu_labels(((x, torch.as_tensor(y)) for x, y in mine), device):
        yield (normalize(x) if normalize is not None else x), y


def _read_ahead(split: DecodedSplit, batch_size: int, ks: Iterable[int], prepare: Callable[[torch.Tensor], Any]
                ) -> Iterator[tuple[Any, torch.Tensor]]:
    """(prepare(uint8 images), labels) of batches ``ks``, read by one thread a batch ahead of the consumer: file
    reads and torch ops release the GIL, so they overlap the forward pass, and no worker process is started per
    evaluation (a sweep evaluates every split at every alpha). At most two batches are in memory."""
    def job(k: int):
        i = k * batch_size
        return prepare(split.read(i, i + batch_size)), split.labels[i:i + batch_size]

    with ThreadPoolExecutor(1, thread_name_prefix="paint-read-ahead") as pool:
        pending: deque = deque()
        for k in ks:
            pending.append(pool.submit(job, k))
            if len(pending) > 1:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _with_cpu_labels(pairs: Iterable[tuple[torch.Tensor, torch.Tensor | None]], device: torch.device):
    """(input moved ahead to ``device``, labels left where they are)."""
    for x, y in on_device(((x, _Stay(y)) for x, y in pairs), device):
        yield x, y.value


class _Stay:
    """A value ``on_device`` leaves where it is (not a tensor to it)."""
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


# ------------------------------------------------------------------------------ training order
class _RankShare(torch.utils.data.Sampler):
    """This rank's share of each global batch: every rank draws the same global order (the one a single process
    would draw with the same seed) and takes its slice, so N processes train on exactly one process's batches."""

    def __init__(self, global_batches: BatchSampler, rank: int, world: int):
        self.global_batches, self.rank, self.world = global_batches, rank, world

    def __iter__(self):
        for batch in self.global_batches:
            share = len(batch) // self.world
            yield batch[self.rank * share:(self.rank + 1) * share]

    def __len__(self) -> int:
        return len(self.global_batches)


class _Gather(Dataset):
    """Tensors indexed a whole batch at a time (``__getitems__``: one ``index_select`` per tensor)."""

    def __init__(self, tensors: Sequence[torch.Tensor]):
        self.tensors = tuple(tensors)

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        if self.tensors[0].device.type == "cuda":
            idx = idx.pin_memory().to(self.tensors[0].device, non_blocking=True)
        return tuple(t.index_select(0, idx) for t in self.tensors)


class _GatherDecoded(Dataset):
    """A decoded split too big to hold: a batch's rows read from the file at once (uint8, labels)."""

    def __init__(self, split: DecodedSplit):
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split.take(indices), self.split.labels[torch.as_tensor(indices, dtype=torch.long)]


def _as_is(batch: Any) -> Any:
    return batch


def train_batches(train_set: Dataset, batch_size: int, seed: int, rank: int = 0, world: int = 1) -> Iterator[Any]:
    """Endless shuffled batches on the current runtime's device, epoch after epoch: full batches of
    ``batch_size`` (all of the set, unless it is smaller than one batch), this rank's share of each; with one
    process, the order of ``DataLoader(train_set, batch_size, shuffle=True)`` with a generator seeded ``seed``."""
    rt = current_runtime()
    device = rt.torch_device
    gen = torch.Generator().manual_seed(seed)
    drop_last = len(train_set) >= batch_size
    if not drop_last and world > 1:
        raise ValueError(f"the training split ({len(train_set)} images) is smaller than one global batch "
                         f"({batch_size}); use a smaller batch to train on {world} processes")
    sampler = _RankShare(BatchSampler(RandomSampler(train_set, generator=gen), batch_size, drop_last=drop_last),
                         rank, world)
    source, normalize, workers = _train_source(train_set, device, rt.workers)
    on_cpu = all(t.device.type == "cpu" for t in getattr(source, "tensors", ()))
    loader = DataLoader(source, batch_sampler=sampler, generator=gen, num_workers=workers,
                        collate_fn=_as_is if isinstance(source, (_Gather, _GatherDecoded)) else None,
                        pin_memory=device.type == "cuda" and on_cpu)
    while True:
        yield from (normalized(b, normalize) for b in on_device(loader, device))


def _train_source(train_set: Dataset, device: torch.device, workers: int) -> tuple[Dataset, Any, int]:
    """(what the DataLoader reads, the normalisation to apply on the device or None, its workers)."""
    if isinstance(train_set, TensorDataset):
        tensors = train_set.tensors
        if device.type == "cuda" and fits(sum(t.nbytes for t in tensors), device):
            tensors = tuple(t.to(device) for t in tensors)
        return _Gather(tensors), None, 0
    if isinstance(train_set, DecodedSplit):
        images = resident_images(train_set, device)
        if images is not None:
            return _Gather((images, train_set.labels.to(images.device))), train_set.normalize, 0
        return _GatherDecoded(train_set), train_set.normalize, 0
    return train_set, getattr(train_set, "normalize", None), workers
