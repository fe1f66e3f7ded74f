"""WiSE-FT (Wortsman et al.): robustness to distribution shift from ensembling zero-shot and fine-tuned models.

The weight-space ensemble is PAINT's interpolation judged on a shifted split; the output-space ensemble mixes
the two models' logits, (1 - alpha) * logits_zs + alpha * logits_ft, and costs two forward passes; the Fisher-
weighted one (the WiSE-FT paper's variant) leans each weight towards the model whose Fisher says it matters more.
"Effective robustness" is shifted accuracy above the straight line joining the endpoints in the
(in-distribution, shifted) plane.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from ..core.interpolation import Interpolator, fisher_interpolate
from ..core.plan import check_alpha
from ..core.selection import endpoints_line
from ..io.results import Fields, document
from ..core.state_dicts import StateDict
from ..engine.evaluation import Evals, evaluate_all, logits, run_batches, sweep


ENSEMBLE_COLUMNS = ["ensemble", "alpha", "task", "split", "accuracy", "n"]


def output_ensemble(logits_zs: torch.Tensor, logits_ft: torch.Tensor, alpha: float) -> torch.Tensor:
    """(1 - alpha) * logits_zs + alpha * logits_ft."""
    alpha = check_alpha(alpha)
    if logits_zs.shape != logits_ft.shape:
        raise ValueError(f"logit shapes differ: {tuple(logits_zs.shape)} vs {tuple(logits_ft.shape)}")
    return (1 - alpha) * logits_zs + alpha * logits_ft


def all_logits(model: torch.nn.Module, head: torch.Tensor, dataset: Dataset,
               batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, C] logits and [N] labels of a whole dataset."""
    return run_batches(lambda x: logits(model, head, x), dataset, model, batch_size)


def ensemble_sweep(model: torch.nn.Module, theta_zs: StateDict, theta_ft: StateDict, evals: Evals,
                   alphas: Sequence[float], fishers: tuple[StateDict, StateDict, float] | None = None
                   ) -> pd.DataFrame:
    """Accuracy along alpha of the weight-space and the output-space ensembles on every (task, split), and with
    ``fishers`` = (F zero-shot, F fine-tuned, floor) of WiSE-FT's Fisher-weighted weight-space ensemble."""
    weight = sweep(Interpolator(model, theta_zs, theta_ft), evals, alphas).assign(ensemble="weight")
    parts = [weight]
    if fishers is not None:
        f0, f1, floor = fishers
        rows = []
        for alpha in alphas:
            model.load_state_dict(fisher_interpolate(theta_zs, theta_ft, f0, f1, alpha, floor))
            for key, acc in evaluate_all(model, evals).items():
                task, split = key.split("/")
                rows.append({"ensemble": "fisher", "alpha": round(float(alpha), 6), "task": task, "split": split,
                             "accuracy": acc, "n": len(evals[(task, split)][0])})
        parts.append(pd.DataFrame(rows))
    cached = {}
    for state, name in ((theta_zs, "zs"), (theta_ft, "ft")):
        model.load_state_dict(state)
        for key, (ds, head) in evals.items():
            cached[(name, key)] = all_logits(model, head, ds)
    rows = []
    for alpha in alphas:
        for key in evals:
            (lz, y), (lf, _) = cached[("zs", key)], cached[("ft", key)]
            acc = float((output_ensemble(lz, lf, alpha).argmax(-1) == y).float().mean())
            rows.append({"ensemble": "output", "alpha": round(float(alpha), 6), "task": key[0], "split": key[1],
                         "accuracy": acc, "n": len(y)})
    table = pd.concat([*parts, pd.DataFrame(rows)], ignore_index=True)
    return table[ENSEMBLE_COLUMNS].sort_values(["ensemble", "alpha", "task", "split"]).reset_index(drop=True)


def robustness_summary(table: pd.DataFrame, id_task: str, shift_task: str, split: str = "test") -> dict:
    """Per ensemble: endpoints, best shifted accuracy along alpha, and its height above the endpoints' line."""
    out = {}
    for name, df in table[table["split"] == split].groupby("ensemble"):
        piv = df.pivot_table(index="alpha", columns="task", values="accuracy").sort_index()
        x, y = piv[id_task].to_numpy(), piv[shift_task].to_numpy()
        x0, y0, x1, y1 = x[0], y[0], x[-1], y[-1]
        line = endpoints_line(x, y)  # read at each point's in-distribution accuracy
        best = int(np.argmax(y))
        out[name] = {
            "zero_shot": {"id": float(x0), "shift": float(y0)}, "finetuned": {"id": float(x1), "shift": float(y1)},
            "best_shift_alpha": float(piv.index[best]), "best_shift": float(y[best]), "id_at_best": float(x[best]),
            "beats_both_endpoints_on_shift": bool(y[best] > max(y0, y1)),
            "max_effective_robustness": float((y - line).max()),
        }
    return out


@dataclass(frozen=True)
class EnsembleSummary:
    """One ensemble on one shifted task (``robustness_summary``'s entry): accuracies 0-1 on the shifted task."""
    zero_shot_shift: float
    finetuned_shift: float
    best_shift: float
    best_shift_alpha: float
    beats_both_endpoints: bool
    max_effective_robustness: float  # the most the ensemble lies above the endpoints' line, accuracy units

    @classmethod
    def from_fields(cls, f: Fields) -> EnsembleSummary:
        return cls(float(f.part("zero_shot")["shift"]), float(f.part("finetuned")["shift"]), float(f["best_shift"]),
                   float(f["best_shift_alpha"]), bool(f["beats_both_endpoints_on_shift"]),
                   float(f["max_effective_robustness"]))


@dataclass(frozen=True)
class WiseftResults:
    """The WiSE-FT study (``relatives.wiseft_study``, kind "wiseft") as its readers use it."""
    KIND: ClassVar[str] = "wiseft"
    model: str
    id_task: str
    shift_tasks: tuple[str, ...]
    summary_test: dict[str, dict[str, EnsembleSummary]]  # shifted task -> ensemble ("weight", "output", ...) -> summary
    rows: pd.DataFrame = field(compare=False, repr=False)  # ENSEMBLE_COLUMNS: ensemble_sweep's table

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], source: str | Path = "a results document") -> WiseftResults:
        inputs, r = document(doc, cls.KIND, source)
        by_shift = r.part("summary_test")
        summary = {shift: {name: EnsembleSummary.from_fields(e) for name, e in by_shift.parts(shift).items()}
                   for shift in by_shift.data}
        return cls(r["model"], r["id_task"], tuple(inputs["shift_tasks"]), summary,
                   r.table("rows", ENSEMBLE_COLUMNS))
