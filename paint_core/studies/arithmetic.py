"""Task arithmetic (Ilharco et al. 2023): add task vectors to learn several tasks, negate one to forget it.

theta = theta_zs + lambda * merge(task vectors), lambda chosen on validation data:
- addition: the lambda maximizing the mean normalized accuracy (accuracy / the task's own fine-tuned accuracy);
- negation: the lambda lowering the target task most while the control tasks keep >= 95% of their
  zero-shot accuracy (the paper's rule).
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd
import torch

from ..core.interpolation import Interpolator
from ..core.state_dicts import StateDict
from ..core.methods import MergeData, merge
from ..core.task_vectors import TaskVector
from ..engine.evaluation import Evals, sweep


LAMBDAS = [round(0.1 * i, 1) for i in range(21)]  # 0 .. 2: merged vectors often want lambda > 1 (mean, TIES)


def edit_sweep(model: torch.nn.Module, theta_zs: StateDict, tau: TaskVector, evals: Evals,
               lambdas: Sequence[float] = LAMBDAS) -> pd.DataFrame:
    """Accuracy of theta_zs + lambda * tau for every lambda and every (task, split) of ``evals``."""
    edited = tau.apply_to(theta_zs, 1.0)
    table = sweep(Interpolator(model, theta_zs, edited, allow_extrapolation=True), evals, lambdas)
    return table.rename(columns={"alpha": "lambda"})


def merged_vector(vectors: Sequence[TaskVector], method: str, coefficients: Sequence[float] | None = None,
                  data: MergeData | None = None, **params) -> TaskVector:
    """merge(c_i * tau_i): per-vector coefficients (a dashboard's sliders) scale before merging; ``data``, the
    runs behind the vectors, for the methods that learn from data."""
    if coefficients is not None:
        if len(coefficients) != len(vectors):
            raise ValueError(f"{len(coefficients)} coefficients for {len(vectors)} task vectors")
        vectors = [tv * float(c) for tv, c in zip(vectors, coefficients)]
    return merge(list(vectors), method, data, **params)
