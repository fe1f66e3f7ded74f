"""The training batch feed alone, in images/s: how fast shuffled 224 px batches reach the device, no model.

    python -m benchmarks.feed --device cpu
    python -m benchmarks.feed --device cuda --batch-size 512

Side by side, in one run, over the same ``--batches`` x ``--batch-size`` random images:
- before: the fine-tune's former feed, a DataLoader over a TensorDataset of float images (per-sample indexing,
  collation, pinning on CUDA), each batch then copied to the device;
- engine, float tensors: ``feed.train_batches`` over the same TensorDataset (whole-batch ``index_select``, on
  the device when they fit);
- engine, decoded uint8: ``feed.train_batches`` over the same images as a decoded split (uint8, normalised on
  the device; held there when it fits, else read from the file a batch at a time);
- plain slicing: ``images[i:i + b].to(device)`` in order (no shuffling: a ceiling, not a feed a trainer can use).
Each is timed after its first batch (the start-up: the copy to the device, the loader) until the device holds the
last one. Target (issue 28): the feed well above the model's pace (ViT-B-32 trains at ~5,000 img/s on an H200).
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

from .common import Clock, device_name, write_json
from paint_core.data.decoded import DecodedSplit, normalize_uint8
from paint_core.engine.feed import train_batches
from paint_core.runtime import make_runtime, use_runtime

MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def timed(batches, count: int, clock: Clock) -> float:
    """Images/s over batches 2..count of ``batches`` (the first is the start-up)."""
    it = iter(batches)
    first = next(it)[0]
    t0, n = clock(), 0
    for _ in range(count - 1):
        x = next(it)[0]
        n += len(x)
    del first
    return n / (clock() - t0)


def before(data: TensorDataset, batch: int, device: torch.device):
    gen = torch.Generator().manual_seed(0)
    sampler = BatchSampler(RandomSampler(data, generator=gen), batch, drop_last=True)
    while True:
        for x, y in DataLoader(data, batch_sampler=sampler, generator=gen, pin_memory=device.type == "cuda"):
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def slicing(images: torch.Tensor, labels: torch.Tensor, batch: int, device: torch.device):
    while True:
        for i in range(0, len(images) - batch + 1, batch):
            yield images[i:i + batch].to(device, non_blocking=True), labels[i:i + batch].to(device, non_blocking=True)


def decoded(folder: Path, u8: np.ndarray, labels: torch.Tensor) -> DecodedSplit:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "images.u8").write_bytes(u8.tobytes())
    np.save(folder / "labels.npy", labels.numpy())
    (folder / "meta.json").write_text(json.dumps({"n": len(u8), "shape": list(u8.shape[1:]), "name": "bench"}))
    return DecodedSplit(folder, MEAN, STD)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--batches", type=int, default=4, help="distinct batches of images (default: %(default)s)")
    ap.add_argument("--count", type=int, default=12, help="batches drawn per feed (default: %(default)s)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    runtime = make_runtime(args.device)
    dev = runtime.torch_device
    clock = Clock(dev)
    n, b = args.batch_size * args.batches, args.batch_size
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)
    labels = torch.from_numpy(rng.integers(0, 10, n))
    images = normalize_uint8(torch.from_numpy(u8), MEAN, STD)
    data = TensorDataset(images, labels)
    with use_runtime(runtime), tempfile.TemporaryDirectory() as tmp:
        split = decoded(Path(tmp) / "split", u8, labels)
        rates = {
            "before": timed(before(data, b, dev), args.count, clock),
            "engine_float": timed(train_batches(data, b, 0), args.count, clock),
            "engine_uint8": timed(train_batches(split, b, 0), args.count, clock),
            "plain_slicing": timed(slicing(images, labels, b, dev), args.count, clock),
        }
    print(f"batch feed on {runtime.device} ({device_name(dev)}), {b} images of 224 px per batch, shuffled from {n}")
    for k, v in rates.items():
        print(f"  {k:14s}: {v:10.0f} img/s")
    print(f"  engine float / before = {rates['engine_float'] / rates['before']:.1f}x, "
          f"engine uint8 / before = {rates['engine_uint8'] / rates['before']:.1f}x")
    write_json(args.json, {"bench": "feed", "device": device_name(dev), "batch": b, **rates})


if __name__ == "__main__":
    main()
