"""Task arithmetic (Ilharco et al. 2023): add task vectors to learn several tasks, negate one to forget it.

theta = theta_zs + lambda * merge(task vectors), lambda chosen on validation data:
- addition: the lambda maximizing the mean normalized accuracy (accuracy / the task's own fine-tuned accuracy);
- negation: the lambda lowering the target task most while the control tasks keep >= 95% of their
  zero-shot accuracy (the paper's rule).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import pandas as pd
import torch

from ..core.interpolation import Interpolator
from ..core.state_dicts import StateDict
from ..core.methods import MergeData, merge
from ..core.task_vectors import TaskVector
from ..engine.evaluation import Evals, sweep
from ..io.results import Fields, document


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


SWEEP_COLUMNS = ("lambda", "task", "split", "accuracy")


@dataclass(frozen=True)
class Addition:
    """One merge's task addition: lambda chosen on val, test accuracies (0-1), its val sweep over lambda."""
    lam: float
    test: dict[str, float]             # every evaluated task (the added ones and the supported ones)
    normalized_test: dict[str, float]  # added tasks only: accuracy / the task's own fine-tuned accuracy
    mean_absolute_test: float
    mean_normalized_test: float
    val_sweep: pd.DataFrame = field(compare=False, repr=False)  # lambda, task, split, accuracy, normalized

    @classmethod
    def from_fields(cls, f: Fields) -> Addition:
        return cls(float(f["lambda"]), f.floats("test"), f.floats("normalized_test"), float(f["mean_absolute_test"]),
                   float(f["mean_normalized_test"]), f.table("val_sweep", (*SWEEP_COLUMNS, "normalized")))


@dataclass(frozen=True)
class Negation:
    """Negating one task: lambda chosen on val (control kept), test accuracies before (zero-shot) and after."""
    lam: float
    control: tuple[str, ...]
    chance: float
    zero_shot_test: dict[str, float]
    test: dict[str, float]

    @classmethod
    def from_fields(cls, f: Fields) -> Negation:
        return cls(float(f["lambda"]), tuple(f["control"]), float(f["chance"]), f.floats("zero_shot_test"),
                   f.floats("test"))


@dataclass(frozen=True)
class ArithmeticResults:
    """The task-arithmetic study (``relatives.arithmetic_study``, kind "arithmetic") as its readers use it."""
    KIND: ClassVar[str] = "arithmetic"
    model: str
    tasks: tuple[str, ...]      # the added task vectors
    supported: tuple[str, ...]
    addition: dict[str, Addition]   # by merge label, in the study's order
    negation: dict[str, Negation]   # by negated task
    finetuned: dict[str, float]     # "task/split": the task's own fine-tuned accuracy (absent until finished)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], source: str | Path = "a results document") -> ArithmeticResults:
        inputs, r = document(doc, cls.KIND, source)
        return cls(r["model"], tuple(inputs["tasks"]), tuple(inputs["supported"]),
                   {n: Addition.from_fields(a) for n, a in r.parts("addition").items()},
                   {n: Negation.from_fields(a) for n, a in r.parts("negation").items()},
                   r.floats("finetuned") if "finetuned" in r else {})
