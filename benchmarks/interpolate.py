"""Interpolation speed on ViT-B-32 float32 (605 MB per copy), side by side in one run.

    python -m benchmarks.interpolate [--model ViT-B-32] [--repeats 10]
    python -m benchmarks.interpolate --model ViT-L-14 --device cuda     # issue 12: within 1.6x of a device copy

Prints the median time of: the naive path (dict comprehension + load_state_dict), paint_core's
Interpolator.set_alpha, Interpolator.set_plan with a different coefficient per block, and a plain copy of the
same bytes (the memory-bandwidth floor); then the ratios. Targets: Interpolator within 2x of the copy and at least
5x faster than the naive path (issue 3); a per-block plan within 1.1x of a scalar alpha (issue 27).
"""
from __future__ import annotations



import argparse
import statistics
import time

import open_clip
import torch

from paint_core import Interpolator
from paint_core.core.plan import Plan
from paint_core.runtime import make_runtime


def timed(fn, repeats: int, sync=lambda: None) -> float:
    fn()  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = make_runtime(args.device).torch_device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    model = open_clip.create_model(args.model, pretrained=None).eval().to(device)
    zs = {k: v.clone() for k, v in model.state_dict().items()}
    ft = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v.clone() for k, v in zs.items()}
    nbytes = sum(v.numel() * v.element_size() for v in zs.values())
    alphas = iter([0.1 * (i % 10) for i in range(10_000)])

    def naive():
        a = next(alphas)
        model.load_state_dict({k: (1 - a) * z + a * ft[k] if z.is_floating_point() else z for k, z in zs.items()})

    naive_s = timed(naive, args.repeats, sync)
    interp = Interpolator(model, zs, ft)
    interp_s = timed(lambda: interp.set_alpha(next(alphas)), args.repeats, sync)
    blocks = interp.endpoints.varying
    plans = iter([Plan.per_block({b: (0.1 * (i + j) % 1.0) for j, b in enumerate(blocks)}) for i in range(1000)])
    plan_s = timed(lambda: interp.set_plan(next(plans)), args.repeats, sync)
    src = torch.cat([v.reshape(-1).float() for v in zs.values() if v.is_floating_point()])
    dst = torch.empty_like(src)
    copy_s = timed(lambda: dst.copy_(src), args.repeats, sync)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, torch threads {torch.get_num_threads()}"
    print(f"{args.model}: {nbytes / 1e6:.0f} MB of weights, median of {args.repeats}, {where}")
    print(f"  naive dict + load_state_dict : {naive_s * 1e3:8.1f} ms")
    print(f"  Interpolator.set_alpha       : {interp_s * 1e3:8.1f} ms")
    print(f"  Interpolator.set_plan ({len(blocks)} blocks): {plan_s * 1e3:6.1f} ms")
    print(f"  plain copy of the same bytes : {copy_s * 1e3:8.1f} ms")
    print(f"  Interpolator / copy = {interp_s / copy_s:.2f}x (target <= 2x); "
          f"naive / Interpolator = {naive_s / interp_s:.1f}x (target >= 5x); "
          f"plan / scalar = {plan_s / interp_s:.2f}x (target <= 1.1x)")


if __name__ == "__main__":
    main()
