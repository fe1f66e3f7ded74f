"""An 11-point sweep against eleven bare forward passes over the same images, side by side in one run.

    python benchmarks/sweep.py                                       # micro-rn-l, digits + shapes test splits
    python benchmarks/sweep.py --model ViT-B-32 --device cuda --precision amp_bf16 --n 2000

The engine: ``build_evals`` (text heads encoded once, images decoded once into the uint8 cache, here a fresh
temporary one, so the decode is counted) then ``sweep`` over alphas 0, 0.1, ..., 1 with the Interpolator.
The reference: the same images preprocessed in memory beforehand (decode not counted), eleven plain
``encode_image`` passes in batches with the weights set by ``torch.lerp``, argmax against the same heads.
Target (issue 12): engine / eleven bare passes <= 1.2. The accuracies of both must be equal (printed).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
import torch.nn.functional as F

from paint_core.core.interpolation import Interpolator
from paint_core.data.tasks import get_task
from paint_core.engine.evaluation import build_evals, materialize, sweep, zero_shot_head
from paint_core.models.clip import load_model
from paint_core.runtime import autocast, make_runtime, use_runtime

ALPHAS = [round(0.1 * i, 1) for i in range(11)]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="micro-rn-l")
    ap.add_argument("--tasks", default="digits,shapes")
    ap.add_argument("--n", type=int, default=500, help="test images per task")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--batch-size", type=int, default=256)
    args = ap.parse_args()
    os.environ["PAINT_CACHE_DIR"] = tempfile.mkdtemp(prefix="paint-bench-cache-")
    runtime = make_runtime(args.device, args.precision)
    tasks = args.tasks.split(",")
    with use_runtime(runtime):
        model, preprocess, tokenizer = load_model(args.model)
        zs = {k: v.clone() for k, v in model.state_dict().items()}
        g = torch.Generator().manual_seed(0)
        ft = {k: v + 0.02 * v.std() * torch.randn(v.shape, generator=g).to(v.device)
              if k.startswith("visual.") and v.is_floating_point() and v.numel() > 1 else v.clone()
              for k, v in zs.items()}

        # reference: preprocessed beforehand, eleven bare passes
        data = {}
        for t in tasks:
            task = get_task(t)
            ds = materialize(task.split("test", preprocess), args.n)
            data[t] = (ds.tensors[0], ds.tensors[1], zero_shot_head(model, tokenizer, task.classnames, task.templates))
        _sync(runtime.device)
        t0 = time.perf_counter()
        bare_acc = {}
        with torch.no_grad():
            for a in ALPHAS:
                model.load_state_dict({k: torch.lerp(zs[k], ft[k], a) if zs[k].is_floating_point() else zs[k]
                                       for k in zs})
                for t, (x, y, head) in data.items():
                    preds = []
                    for i in range(0, len(x), args.batch_size):
                        with autocast(runtime):
                            f = F.normalize(model.encode_image(x[i:i + args.batch_size].to(runtime.torch_device)), dim=-1)
                            preds.append((model.logit_scale.exp() * f @ head.T).argmax(-1).cpu())
                    bare_acc[(a, t)] = int((torch.cat(preds) == y).sum()) / len(y)
        _sync(runtime.device)
        bare = time.perf_counter() - t0

        model.load_state_dict(zs)
        t0 = time.perf_counter()
        evals = build_evals(model, preprocess, tokenizer, tasks, ("test",), args.n)
        table = sweep(Interpolator(model, zs, ft), evals, ALPHAS, args.batch_size)
        _sync(runtime.device)
        engine = time.perf_counter() - t0
    engine_acc = {(r.alpha, r.task): r.accuracy for r in table.itertuples()}
    same = all(abs(engine_acc[k] - v) < 1e-12 for k, v in bare_acc.items())
    worst = max(abs(engine_acc[k] - v) for k, v in bare_acc.items())
    name = torch.cuda.get_device_name(runtime.torch_device) if runtime.device.startswith("cuda") else "CPU"
    print(f"{args.model} on {runtime.device} ({name}), {args.precision}: 11 alphas x {len(tasks)} tasks x {args.n} images")
    print(f"eleven bare forward passes (images preprocessed beforehand): {bare:7.2f} s")
    print(f"engine sweep (heads, decode into the cache, 11 alphas):      {engine:7.2f} s")
    print(f"engine / bare = {engine / bare:.3f}  (target <= 1.2); accuracies equal: {same} (largest difference {worst:.4f})")


if __name__ == "__main__":
    main()
