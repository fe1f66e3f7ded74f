"""Training images/s of the engine's fine-tune against a bare PyTorch loop, side by side in one run.

    python benchmarks/finetune.py                                   # micro-rn-l, CPU, fp32
    python benchmarks/finetune.py --model ViT-B-32 --device cuda --precision amp_bf16 --batch-size 128

Both train the image tower of the same model (random weights for a non-embedded name: built from open_clip's
config, nothing downloaded) with the zero-shot head frozen, on the same in-memory batches of random images and
labels, with AdamW, the same precision and device. The bare loop is written here from plain PyTorch (autocast,
GradScaler for amp, clip_grad_norm_); the engine is ``paint_core.engine.finetune.finetune``. They alternate
(bare, engine, bare, engine, ...) so that both see the same machine state. Target (issue 12): engine / bare >= 0.9.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from paint_core.engine.finetune import FinetuneConfig, finetune, set_batchnorm_eval
from paint_core.models.clip import load_model
from paint_core.runtime import autocast, grad_scaler, make_runtime, use_runtime


def bare_loop(model, head, images, labels, steps: int, batch: int, runtime) -> float:
    """images/s of a plain loop: the reference the engine is measured against."""
    model = model.to(runtime.torch_device)
    for p in model.parameters():
        p.requires_grad_(False)
    params = list(model.visual.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.1)
    scaler = grad_scaler(runtime)
    model.eval()
    model.visual.train()
    set_batchnorm_eval(model.visual)
    head = head.to(runtime.torch_device)
    n = len(images)
    _sync(runtime)
    t0 = time.perf_counter()
    for step in range(steps):
        i = (step * batch) % (n - batch + 1)
        x = images[i:i + batch].to(runtime.torch_device, non_blocking=True)
        y = labels[i:i + batch].to(runtime.torch_device, non_blocking=True)
        with autocast(runtime):
            feats = F.normalize(model.encode_image(x), dim=-1)
            loss = F.cross_entropy(model.logit_scale.exp() * feats @ head.T, y)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
        loss.item()  # the engine reads each loss for its progress report; so does the reference
    _sync(runtime)
    return steps * batch / (time.perf_counter() - t0)


def engine_loop(model, head, images, labels, steps: int, batch: int, runtime) -> float:
    cfg = FinetuneConfig(steps=steps, batch_size=batch, lr=1e-5, warmup=0)
    _sync(runtime)
    t0 = time.perf_counter()
    with use_runtime(runtime):
        finetune(model, head, TensorDataset(images, labels), cfg, progress=False)
    _sync(runtime)
    return steps * batch / (time.perf_counter() - t0)


def _sync(runtime) -> None:
    if runtime.device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="micro-rn-l")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    runtime = make_runtime(args.device, args.precision)
    with use_runtime(runtime):
        model, _, _ = load_model(args.model)
    size = model.visual.image_size if isinstance(model.visual.image_size, int) else model.visual.image_size[0]
    g = torch.Generator().manual_seed(0)
    n = args.batch_size * 4
    images = torch.randn(n, 3, size, size, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    head = F.normalize(torch.randn(10, model.text_projection.shape[1], generator=g), dim=-1).to(runtime.torch_device)
    start = copy.deepcopy(model.state_dict())
    bare, engine = [], []
    engine_loop(model, head, images, labels, 3, args.batch_size, runtime)  # warm-up: allocator, kernels
    for _ in range(args.rounds):
        model.load_state_dict(start)
        bare.append(bare_loop(model, head, images, labels, args.steps, args.batch_size, runtime))
        model.load_state_dict(start)
        engine.append(engine_loop(model, head, images, labels, args.steps, args.batch_size, runtime))
    b, e = statistics.median(bare), statistics.median(engine)
    name = torch.cuda.get_device_name(runtime.torch_device) if runtime.device.startswith("cuda") else "CPU"
    print(f"{args.model} on {runtime.device} ({name}), {args.precision}, batch {args.batch_size}, "
          f"{args.steps} steps x {args.rounds} rounds (median)")
    print(f"bare PyTorch loop: {b:8.1f} img/s   rounds: {', '.join(f'{v:.1f}' for v in bare)}")
    print(f"paint_core engine: {e:8.1f} img/s   rounds: {', '.join(f'{v:.1f}' for v in engine)}")
    print(f"engine / bare = {e / b:.3f}  (target >= 0.9)")


if __name__ == "__main__":
    main()
