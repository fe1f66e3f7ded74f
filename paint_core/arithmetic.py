"""Task arithmetic (Ilharco et al. 2023): add task vectors to learn several tasks, negate one to forget it.

theta = theta_zs + lambda * merge(task vectors), lambda chosen on validation data:
- addition: the lambda maximizing the mean normalized accuracy (accuracy / the task's own fine-tuned accuracy);
- negation: the lambda lowering the target task most while the control tasks keep >= 95% of their
  zero-shot accuracy (the paper's rule).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from .checkpoints import StateDict
from .evaluation import Evals, sweep
from .interpolation import Interpolator
from .task_vectors import TaskVector, merge

LAMBDAS = [round(0.1 * i, 1) for i in range(21)]  # 0 .. 2: merged vectors often want lambda > 1 (mean, TIES)
CONTROL_KEEP = 0.95


def edit_sweep(model: torch.nn.Module, theta_zs: StateDict, tau: TaskVector, evals: Evals,
               lambdas: Sequence[float] = LAMBDAS) -> pd.DataFrame:
    """Accuracy of theta_zs + lambda * tau for every lambda and every (task, split) of ``evals``."""
    edited = tau.apply_to(theta_zs, 1.0)
    table = sweep(Interpolator(model, theta_zs, edited, allow_extrapolation=True), evals, lambdas)
    return table.rename(columns={"alpha": "lambda"})


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


def merged_vector(vectors: Sequence[TaskVector], method: str, coefficients: Sequence[float] | None = None,
                  **params) -> TaskVector:
    """merge(c_i * tau_i): per-vector coefficients (a dashboard's sliders) scale before merging."""
    if coefficients is not None:
        if len(coefficients) != len(vectors):
            raise ValueError(f"{len(coefficients)} coefficients for {len(vectors)} task vectors")
        vectors = [tv * float(c) for tv, c in zip(vectors, coefficients)]
    return merge(list(vectors), method, **params)
