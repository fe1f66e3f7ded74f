"""Frontier measures of a sweep: how far the patched-vs-supported curve bends above its chord.

All functions take the sweep table (alpha, task, split, accuracy, n) and return plain numbers, so the
dashboard, the tests and cached_results/summary.md compute them one way.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .selection import endpoints_line


def frontier(df: pd.DataFrame, patch: str, supported: Sequence[str], split: str) -> pd.DataFrame:
    """Per alpha: ``patch`` accuracy, mean ``supported`` accuracy, and each task's accuracy (sorted by alpha)."""
    sub = df[df["split"] == split].pivot_table(index="alpha", columns="task", values="accuracy", aggfunc="mean")
    missing = [t for t in [patch, *supported] if t not in sub.columns]
    if missing:
        raise ValueError(f"the sweep has no {split} rows for: {', '.join(missing)}")
    out = sub[[patch, *supported]].copy()
    out["patch"] = sub[patch]
    out["supported"] = sub[list(supported)].mean(axis=1)
    return out.sort_index()


def chord_gap(f: pd.DataFrame) -> pd.Series:
    """Supported accuracy above the straight line from the zero-shot to the fine-tuned endpoint, per alpha."""
    p, s = f["patch"].to_numpy(), f["supported"].to_numpy()
    return pd.Series(s - endpoints_line(p, s), index=f.index)


def frontier_area(f: pd.DataFrame) -> float:
    """Area between the frontier and its chord in the (patch, supported) plane, in accuracy^2 units x 1e4
    (points x points); positive when the frontier bends above the chord."""
    gap = chord_gap(f).to_numpy()
    p = f["patch"].to_numpy()
    return float(np.trapezoid(gap, p) * 1e4) if len(p) > 1 else 0.0


def gain_within_drift(df: pd.DataFrame, patch: str, supported: Sequence[str], max_drift: float = 0.01,
                      choose_on: str = "val", report_on: str = "test") -> dict:
    """The largest alpha whose supported drift (vs alpha 0) is within ``max_drift`` on ``choose_on``,
    and the patch-task gain and supported drift at that alpha on ``report_on``."""
    fv = frontier(df, patch, supported, choose_on)
    drift = fv["supported"].iloc[0] - fv["supported"]
    ok = drift[drift <= max_drift + 1e-12].index
    alpha = float(max(ok))
    ft = frontier(df, patch, supported, report_on)
    return {"alpha": alpha, "patch_gain": float(ft.loc[alpha, "patch"] - ft["patch"].iloc[0]),
            "supported_drift": float(ft["supported"].iloc[0] - ft.loc[alpha, "supported"]),
            "val_supported_drift": float(drift[alpha])}


def plan_points(df: pd.DataFrame, patch: str, supported: Sequence[str], split: str) -> pd.DataFrame:
    """Per plan key (uniform and per-block): ``patch`` accuracy, mean ``supported`` accuracy and ``alpha`` (NaN for
    a per-block plan), for plans with rows for every task on ``split``; uniform plans first, by alpha."""
    sub = df[df["split"] == split]
    piv = sub.pivot_table(index="plan", columns="task", values="accuracy", aggfunc="mean")
    missing = [t for t in [patch, *supported] if t not in piv.columns]
    if missing:
        raise ValueError(f"the sweep has no {split} rows for: {', '.join(missing)}")
    piv = piv.dropna(subset=[patch, *supported])
    out = pd.DataFrame({"patch": piv[patch], "supported": piv[list(supported)].mean(axis=1)})
    out["alpha"] = sub.groupby("plan")["alpha"].first().reindex(out.index)
    return out.sort_values(["alpha"], na_position="last", kind="stable")
