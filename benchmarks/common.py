"""What the benchmarks share: the proxy tower's config, the device's name and peak, FLOPs, timing, JSON output,
the process's resident memory.

``proxy-vit-224`` (model_configs/) is an open_clip ViT at 224 px whose step costs almost nothing (patch 56,
width 32, one layer: ~20 MFLOP per image for forward + backward, against ~26 GFLOP for ViT-B-32), so host-side
costs (the feed, the loop) show on a CPU as they would next to a fast GPU.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

import torch

CONFIGS = Path(__file__).resolve().parent / "model_configs"

# Dense bfloat16 peaks in FLOP/s by device name. H100 and H200 share their compute: 790 TFLOP/s is what an
# 8192^3 bfloat16 matrix product reaches on this project's H200 (its datasheet says 989); A100 and L4 datasheet.
BF16_PEAK = {"H200": 790e12, "H100": 790e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12}


def register_proxy() -> None:
    """Make the benchmarks' model configs (the proxy tower) known to open_clip."""
    import open_clip
    open_clip.add_model_config(CONFIGS)


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def bf16_peak(device: torch.device | str) -> tuple[float | None, str]:
    """(peak FLOP/s, its name in the table) for ``device``, (None, "unknown") when the table has none."""
    device = torch.device(device)
    if device.type != "cuda":
        return None, "unknown (CPU)"
    name = torch.cuda.get_device_name(device)
    for key, peak in BF16_PEAK.items():
        if key in name:
            return peak, f"{key} {peak / 1e12:.0f} TFLOP/s"
    return None, f"unknown ({name})"


def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def train_flops_per_image(model: torch.nn.Module, image_size: int, device: torch.device, n: int = 4) -> float:
    """FLOPs of one forward + backward of ``model.visual`` per image (torch.utils.flop_counter)."""
    from torch.utils.flop_counter import FlopCounterMode
    was = model.visual.training
    model.visual.train()
    x = torch.randn(n, 3, image_size, image_size, device=device)
    with FlopCounterMode(display=False) as counter:
        model.encode_image(x).float().pow(2).mean().backward()
    model.zero_grad(set_to_none=True)
    model.visual.train(was)
    return counter.get_total_flops() / n


def sdpa_ops(model: torch.nn.Module, image_size: int, device: torch.device) -> list[str]:
    """Names of the scaled-dot-product-attention ops one training step of the image tower runs (empty: none)."""
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    x = torch.randn(2, 3, image_size, image_size, device=device)
    with profile(activities=activities) as prof:
        model.encode_image(x).float().pow(2).mean().backward()
    model.zero_grad(set_to_none=True)
    return sorted({e.name for e in prof.events() if "scaled_dot_product" in e.name})


class Clock:
    """Wall-clock marks after the device has finished what was queued (sync first)."""

    def __init__(self, device: torch.device | str):
        self.device = device

    def __call__(self) -> float:
        sync(self.device)
        return time.perf_counter()


def write_json(path: str | None, record: dict) -> None:
    """Append ``record`` as one JSON line to ``path`` (the GPU check's table reads them), if given."""
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


def attempt(fn: Callable[[], dict]) -> dict:
    """``fn()``, or {"failed": reason} when it raises: one optional figure must not stop the others."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 (any failure of an optional feature is reported, not fatal)
        return {"failed": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}


def rss_mb(pid: int | str = "self") -> float:
    """A process's resident memory in MB (/proc/<pid>/statm; this process by default)."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
