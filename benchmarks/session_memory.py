"""Server memory per extra Patch-page session, side by side: endpoints shared per run vs copied per session.

    python benchmarks/session_memory.py [--run cached_results/micro-rn-l/digits] [--sessions 10]

Creates N PatchSessions on one loaded run (what N dashboard users of that run hold: a model copy whose weights
are views into the session's own live buffer) and reads the process's resident memory (/proc/self/statm) before
and after, first with the run's FlatEndpoints shared by all sessions (the dashboard's way), then with each
session's Interpolator flattening its own endpoints (the way before). Issue 15's target: < 30 MB per extra
session on the embedded model. The text tower is still copied with each session's model.
"""
from __future__ import annotations

import argparse
import gc
import os

from paint_core import load_run
from paint_core.core.interpolation import Interpolator
from paint_core.live.sessions import PatchSession, build_eval_sets


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="cached_results/micro-rn-l/digits")
    ap.add_argument("--sessions", type=int, default=10)
    args = ap.parse_args()
    run = load_run(args.run)
    sets = build_eval_sets(run, (run.meta["task"], *run.meta.get("supported", [])), 100)
    PatchSession(run, sets)  # the shared endpoints and first allocations, not counted below
    gc.collect()
    results = {}
    for mode in ("shared endpoints", "endpoints per session"):
        gc.collect()
        before = rss_mb()
        sessions = [PatchSession(run, sets) for _ in range(args.sessions)]
        if mode == "endpoints per session":
            for s in sessions:
                s.interpolator = Interpolator(s.model, run.theta_zs, run.theta_ft)
                s.interpolator.set_alpha(0.0)
        gc.collect()
        results[mode] = (rss_mb() - before) / args.sessions
        del sessions
        gc.collect()
    n_params = sum(v.numel() * v.element_size() for v in run.theta_zs.values()) / 2 ** 20
    print(f"run {args.run}: weights {n_params:.0f} MB; {args.sessions} sessions each way")
    for mode, mb in results.items():
        print(f"  {mode:<22}: {mb:6.1f} MB per extra session")
    print(f"  per session, shared / per-session endpoints = {results['shared endpoints'] / results['endpoints per session']:.2f}")


if __name__ == "__main__":
    main()
