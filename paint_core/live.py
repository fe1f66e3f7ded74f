"""What an interactive front end needs: a per-user live patched model, and side-by-side predictions.

A ``PatchSession`` owns its own copy of the model (the loaded ``Run`` stays read-only, shareable between
users) and re-interpolates it in place with ``Interpolator`` when the alpha changes.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Sequence

import pandas as pd
import torch
from PIL import Image

from .evaluation import materialize, predict, zero_shot_head
from .interpolation import Interpolator
from .runs import Run
from .tasks import get_task


# Images per task that a slider move re-evaluates: 100 keeps a move under ~0.3 s on 2 cores for the
# embedded model (benchmarks/slider.py) at 1-point resolution; the cached sweep has the full splits.
LIVE_EVAL_N = 100


@dataclass(frozen=True)
class EvalSet:
    """A fixed evaluation subsample of one task, preprocessed once, with the task's zero-shot head."""
    task: str
    classnames: tuple[str, ...]
    images: torch.Tensor
    labels: torch.Tensor
    head: torch.Tensor


def build_eval_sets(run: Run, tasks: Sequence[str], n: int = LIVE_EVAL_N, split: str = "test") -> dict[str, EvalSet]:
    """The first ``n`` images of ``split`` of each task (read-only; safe to share between sessions)."""
    out = {}
    for name in tasks:
        task = get_task(name, root=run.meta.get("data_root"), download=run.meta.get("download", False))
        ds = materialize(task.split(split, run.preprocess), n)
        head = zero_shot_head(run.model, run.tokenizer, task.classnames, task.templates)
        out[name] = EvalSet(name, task.classnames, ds.tensors[0], ds.tensors[1], head)
    return out


class PatchSession:
    """One user's live patched model. ``set_alpha`` re-interpolates; ``accuracies`` evaluates the subsample."""

    def __init__(self, run: Run, eval_sets: dict[str, EvalSet]):
        self.run = run
        self.model = copy.deepcopy(run.model)  # this session's own weights; run.model is never touched
        self.interpolator = Interpolator(self.model, run.theta_zs, run.theta_ft)
        self.eval_sets = eval_sets
        self._probs_by_alpha: dict[float, dict[str, torch.Tensor]] = {}
        self.interpolator.set_alpha(0.0)
        self.zero_shot_probs = self.probabilities()

    @property
    def alpha(self) -> float | None:
        return self.interpolator.alpha

    def set_alpha(self, alpha: float) -> None:
        if alpha != self.interpolator.alpha:
            self.interpolator.set_alpha(alpha)

    def probabilities(self) -> dict[str, torch.Tensor]:
        """Subsample probabilities at the current alpha; remembered per alpha, so going back to a slider
        position costs nothing (a slider has few positions; the weights at an alpha never change)."""
        alpha = self.interpolator.alpha
        if alpha not in self._probs_by_alpha:
            self._probs_by_alpha[alpha] = {t: predict(self.model, e.head, e.images) for t, e in self.eval_sets.items()}
        return self._probs_by_alpha[alpha]

    def accuracies(self, probs: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
        probs = probs or self.probabilities()
        return {t: int((p.argmax(-1) == self.eval_sets[t].labels).sum()) / len(p) for t, p in probs.items()}


def per_class_accuracy(probs: torch.Tensor, labels: torch.Tensor, classnames: Sequence[str]) -> pd.DataFrame:
    """Accuracy per true class (e.g. per true count), with the number of images of each."""
    pred = probs.argmax(-1)
    rows = []
    for i, name in enumerate(classnames):
        mask = labels == i
        n = int(mask.sum())
        rows.append({"class": name, "accuracy": int((pred[mask] == i).sum()) / n if n else float("nan"), "n": n})
    return pd.DataFrame(rows)


def compare_predictions(models: dict[str, torch.nn.Module], preprocess: Callable, tokenizer: Callable,
                        image: Image.Image, classnames: Sequence[str], templates: Sequence[str],
                        head_model: torch.nn.Module, top: int = 5) -> pd.DataFrame:
    """Top-``top`` class probabilities of each model for one image, side by side.

    The head comes from ``head_model``'s text tower (the zero-shot head, as in PAINT). Columns:
    rank, then ``<name> class`` and ``<name> prob`` for each model.
    """
    head = zero_shot_head(head_model, tokenizer, classnames, templates)
    x = preprocess(image.convert("RGB")).unsqueeze(0)
    k = min(top, len(classnames))
    table = {"rank": list(range(1, k + 1))}
    for name, model in models.items():
        p = predict(model, head, x)[0]
        vals, idx = p.topk(k)
        table[f"{name} class"] = [classnames[i] for i in idx.tolist()]
        table[f"{name} prob"] = [round(float(v), 4) for v in vals]
    return pd.DataFrame(table)


def parse_classnames(text: str) -> list[str]:
    """One class per line or comma-separated; refuses an empty list and duplicates with a clear message."""
    parts = [p.strip() for chunk in text.splitlines() for p in chunk.split(",")]
    names = [p for p in parts if p]
    if not names:
        raise ValueError("the class list is empty: write at least two class names, one per line")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate class names: {', '.join(dupes)}")
    return names
