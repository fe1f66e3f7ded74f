"""Server memory per extra Task-arithmetic session, side by side: one EditSession per visitor (the page until
issue 31: a deep copy of the model each) vs one EditSession shared by every visitor (the page now).

    python -m benchmarks.edit_memory [--model micro-rn-l] [--sessions 10]

Loads the model's digits, counting and typographic runs and the page's evaluation subsample once (shared in
both ways, as on the dashboard), then N visitors each move the coefficient sliders through three settings; reads
the process's resident memory (/proc/self/statm) before and after each way, and prints what each way added divided
by the sessions (the shared way's one working copy is counted too, so its figure falls as sessions are added).
Issue 31's target: < 30 MB per extra session (measured here in one process, not with browsers).
"""
from __future__ import annotations

import argparse
import gc
import time

from .common import rss_mb
from paint_core.app.sessions import edit_session
from paint_core.live.sessions import build_eval_sets
from paint_core.studies.relatives import load_runs

SETTINGS = ({"digits": 0.3, "counting": 0.3, "typographic": 0.3}, {"digits": 0.7, "counting": 0.3, "typographic": 0.3},
            {"digits": 0.7, "counting": 0.5, "typographic": 0.0})
TASKS = ("digits", "counting", "typographic", "shapes", "colours")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="micro-rn-l")
    ap.add_argument("--sessions", type=int, default=10)
    args = ap.parse_args()
    runs = load_runs([f"cached_results/{args.model}/{t}" for t in ("digits", "counting", "typographic")])
    eval_sets = build_eval_sets(runs[0], TASKS)
    rows = []
    for way in ("one shared", "one per visitor"):  # shared first: memory freed by the other way is not reused
        gc.collect()
        before, start = rss_mb(), time.perf_counter()
        shared = edit_session(runs, eval_sets) if way == "one shared" else None
        held = []
        for _ in range(args.sessions):
            session = shared or edit_session(runs, eval_sets)
            held.append(session)
            for setting in SETTINGS:
                session.accuracies(setting)
        after, seconds = rss_mb(), time.perf_counter() - start
        rows.append((way, (after - before) / args.sessions, seconds / (args.sessions * len(SETTINGS))))
        del held, shared, session
    print(f"{args.model}, {args.sessions} sessions, {len(SETTINGS)} settings each")
    print(f"{'way':18s} {'MB per session':>15s} {'s per move':>11s}")
    for way, mb, s in rows:
        print(f"{way:18s} {mb:15.1f} {s:11.3f}")


if __name__ == "__main__":
    main()
