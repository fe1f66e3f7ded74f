"""The prompt-update study: CoOp and ContCoOp prompts learned on an old model, plugged into an upgraded
one unchanged, next to prompts retrained on it (written as a results file)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import pandas as pd

import torch
from tqdm.auto import tqdm

from ..engine.prompts import PromptConfig, few_shot_indices, prompt_accuracy, token_width, train_prompt
from ..engine.training import Progress, ProgressFn
from ..io.results import document, finished, write_results


COMPARISON = ("upgraded zero-shot", "CoOp transferred", "ContCoOp transferred", "CoOp retrained",
              "ContCoOp retrained", "old zero-shot", "CoOp on old", "ContCoOp on old")


def update_study(old: str, new: str, tasks: Sequence[str], shots: Sequence[int] = (1, 4, 16),
                 seeds: Sequence[int] = (0, 1, 2), cfg: PromptConfig = PromptConfig(), pool: int = 600,
                 old_pretrained: str | None = None, new_pretrained: str | None = None, max_eval: int | None = None,
                 on_progress: ProgressFn | None = None) -> list[dict]:
    """Train CoOp and ContCoOp prompts on ``old``, plug them into ``new`` unchanged, and retrain on ``new``.

    Few-shot examples come from the first ``pool`` training images of each task; accuracy is on the test split.
    Returns rows: task, shots, seed, method (see COMPARISON), accuracy.
    """
    from ..engine.evaluation import image_features, materialize, zero_shot_head
    from ..models.clip import load_model
    from ..data.tasks import get_task

    if not tasks:
        raise ValueError("give at least one task")
    if any(s < 1 for s in shots):
        raise ValueError(f"shots must be at least 1, got {list(shots)}")
    models = {"old": load_model(old, old_pretrained), "new": load_model(new, new_pretrained)}
    w_old, w_new = token_width(models["old"][0]), token_width(models["new"][0])
    if w_old != w_new:
        raise ValueError(f"{old} has token width {w_old} and {new} has {w_new}: prompts cannot move between them")
    rows: list[dict] = []
    bar = tqdm(total=len(tasks) * len(shots) * len(seeds), desc="prompts (task, shots, seed)")
    for task_name in tasks:
        task = get_task(task_name)
        data = {}
        for key, (model, preprocess, tokenizer) in models.items():
            train = materialize(task.split("train", preprocess), pool)
            test = materialize(task.split("test", preprocess), max_eval)
            head = zero_shot_head(model, tokenizer, task.classnames, task.templates)
            data[key] = (image_features(model, train.tensors[0]), train.tensors[1],
                         image_features(model, test.tensors[0]), test.tensors[1], head)
        acc = {}
        for key in ("old", "new"):
            model, _, tokenizer = models[key]
            _, _, fte, yte, head = data[key]
            acc[f"{key} zs"] = prompt_accuracy(None, model, tokenizer, task.classnames, fte, yte, head)
        for n_shots in shots:
            for seed in seeds:
                result = {"upgraded zero-shot": acc["new zs"], "old zero-shot": acc["old zs"]}
                for kind, label in (("coop", "CoOp"), ("contcoop", "ContCoOp")):
                    run_cfg = PromptConfig(**{**asdict(cfg), "kind": kind, "seed": seed})
                    learned = {}
                    for key in ("old", "new"):
                        model, _, tokenizer = models[key]
                        ftr, ytr, _, _, head = data[key]
                        idx = torch.as_tensor(few_shot_indices(ytr.numpy(), n_shots, seed))
                        learned[key] = train_prompt(model, tokenizer, task.classnames, ftr[idx], ytr[idx], head,
                                                    run_cfg, progress=False)
                    m_new, _, tok_new = models["new"]
                    m_old, _, tok_old = models["old"]
                    _, _, fte_new, yte_new, _ = data["new"]
                    _, _, fte_old, yte_old, _ = data["old"]
                    result[f"{label} transferred"] = prompt_accuracy(learned["old"], m_new, tok_new, task.classnames,
                                                                     fte_new, yte_new)
                    result[f"{label} retrained"] = prompt_accuracy(learned["new"], m_new, tok_new, task.classnames,
                                                                   fte_new, yte_new)
                    result[f"{label} on old"] = prompt_accuracy(learned["old"], m_old, tok_old, task.classnames,
                                                                fte_old, yte_old)
                rows += [{"task": task_name, "shots": n_shots, "seed": seed, "method": m, "accuracy": result[m]}
                         for m in COMPARISON]
                bar.update(1)
                if on_progress:
                    on_progress(Progress(bar.n, bar.total, "prompts (task, shots, seed)"))
    bar.close()
    return rows


def weights_input(name: str, pretrained: str | None) -> dict:
    """A model as a study's input: its name, and its weights file's sha256 when it is a local file."""
    from ..io.checkpoints import sha256_file
    from ..io.run_dir import portable_path
    if pretrained is not None and Path(pretrained).is_file():
        return {"model": name, "pretrained": portable_path(pretrained), "sha256": sha256_file(pretrained)}
    return {"model": name, "pretrained": pretrained}


def update_study_file(out: str | Path, old: str, new: str, tasks: Sequence[str], shots: Sequence[int] = (1, 4, 16),
                      seeds: Sequence[int] = (0, 1, 2), cfg: PromptConfig = PromptConfig(), pool: int = 600,
                      old_pretrained: str | None = None, new_pretrained: str | None = None,
                      max_eval: int | None = None, new_label: str | None = None) -> dict:
    """``update_study`` written to ``out`` as a results file; reused if it was computed from the same inputs."""
    inputs = {"old": weights_input(old, old_pretrained), "new": weights_input(new, new_pretrained),
              "tasks": list(tasks), "shots": list(shots), "seeds": list(seeds), "config": asdict(cfg),
              "pool": pool, "max_eval": max_eval}
    done = finished(out, "prompt-update", inputs)
    if done:
        return done  # computed before from the same inputs
    rows = update_study(old, new, tasks, shots, seeds, cfg, pool, old_pretrained, new_pretrained, max_eval)
    return write_results(out, "prompt-update", inputs, {"old": old, "new": new_label or new, "rows": rows})


@dataclass(frozen=True)
class PromptUpdateResults:
    """The prompt-update study (``update_study_file``, kind "prompt-update") as its readers use it."""
    KIND: ClassVar[str] = "prompt-update"
    old: str
    new: str  # the upgraded model's label
    rows: pd.DataFrame = field(compare=False, repr=False)  # task, shots, seed, method (COMPARISON), accuracy

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], source: str | Path = "a results document") -> PromptUpdateResults:
        _, r = document(doc, cls.KIND, source)
        return cls(r["old"], r["new"], r.table("rows", ("task", "shots", "seed", "method", "accuracy")))
