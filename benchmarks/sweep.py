"""An 11-point sweep against eleven bare forward passes over the same images, side by side in one run.

    python -m benchmarks.sweep --model proxy-vit-224 --device cpu --n 300   # the CPU proxy
    python -m benchmarks.sweep --model ViT-B-32 --device cuda --precision amp_bf16 --n 2000 --workers 8

The engine: ``build_evals`` (text heads encoded once, images decoded once into the uint8 cache, here a fresh
temporary one, so the decode is counted; ``--workers`` processes decode) then ``sweep`` over alphas 0, 0.1, ...,
1 with the Interpolator. The reference: the same images preprocessed in memory beforehand (decode not counted),
eleven plain ``encode_image`` passes in batches with the weights set by ``torch.lerp``, argmax against the same
heads (on the device with the model). Printed apart: the start-up (heads + decode) and the eleven alphas.
Target (issue 28): the whole engine sweep, decode included, / eleven bare passes <= 1.2. Accuracies: equal.
"""
from __future__ import annotations

import argparse
import os
import tempfile

import torch
import torch.nn.functional as F

from .common import Clock, device_name, register_proxy, write_json
from paint_core.core.interpolation import Interpolator
from paint_core.data.tasks import get_task
from paint_core.engine.evaluation import build_evals, materialize, sweep, zero_shot_head
from paint_core.models.clip import load_model
from paint_core.runtime import autocast, make_runtime, use_runtime

ALPHAS = [round(0.1 * i, 1) for i in range(11)]


def bare_passes(model, zs, ft, data, batch_size: int, runtime) -> dict:
    """Accuracy per (alpha, task) of eleven plain passes; ``data``: task -> (images, labels, head), any device."""
    dev = runtime.torch_device
    acc = {}
    with torch.no_grad():
        for a in ALPHAS:
            model.load_state_dict({k: torch.lerp(zs[k], ft[k], a) if zs[k].is_floating_point() else zs[k] for k in zs})
            for t, (x, y, head) in data.items():
                head = head.to(dev)
                preds = []
                for i in range(0, len(x), batch_size):
                    with autocast(runtime):
                        f = F.normalize(model.encode_image(x[i:i + batch_size].to(dev)), dim=-1)
                        preds.append((model.logit_scale.exp() * f @ head.T).argmax(-1))
                acc[(a, t)] = int((torch.cat(preds).cpu() == y).sum()) / len(y)
    return acc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="proxy-vit-224")
    ap.add_argument("--tasks", default="digits,shapes")
    ap.add_argument("--n", type=int, default=500, help="test images per task")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="decode processes")
    ap.add_argument("--json", default=None, help="append the figures as a JSON line to this file")
    args = ap.parse_args()
    register_proxy()
    os.environ["PAINT_CACHE_DIR"] = tempfile.mkdtemp(prefix="paint-bench-cache-")
    runtime = make_runtime(args.device, args.precision, args.workers)
    clock = Clock(runtime.torch_device)
    tasks = args.tasks.split(",")
    with use_runtime(runtime):
        model, preprocess, tokenizer = load_model(args.model)
        zs = {k: v.clone() for k, v in model.state_dict().items()}
        g = torch.Generator().manual_seed(0)
        ft = {k: v + 0.02 * v.std() * torch.randn(v.shape, generator=g).to(v.device)
              if k.startswith("visual.") and v.is_floating_point() and v.numel() > 1 else v.clone()
              for k, v in zs.items()}

        data = {}
        for t in tasks:
            task = get_task(t)
            ds = materialize(task.split("test", preprocess), args.n)
            data[t] = (ds.tensors[0], ds.tensors[1], zero_shot_head(model, tokenizer, task.classnames, task.templates))
        bare_passes(model, zs, ft, {t: (x[:args.batch_size], y[:args.batch_size], h) for t, (x, y, h) in data.items()},
                    args.batch_size, runtime)  # warm-up: kernels, allocator
        t0 = clock()
        bare_acc = bare_passes(model, zs, ft, data, args.batch_size, runtime)
        bare = clock() - t0

        model.load_state_dict(zs)
        t0 = clock()
        evals = build_evals(model, preprocess, tokenizer, tasks, ("test",), args.n)
        t1 = clock()
        table = sweep(Interpolator(model, zs, ft), evals, ALPHAS, args.batch_size)
        t2 = clock()
    startup, alphas = t1 - t0, t2 - t1
    engine_acc = {(r.alpha, r.task): r.accuracy for r in table.itertuples()}
    worst = max(abs(engine_acc[k] - v) for k, v in bare_acc.items())
    name = device_name(runtime.torch_device)
    print(f"{args.model} on {runtime.device} ({name}), {args.precision}, {args.workers} decode workers: "
          f"11 alphas x {len(tasks)} tasks x {args.n} images")
    print(f"eleven bare forward passes (images preprocessed beforehand): {bare:7.2f} s")
    print(f"engine start-up (heads, decode into the cache):               {startup:7.2f} s")
    print(f"engine sweep, 11 alphas:                                      {alphas:7.2f} s "
          f"(steady state / bare = {alphas / bare:.3f})")
    print(f"engine / bare = {(startup + alphas) / bare:.3f} with the decode counted (target <= 1.2); "
          f"accuracies equal: {worst < 1e-12} (largest difference {worst:.4f})")
    write_json(args.json, {"bench": "sweep", "model": args.model, "device": name, "precision": args.precision,
                           "n": args.n, "tasks": len(tasks), "workers": args.workers, "bare_s": bare,
                           "startup_s": startup, "alphas_s": alphas, "ratio": (startup + alphas) / bare,
                           "steady_ratio": alphas / bare, "largest_accuracy_difference": worst})


if __name__ == "__main__":
    main()
