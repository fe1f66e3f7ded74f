"""Fine-tune images/s of the engine against a plain PyTorch loop, side by side in one run, start-up apart.

    python -m benchmarks.finetune --model proxy-vit-224 --device cpu            # the CPU proxy: host-side costs
    python -m benchmarks.finetune --model ViT-B-32 --device cuda --precisions fp32,amp_bf16 --batch-sizes 128,512
    python -m benchmarks.finetune --model ViT-B-32 --device cuda --batch-sizes 512 --compile   # torch.compile

Both train the image tower of the same model (random weights built from open_clip's config, nothing downloaded)
with the head frozen, on the same shuffled batches drawn from ``--batches`` batches of random 224 px images and
labels, with the same AdamW (fused on CUDA), precision and device. The plain loop is written here from plain
PyTorch and holds the images on the device already, gathering each batch there: the fastest simple loop. The
engine (``paint_core.engine.finetune.finetune``) gets them as a TensorDataset on the CPU, as a user would give
them, and its feed moves them. Each call's first ``--startup-steps`` steps (allocator, kernels, the feed's copy,
compiling) are timed apart from the steady state, the steps after; the device is synchronized at both marks.
They alternate (plain, engine, plain, engine) so that both see the same machine state; medians of ``--rounds``.
Target (issue 28): engine / plain >= 0.95 in the steady state. Model FLOP utilisation: FLOPs of one training
step (torch.utils.flop_counter) x images/s / the device's bfloat16 peak (``common.BF16_PEAK``). ``--compile``
times the engine alone through torch.compile (``--compile`` of the CLI); its start-up holds the compiling.
"""
from __future__ import annotations

import argparse
import copy
import statistics
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from .common import (Clock, attempt, bf16_peak, device_name, register_proxy, sdpa_ops, train_flops_per_image,
                    write_json)
from paint_core.engine.finetune import FinetuneConfig, finetune, set_batchnorm_eval
from paint_core.engine.training import adamw
from paint_core.models.clip import load_model
from paint_core.runtime import autocast, grad_scaler, make_runtime, use_runtime


def plain_loop(model, head, images, labels, steps: int, batch: int, runtime, startup: int) -> tuple[float, float]:
    """(start-up seconds, steady images/s) of a plain loop over the same kind of batches."""
    dev = runtime.torch_device
    clock = Clock(dev)
    t0 = clock()
    model = model.to(dev)
    for p in model.parameters():
        p.requires_grad_(False)
    params = list(model.visual.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.1, fused=True if dev.type == "cuda" else None)
    scaler = grad_scaler(runtime)
    model.eval()
    model.visual.train()
    set_batchnorm_eval(model.visual)
    head, x_all, y_all = head.to(dev), images.to(dev), labels.to(dev)
    gen = torch.Generator(device=dev).manual_seed(0)
    order: list[torch.Tensor] = []
    marks = {}
    for step in range(steps):
        if not order:
            perm = torch.randperm(len(x_all), generator=gen, device=dev)
            order = list(perm[:len(perm) // batch * batch].split(batch))
        idx = order.pop(0)
        x, y = x_all.index_select(0, idx), y_all.index_select(0, idx)
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
        if step + 1 == startup:
            marks["steady"] = clock()
    loss.item()
    end = clock()
    return marks["steady"] - t0, (steps - startup) * batch / (end - marks["steady"])


def engine_run(model, head, images, labels, steps: int, batch: int, runtime, startup: int) -> tuple[float, float]:
    """(start-up seconds, steady images/s) of the engine's fine-tune, marks taken from its progress reports."""
    clock = Clock(runtime.torch_device)
    marks = {}

    def on_progress(p) -> None:
        if p.done in (startup, steps):
            marks[p.done] = clock()

    t0 = clock()
    with use_runtime(runtime):
        finetune(model, head, TensorDataset(images, labels), FinetuneConfig(steps=steps, batch_size=batch, lr=1e-5,
                                                                            warmup=0), on_progress, progress=False)
    return marks[startup] - t0, (steps - startup) * batch / (marks[steps] - marks[startup])


def compare(model, head, start, images, labels, args, runtime, batch: int) -> dict:
    """Plain and engine, alternating, ``args.rounds`` times each after a warm-up of both."""
    plain, engine = [], []
    for fn in (plain_loop, engine_run):  # warm-up: kernels, allocator, autotuning
        model.load_state_dict(start)
        fn(model, head, images, labels, args.startup_steps + 2, batch, runtime, args.startup_steps)
    for _ in range(args.rounds):
        model.load_state_dict(start)
        plain.append(plain_loop(model, head, images, labels, args.steps, batch, runtime, args.startup_steps))
        model.load_state_dict(start)
        engine.append(engine_run(model, head, images, labels, args.steps, batch, runtime, args.startup_steps))
    p, e = statistics.median(r[1] for r in plain), statistics.median(r[1] for r in engine)
    return {"plain": p, "engine": e, "ratio": e / p, "plain_startup_s": statistics.median(r[0] for r in plain),
            "engine_startup_s": statistics.median(r[0] for r in engine),
            "rounds_plain": [round(r[1], 1) for r in plain], "rounds_engine": [round(r[1], 1) for r in engine]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="proxy-vit-224")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precisions", default="fp32")
    ap.add_argument("--batch-sizes", default="128")
    ap.add_argument("--batches", type=int, default=4, help="distinct batches of images held (default: %(default)s)")
    ap.add_argument("--steps", type=int, default=20, help="steps per call, start-up included (default: %(default)s)")
    ap.add_argument("--startup-steps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="instead: the engine through torch.compile (amp_bf16 "
                                                           "on a GPU, the first precision elsewhere; largest batch)")
    ap.add_argument("--json", default=None, help="append the figures as JSON lines to this file")
    args = ap.parse_args()
    if args.steps <= args.startup_steps:
        raise SystemExit("--steps must exceed --startup-steps")
    register_proxy()
    runtime = make_runtime(args.device, "fp32")
    dev = runtime.torch_device
    with use_runtime(runtime):
        model, _, _ = load_model(args.model)
    size = model.visual.image_size if isinstance(model.visual.image_size, int) else model.visual.image_size[0]
    name = device_name(dev)
    peak, peak_name = bf16_peak(dev)
    flops = train_flops_per_image(model, size, dev)
    sdpa = attempt(lambda: {"ops": sdpa_ops(model, size, dev)})
    fused = attempt(lambda: {"fused": bool(adamw([torch.nn.Parameter(torch.zeros(1, device=dev))],
                                                 lr=1e-3).defaults.get("fused"))})
    print(f"{args.model} on {runtime.device} ({name}), torch {torch.__version__}; {flops / 1e9:.3f} GFLOP per image "
          f"per training step; bfloat16 peak: {peak_name}")
    print(f"  SDPA in the training step: {sdpa.get('ops') or sdpa.get('failed') or 'none'}; "
          f"fused AdamW: {fused.get('fused', fused.get('failed'))}")
    write_json(args.json, {"bench": "finetune_setup", "model": args.model, "device": name, "flops_per_image": flops,
                           "peak": peak, "peak_name": peak_name, "sdpa": sdpa, "fused_adamw": fused})
    g = torch.Generator().manual_seed(0)
    head = F.normalize(torch.randn(10, model.text_projection.shape[1], generator=g), dim=-1)
    start = copy.deepcopy(model.state_dict())
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    for precision in [] if args.compile else args.precisions.split(","):
        rt = replace(runtime, precision=precision)
        for batch in batch_sizes:
            n = batch * args.batches
            images = torch.randn(n, 3, size, size, generator=g)
            labels = torch.randint(0, 10, (n,), generator=g)
            r = compare(model, head, start, images, labels, args, rt, batch)
            mfu = {k: flops * r[k] / peak for k in ("plain", "engine")} if peak and precision == "amp_bf16" else {}
            print(f"{precision:8s} batch {batch:4d}: plain {r['plain']:8.1f} img/s, engine {r['engine']:8.1f} img/s, "
                  f"engine / plain = {r['ratio']:.3f} (target >= 0.95); start-up ({args.startup_steps} steps) plain "
                  f"{r['plain_startup_s']:.2f} s, engine {r['engine_startup_s']:.2f} s"
                  + (f"; MFU plain {mfu['plain']:.1%}, engine {mfu['engine']:.1%}" if mfu else ""))
            write_json(args.json, {"bench": "finetune", "model": args.model, "device": name, "precision": precision,
                                   "batch": batch, "startup_steps": args.startup_steps, **r,
                                   **{f"mfu_{k}": v for k, v in mfu.items()}})
            del images, labels
    if args.compile:
        precision = "amp_bf16" if dev.type == "cuda" else args.precisions.split(",")[0]
        batch = max(batch_sizes)
        rt = replace(runtime, precision=precision, compile=True)
        images = torch.randn(batch * args.batches, 3, size, size, generator=g)
        labels = torch.randint(0, 10, (len(images),), generator=g)

        def compiled() -> dict:
            model.load_state_dict(start)
            s, e = engine_run(model, head, images, labels, args.steps, batch, rt, args.startup_steps)
            return {"engine": e, "engine_startup_s": s}
        r = attempt(compiled)
        if "failed" in r:
            print(f"--compile {precision} batch {batch}: failed: {r['failed']}")
        else:
            r["mfu_engine"] = flops * r["engine"] / peak if peak and precision == "amp_bf16" else None
            print(f"--compile {precision} batch {batch}: engine {r['engine']:8.1f} img/s, start-up (compiling) "
                  f"{r['engine_startup_s']:.1f} s" + (f", MFU {r['mfu_engine']:.1%}" if r["mfu_engine"] else ""))
        write_json(args.json, {"bench": "finetune_compile", "model": args.model, "device": name,
                               "precision": precision, "batch": batch, **r})


if __name__ == "__main__":
    main()
