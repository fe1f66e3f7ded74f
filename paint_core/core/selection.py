"""Selection rules, written once: which alpha or lambda a method picks, and the endpoints' line.

- PAINT's rule: the alpha maximizing the mean of patch and supported accuracy on validation data;
- task addition: the lambda with the best mean normalized accuracy (accuracy / the task's own fine-tuned one);
- task negation: the lambda lowering the target most while the control keeps >= 95% of its zero-shot accuracy;
- the endpoints' line, that frontier bends and WiSE-FT's effective robustness are measured against.
Every rule refuses the test split: test data never chooses.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd


CONTROL_KEEP = 0.95


def select_alpha(df: pd.DataFrame, patch: str | Sequence[str], supported: Sequence[str], split: str = "val") -> dict:
    """The paper's rule: the alpha maximizing mean(patch accuracy, mean supported accuracy) on ``split``.

    ``patch`` may be several tasks (multi-task patching): their mean accuracy is the patch accuracy.
    Ties go to the smaller alpha. Choosing on the test split is refused: test data never picks alpha.
    """
    if split == "test":
        raise ValueError("alpha is chosen on validation data, never on the test split")
    if not supported:
        raise ValueError("give at least one supported task")
    patched = [patch] if isinstance(patch, str) else list(patch)
    if not patched:
        raise ValueError("give at least one patch task")
    sub = df[df["split"] == split]
    pivot = sub.pivot_table(index="alpha", columns="task", values="accuracy", aggfunc="mean")
    missing = [t for t in [*patched, *supported] if t not in pivot.columns]
    if missing:
        raise ValueError(f"the sweep has no {split} rows for: {', '.join(missing)}")
    pivot = pivot.dropna(subset=[*patched, *supported]).sort_index()
    if pivot.empty:
        raise ValueError("no alpha has results for every task")
    sup = pivot[list(supported)].mean(axis=1)
    pat = pivot[patched].mean(axis=1)
    score = (pat + sup) / 2
    best = float(score.index[int(np.argmax(score.to_numpy()))])  # argmax returns the first (smallest) on ties
    return {"alpha": best, "split": split, "score": float(score[best]), "patch": patch,
            "patch_accuracy": float(pat[best]), "supported_accuracy": float(sup[best]),
            "per_task": {t: float(pivot.loc[best, t]) for t in [*patched, *supported]}}


def normalized(table: pd.DataFrame, finetuned: dict[str, float]) -> pd.DataFrame:
    """Adds ``normalized`` = accuracy / the task's own fine-tuned accuracy (tasks absent from it: NaN)."""
    out = table.copy()
    out["normalized"] = [a / finetuned[t] if t in finetuned else np.nan for a, t in zip(out["accuracy"], out["task"])]
    return out


def choose_addition(table: pd.DataFrame, tasks: Sequence[str], finetuned: dict[str, float],
                    split: str = "val") -> float:
    """The lambda with the best mean normalized accuracy over ``tasks`` on ``split`` (ties: smaller lambda)."""
    if split == "test":
        raise ValueError("lambda is chosen on validation data, never on the test split")
    sub = normalized(table[(table["split"] == split) & table["task"].isin(list(tasks))], finetuned)
    score = sub.pivot_table(index="lambda", columns="task", values="normalized").sort_index().mean(axis=1)
    return float(score.index[int(np.argmax(score.to_numpy()))])


def choose_negation(table: pd.DataFrame, target: str, control: Sequence[str], split: str = "val",
                    keep: float = CONTROL_KEEP) -> float:
    """The lambda with the lowest target accuracy among those keeping control >= ``keep`` x zero-shot."""
    if split == "test":
        raise ValueError("lambda is chosen on validation data, never on the test split")
    piv = table[table["split"] == split].pivot_table(index="lambda", columns="task", values="accuracy").sort_index()
    ctrl = piv[list(control)].mean(axis=1)
    ok = piv[ctrl >= keep * ctrl.loc[0.0]]
    return float(ok[target].idxmin())


def endpoints_line(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The straight line through (x[0], y[0]) and (x[-1], y[-1]), read at every x.

    When the endpoints share their x the line is undefined; the higher endpoint is used, so a point counts
    as above the line only if it beats both endpoints."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    x0, y0, x1, y1 = x[0], y[0], x[-1], y[-1]
    if abs(x1 - x0) < 1e-12:
        return np.full_like(y, max(y0, y1))
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
