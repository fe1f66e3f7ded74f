"""Server memory per extra Patch-page session, side by side: sessions owning weights vs borrowing them.

    python -m benchmarks.session_memory [--run cached_results/micro-rn-l/digits] [--sessions 10]

Creates N PatchSessions on one loaded run (what N dashboard users of that run hold) and reads the process's
resident memory (/proc/self/statm) before and after, two ways:
- "own weights": each session with a private pool of one model (what every session held before: a copy of
  the image tower interpolated in place, the run's endpoints and frozen text tower shared);
- "store + shared pool": the dashboard's way now: sessions read the run's shared PredictionStore (warmed for
  the slider positions first) and borrow from one ModelPool of 2 models only for positions nobody computed.
Each session moves through three slider positions. Issue 15's target: < 30 MB per extra session.
"""
from __future__ import annotations

import argparse
import gc

from .common import rss_mb
from paint_core import load_run
from paint_core.live.sessions import SLIDER_ALPHAS, ModelPool, PatchSession, PredictionStore, build_eval_sets


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="cached_results/micro-rn-l/digits")
    ap.add_argument("--sessions", type=int, default=10)
    args = ap.parse_args()
    run = load_run(args.run)
    sets = build_eval_sets(run, (run.meta["task"], *run.meta.get("supported", [])), 100)
    store, pool = PredictionStore(), ModelPool(run, size=2)
    store.warm(run, sets, SLIDER_ALPHAS).join()  # the dashboard warms every position once per run
    PatchSession(run, sets, store, pool).set_alpha(0.5)  # first allocations of the shared path, not counted
    PatchSession(run, sets)  # and of the private path
    gc.collect()
    results = {}
    for mode in ("store + shared pool", "own weights"):
        gc.collect()
        before = rss_mb()
        sessions = [PatchSession(run, sets) if mode == "own weights" else PatchSession(run, sets, store, pool)
                    for _ in range(args.sessions)]
        for s in sessions:
            for a in (0.3, 0.55, 0.8):
                s.set_alpha(a)
                s.probabilities()
        gc.collect()
        results[mode] = (rss_mb() - before) / args.sessions
        del sessions
        gc.collect()
    n_params = sum(v.numel() * v.element_size() for v in run.theta_zs.values()) / 2 ** 20
    print(f"run {args.run}: weights {n_params:.0f} MB; {args.sessions} sessions each way; pool of {pool.size}, "
          f"{pool.made} made")
    for mode, mb in results.items():
        print(f"  {mode:<20}: {mb:6.1f} MB per extra session")


if __name__ == "__main__":
    main()
