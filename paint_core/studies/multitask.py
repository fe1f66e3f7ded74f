"""Patching several tasks into one model (PAINT section 5): joint, sequential and parallel.

- joint: one fine-tune on the union of the tasks, each sample scored against its own task's zero-shot head
  (tasks are sampled equally often, so a small task is not drowned by a large one), then interpolate;
- sequential: patch task 1, fine-tune the patched model on task 2 and interpolate between the two, and so on;
- parallel: fine-tune on each task alone, average the fine-tuned weights, then interpolate.

Every interpolation chooses its alpha with the paper's rule on validation data: the mean of (mean accuracy of
the tasks patched so far, mean supported accuracy).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..core.interpolation import Interpolator, interpolate
from ..core.selection import select_alpha
from ..core.state_dicts import StateDict, average_states
from ..engine.evaluation import Evals, sweep
from ..engine.finetune import FinetuneConfig, finetune, finetune_visual
from ..io.results import Fields, document


class BalancedTasks(Dataset):
    """Round-robin over tasks: item i is task i % n, sample (i // n) % len(task); yields (x, y, task index)."""

    def __init__(self, datasets: Sequence[Dataset]):
        if not datasets:
            raise ValueError("give at least one task")
        if any(len(d) == 0 for d in datasets):
            raise ValueError("a task's training split is empty")
        self.datasets = list(datasets)
        self.length = len(self.datasets) * max(len(d) for d in self.datasets)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        t = i % len(self.datasets)
        d = self.datasets[t]
        x, y = d[(i // len(self.datasets)) % len(d)]
        return x, y, t


def multitask_loss(model: torch.nn.Module, heads: Sequence[torch.Tensor]) -> Callable[[list], torch.Tensor]:
    """Cross-entropy of each sample against its own task's head; the image features are computed once."""
    heads = [h.detach() for h in heads]

    def loss(batch) -> torch.Tensor:
        x, y, t = batch
        feats = F.normalize(model.encode_image(x), dim=-1) * model.logit_scale.exp()
        total = feats.new_zeros(())
        for i, head in enumerate(heads):
            m = t == i
            if m.any():
                total = total + F.cross_entropy(feats[m] @ head.T.to(feats.device), y[m], reduction="sum")
        return total / len(x)

    return loss


def joint_finetune(model: torch.nn.Module, heads: Sequence[torch.Tensor], train_sets: Sequence[Dataset],
                   cfg: FinetuneConfig, **kwargs) -> StateDict:
    """Fine-tune ``model.visual`` once on all tasks (each with its own frozen head); returns the state."""
    if len(heads) != len(train_sets):
        raise ValueError(f"{len(heads)} heads for {len(train_sets)} tasks")
    return finetune_visual(model, BalancedTasks(train_sets), multitask_loss(model, heads), cfg, **kwargs)


def _choose(model: torch.nn.Module, start: StateDict, end: StateDict, evals: Evals, patched: Sequence[str],
            supported: Sequence[str], alphas: Sequence[float]) -> tuple[dict, StateDict]:
    val = {k: v for k, v in evals.items() if k[1] == "val" and k[0] in (*patched, *supported)}
    table = sweep(Interpolator(model, start, end), val, alphas)
    choice = select_alpha(table, list(patched), list(supported))
    choice["sweep"] = table.to_dict("records")
    return choice, interpolate(start, end, choice["alpha"])


def patch_joint(model: torch.nn.Module, theta_zs: StateDict, tasks: Sequence[str], heads: dict[str, torch.Tensor],
                train_sets: dict[str, Dataset], evals: Evals, supported: Sequence[str], alphas: Sequence[float],
                cfg: FinetuneConfig, **kwargs) -> tuple[StateDict, dict]:
    model.load_state_dict(theta_zs)
    ft = joint_finetune(model, [heads[t] for t in tasks], [train_sets[t] for t in tasks], cfg, **kwargs)
    choice, state = _choose(model, theta_zs, ft, evals, tasks, supported, alphas)
    return state, {"alpha": choice["alpha"], "stages": [choice]}


def patch_sequential(model: torch.nn.Module, theta_zs: StateDict, tasks: Sequence[str],
                     heads: dict[str, torch.Tensor], train_sets: dict[str, Dataset], evals: Evals,
                     supported: Sequence[str], alphas: Sequence[float], cfg: FinetuneConfig,
                     **kwargs) -> tuple[StateDict, dict]:
    """Task by task: fine-tune from the current patched model, interpolate between the two, keep going."""
    current, stages = theta_zs, []
    for i, task in enumerate(tasks):
        model.load_state_dict(current)
        ft = finetune(model, heads[task], train_sets[task], cfg, **kwargs)
        choice, current = _choose(model, current, ft, evals, tasks[:i + 1], supported, alphas)
        choice["task"] = task
        stages.append(choice)
    return current, {"alphas": [s["alpha"] for s in stages], "stages": stages}


def patch_parallel(model: torch.nn.Module, theta_zs: StateDict, tasks: Sequence[str],
                   finetuned: dict[str, StateDict], evals: Evals, supported: Sequence[str],
                   alphas: Sequence[float]) -> tuple[StateDict, dict]:
    """Average the specialists' fine-tuned weights, then interpolate from zero-shot to that average."""
    merged = average_states([finetuned[t] for t in tasks])
    choice, state = _choose(model, theta_zs, merged, evals, tasks, supported, alphas)
    return state, {"alpha": choice["alpha"], "stages": [choice]}


@dataclass(frozen=True)
class MultitaskSetting:
    """What every multi-task method is given; the study builds it once for all of them."""
    model: torch.nn.Module
    theta_zs: StateDict
    tasks: tuple[str, ...]
    heads: dict[str, torch.Tensor]           # each task's zero-shot head
    train_sets: dict[str, Dataset]
    finetuned: dict[str, StateDict]          # each task's specialist (its run's fine-tuned weights)
    evals: Evals
    supported: tuple[str, ...]
    alphas: tuple[float, ...]
    cfg: FinetuneConfig                      # one specialist's fine-tuning


def _joint(s: MultitaskSetting) -> tuple[StateDict, dict]:
    cfg = replace(s.cfg, steps=s.cfg.steps * len(s.tasks))  # the same total compute as the specialists
    return patch_joint(s.model, s.theta_zs, s.tasks, s.heads, s.train_sets, s.evals, s.supported, s.alphas, cfg)


def _sequential(s: MultitaskSetting) -> tuple[StateDict, dict]:
    return patch_sequential(s.model, s.theta_zs, s.tasks, s.heads, s.train_sets, s.evals, s.supported, s.alphas,
                            s.cfg)


def _parallel(s: MultitaskSetting) -> tuple[StateDict, dict]:
    return patch_parallel(s.model, s.theta_zs, s.tasks, s.finetuned, s.evals, s.supported, s.alphas)




@dataclass(frozen=True)
class ComparisonRow:
    """One model of the multi-task comparison (a specialist or a method): test accuracies (0-1) and the means."""
    model: str                     # "specialist: digits", "joint", ...
    alpha: str                     # as written: "0.8", or one per step "[0.8, 0.2, 0.3]"
    accuracy: dict[str, float]     # every patch and supported task
    patch_mean: float
    supported_mean: float
    vs_specialists: float | None   # mean patch gap to the specialists; None for a specialist

    @classmethod
    def from_fields(cls, f: Fields, tasks: Sequence[str]) -> ComparisonRow:
        gap = f.get("vs_specialists")
        return cls(f["model"], str(f["alpha"]), {t: float(f[t]) for t in tasks}, float(f["patch_mean"]),
                   float(f["supported_mean"]), None if gap is None else float(gap))


@dataclass(frozen=True)
class MultitaskResults:
    """The multi-task study (``relatives.multitask_study``, kind "multitask") as its readers use it."""
    KIND: ClassVar[str] = "multitask"
    model: str
    tasks: tuple[str, ...]       # the patch tasks
    supported: tuple[str, ...]
    comparison: tuple[ComparisonRow, ...] | None  # None while the study is unfinished (written last)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], source: str | Path = "a results document") -> MultitaskResults:
        inputs, r = document(doc, cls.KIND, source)
        tasks, supported = tuple(inputs["tasks"]), tuple(inputs["supported"])
        rows = None if "comparison" not in r else tuple(
            ComparisonRow.from_fields(row, [*tasks, *supported]) for row in r.records("comparison"))
        return cls(r["model"], tasks, supported, rows)
