"""Time from a new alpha to updated predictions on the Patch page's evaluation subsample, side by side.

    python -m benchmarks.slider [--run cached_results/micro-rn-l/digits] [--moves 10]
    python -m benchmarks.slider --model ViT-B-32 --device cuda --n 1000   # random weights, nothing downloaded

With ``--model`` the run is built in a temporary folder from random weights of that open_clip architecture
(zero-shot) and a perturbed copy of its image tower (fine-tuned), imported with ``import_run``; patch task
digits, supported shapes. ``--device`` / ``--precision`` as in the CLI; GPU timings synchronize the device.
The live numbers are computed in ``--live-precision`` (default auto: bfloat16 autocast on CUDA, as the Patch
page does; ``live_runtime``); the naive path in the same precision. Target (issue 28): a cold move of 1,000
images per task (``--n 1000``) under 150 ms on a GPU.

Live path: PatchSession.set_alpha (in-place Interpolator) + predictions on the subsample (LIVE_EVAL_N = 100 images per
task by default, patch + supported tasks), exactly what the Patch page does per slider move. Naive path: rebuild the model
with open_clip, interpolate a state dict and load_state_dict it, then the same predictions.
Shared path (what the dashboard does): a PredictionStore shared by all sessions, filled once per run by a background
warm-up thread over the 21 slider positions; a move to a stored position is the weight update plus a lookup. The
script times the warm-up, then moves a fresh session over stored positions.
Targets (issue 5): live under 0.3 s per move on 2 CPU cores and at least 5x faster than the naive path.
"""
from __future__ import annotations



import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from paint_core import interpolate, load_run
from paint_core.io.checkpoints import save_checkpoint
from paint_core.runtime import make_runtime, set_default_runtime
from paint_core.studies.patch import import_run
from paint_core.live.sessions import (LIVE_EVAL_N, SLIDER_ALPHAS, PatchSession, PredictionStore, build_eval_sets,
                                      live_runtime)
from paint_core.runtime import PRECISION_WORDS, use_runtime
from .common import device_name, register_proxy, write_json
from paint_core.models.clip import create_architecture
from paint_core.engine.evaluation import predict


def random_run(model_name: str, folder: Path) -> Path:
    """A run of ``model_name`` with random weights: zero-shot as built, fine-tuned = image tower perturbed."""
    model = create_architecture(model_name)
    zs = model.state_dict()
    g = torch.Generator().manual_seed(0)
    ft = {k: v + 0.02 * v.std() * torch.randn(v.shape, generator=g)
          if k.startswith("visual.") and v.is_floating_point() and v.numel() > 1 else v for k, v in zs.items()}
    save_checkpoint(folder / "zs.safetensors", zs, {"model": model_name, "pretrained": None})
    save_checkpoint(folder / "ft.safetensors", ft, {"model": model_name, "pretrained": None})
    out = folder / "run"
    import_run(out, model_name, folder / "zs.safetensors", folder / "ft.safetensors", "digits")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="cached_results/micro-rn-l/digits")
    ap.add_argument("--moves", type=int, default=10)
    ap.add_argument("--n", type=int, default=LIVE_EVAL_N, help="images per task (the Patch page's default)")
    ap.add_argument("--model", default=None, help="time a random-weight run of this open_clip model instead of --run")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--live-precision", default="auto")
    ap.add_argument("--json", default=None, help="append the figures as a JSON line to this file")
    args = ap.parse_args()
    register_proxy()
    runtime = make_runtime(args.device, args.precision)
    set_default_runtime(runtime)  # the warm-up thread computes there too
    if args.model:
        args.run = str(random_run(args.model, Path(tempfile.mkdtemp(prefix="paint-slider-"))))
    run = load_run(args.run)
    device = runtime.torch_device
    live_rt = live_runtime(runtime, args.live_precision)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    tasks = (run.meta["task"], *(run.meta.get("supported") or ["shapes"]))
    sets = build_eval_sets(run, tasks, args.n)
    session = PatchSession(run, sets, PredictionStore(live_rt))  # a store of its own: every move below is cold
    alphas = [round(0.1 * ((i * 3) % 10) + 0.05, 2) for i in range(args.moves)]

    live, live_weights = [], []
    for a in alphas:
        t = time.perf_counter()
        with session.pool.borrow(a):  # the weight update alone (the session borrows its weights per move)
            sync()
        live_weights.append(time.perf_counter() - t)
        with session.pool.borrow(0.0):  # back, untimed, so that the move below updates the weights again
            pass
        t = time.perf_counter()
        session.set_alpha(a)
        session.accuracies()
        live.append(time.perf_counter() - t)

    naive, naive_weights = [], []
    for a in alphas:
        t = time.perf_counter()
        model = create_architecture(run.meta["model"]).eval().to(device)
        model.load_state_dict(interpolate(run.theta_zs, run.theta_ft, a))
        sync()
        naive_weights.append(time.perf_counter() - t)
        with use_runtime(live_rt):
            for e in sets.values():
                predict(model, e.head, e.images)
        sync()
        naive.append(time.perf_counter() - t)

    n_images = sum(len(e.labels) for e in sets.values())
    lm, nm = statistics.median(live), statistics.median(naive)
    name = device_name(device)
    print(f"{run.meta['model']} on {runtime.device} ({name}), live numbers in {PRECISION_WORDS[live_rt.precision]}")
    print(f"run {args.run}: {len(sets)} tasks, {n_images} images per move, median of {args.moves} moves")
    print(f"  live (Interpolator + predictions)      : {lm * 1e3:7.1f} ms per move (target < 300 ms)")
    print(f"  naive (rebuild + load_state_dict + same): {nm * 1e3:7.1f} ms per move")
    print(f"  naive / live = {nm / lm:.1f}x (target >= 5x)")
    revisit = []
    for a in alphas:  # positions already visited: the session remembers their predictions
        t = time.perf_counter()
        session.set_alpha(a)
        session.accuracies()
        revisit.append(time.perf_counter() - t)
    print(f"  live, back to a visited position       : {statistics.median(revisit) * 1e3:7.1f} ms per move")
    store = PredictionStore(live_rt)
    store.warm(run, sets, SLIDER_ALPHAS, start=0.5).join()
    fresh = PatchSession(run, sets, store)
    slider = [SLIDER_ALPHAS[(i * 7) % len(SLIDER_ALPHAS)] for i in range(args.moves)]
    shared = []
    for a in slider:
        t = time.perf_counter()
        fresh.set_alpha(a)
        fresh.accuracies()
        shared.append(time.perf_counter() - t)
    sm = statistics.median(shared)
    print(f"  shared store: warm-up of {len(SLIDER_ALPHAS)} slider positions took {store.warm_seconds:.1f} s (once per run, "
          f"in the background); then a new session's first visit of a position: {sm * 1e3:.1f} ms per move, "
          f"naive / shared = {nm / sm:.0f}x")
    lw, nw = statistics.median(live_weights), statistics.median(naive_weights)
    print(f"  of which the weight update: live {lw * 1e3:.1f} ms, naive {nw * 1e3:.1f} ms ({nw / lw:.0f}x); "
          f"the rest is the forward pass over the subsample, the same in both")
    write_json(args.json, {"bench": "slider", "model": run.meta["model"], "device": name, "precision": live_rt.precision,
                           "n_per_task": args.n, "tasks": len(sets), "live_ms": lm * 1e3, "naive_ms": nm * 1e3,
                           "revisit_ms": statistics.median(revisit) * 1e3, "shared_ms": sm * 1e3,
                           "warm_s": store.warm_seconds, "weights_ms": lw * 1e3})


if __name__ == "__main__":
    main()
