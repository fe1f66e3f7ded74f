"""Issue 16's patch figure for swept runs: the gain on test at the largest alpha whose mean supported accuracy
drifts <= 1 point on val (the alpha chosen on val, as ``reproduce`` reports the shipped defaults).

    python scripts/patch_gains.py runs/reading/I-typographic runs/reading/I-digits runs/reading/I-counting

Each run needs a sweep (``python -m paint_core sweep --run-dir RUN --supported shapes,colours --alphas 0:1:0.1``).
Prints one line per run: task, chosen alpha, patch gain and supported drift on test, in points.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from paint_core.core.frontier import gain_within_drift
from paint_core.io.run_dir import read_run_meta, read_sweep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run directories with a sweep")
    ap.add_argument("--max-drift", type=float, default=0.01, help="supported drift allowed on val (default: 0.01)")
    args = ap.parse_args()
    for run in args.runs:
        df = read_sweep(run)
        patch = read_run_meta(run)["task"]
        supported = sorted(set(df["task"]) - {patch})
        g = gain_within_drift(df, patch, supported, args.max_drift)
        print(f"{run}: {patch} gain {100 * g['patch_gain']:+.1f} points at alpha {g['alpha']:g} (chosen on val), "
              f"supported drift on test {100 * g['supported_drift']:+.1f}, on val {100 * g['val_supported_drift']:+.1f}")


if __name__ == "__main__":
    main()
