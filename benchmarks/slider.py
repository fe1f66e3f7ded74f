"""Time from a new alpha to updated predictions on the Patch page's evaluation subsample, side by side.

    python benchmarks/slider.py [--run cached_results/micro-rn-l/digits] [--moves 10]

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
import time

from paint_core import interpolate, load_run
from paint_core.live.sessions import LIVE_EVAL_N, SLIDER_ALPHAS, PatchSession, PredictionStore, build_eval_sets
from paint_core.models.clip import create_architecture
from paint_core.engine.evaluation import predict


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="cached_results/micro-rn-l/digits")
    ap.add_argument("--moves", type=int, default=10)
    ap.add_argument("--n", type=int, default=LIVE_EVAL_N, help="images per task (the Patch page's default)")
    args = ap.parse_args()
    run = load_run(args.run)
    tasks = (run.meta["task"], *run.meta.get("supported", []))
    sets = build_eval_sets(run, tasks, args.n)
    session = PatchSession(run, sets)
    alphas = [round(0.1 * ((i * 3) % 10) + 0.05, 2) for i in range(args.moves)]

    live, live_weights = [], []
    for a in alphas:
        t = time.perf_counter()
        session.set_alpha(a)
        live_weights.append(time.perf_counter() - t)
        session.accuracies()
        live.append(time.perf_counter() - t)

    naive, naive_weights = [], []
    for a in alphas:
        t = time.perf_counter()
        model = create_architecture(run.meta["model"]).eval()
        model.load_state_dict(interpolate(run.theta_zs, run.theta_ft, a))
        naive_weights.append(time.perf_counter() - t)
        for e in sets.values():
            predict(model, e.head, e.images)
        naive.append(time.perf_counter() - t)

    n_images = sum(len(e.labels) for e in sets.values())
    lm, nm = statistics.median(live), statistics.median(naive)
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
    store = PredictionStore()
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


if __name__ == "__main__":
    main()
