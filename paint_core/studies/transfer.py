"""Broad transfer (PAINT section 6): patch on task A, measure on task B whose classes A never had."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import pandas as pd
import torch

from ..core.interpolation import interpolate
from ..core.state_dicts import StateDict
from ..engine.evaluation import Evals, evaluate_all
from ..io.results import document


TRANSFER_COLUMNS = ["patch_task", "eval_task", "alpha", "zero_shot", "patched", "change"]


def transfer_matrix(model: torch.nn.Module, theta_zs: StateDict, patched: dict[str, tuple[StateDict, float]],
                    evals: Evals, split: str = "test") -> pd.DataFrame:
    """Accuracy change (patched minus zero-shot) of every patched model on every task of ``evals``.

    ``patched`` maps a patch task to (its fine-tuned state, the alpha to read it at); all share ``theta_zs``.
    """
    if not patched:
        raise ValueError("give at least one patched model")
    model.load_state_dict(theta_zs)
    zero_shot = evaluate_all(model, evals, split)
    rows = []
    for task, (theta_ft, alpha) in patched.items():
        model.load_state_dict(interpolate(theta_zs, theta_ft, alpha))
        acc = evaluate_all(model, evals, split)
        rows += [{"patch_task": task, "eval_task": t, "alpha": float(alpha), "zero_shot": zero_shot[t],
                  "patched": acc[t], "change": acc[t] - zero_shot[t]} for t in acc]
    model.load_state_dict(theta_zs)
    return pd.DataFrame(rows, columns=TRANSFER_COLUMNS)


def disjoint_classes(table: pd.DataFrame, classes: dict[str, Sequence[str]]) -> list[bool]:
    """Per row: do the patch task and the eval task share no class name (true transfer, not re-testing)?"""
    return [not set(classes[a]) & set(classes[b]) for a, b in zip(table["patch_task"], table["eval_task"])]


@dataclass(frozen=True)
class TransferResults:
    """The broad-transfer study (``relatives.transfer_study``, kind "transfer") as its readers use it."""
    KIND: ClassVar[str] = "transfer"
    model: str
    split: str
    # TRANSFER_COLUMNS, "mode" ("finetuned": alpha 1, "chosen": alpha chosen on val) and "disjoint_classes"
    rows: pd.DataFrame = field(compare=False, repr=False)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], source: str | Path = "a results document") -> TransferResults:
        _, r = document(doc, cls.KIND, source)
        return cls(r["model"], r["split"], r.table("rows", (*TRANSFER_COLUMNS, "mode", "disjoint_classes")))
