"""Typographic attacks on a patched model: accuracy and attack-success rate along alpha, on PAINT's layout
(``typographic:PATH``) or any task that knows the word written on each image."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..core.interpolation import Interpolator
from ..data.tasks import get_task
from ..engine.evaluation import attack_scores, materialize, zero_shot_head
from .patch import load_run


def attack_sweep(run_path: str | Path, task_name: str, alphas: Sequence[float], max_eval: int | None = None,
                 batch_size: int = 256) -> list[dict]:
    """One row per alpha: accuracy, attack-success rate, images and attacked images of ``task_name``'s test split."""
    task = get_task(task_name)
    if task.written_class is None:
        raise ValueError(f"{task_name} does not say which word is written on each image; use typographic:PATH")
    run = load_run(run_path)
    data = materialize(task.split("test", run.preprocess), max_eval)
    written = task.written_class("test")[:len(data)]
    head = zero_shot_head(run.model, run.tokenizer, task.classnames, task.templates)  # text tower: never patched
    interp = Interpolator(run.model, run.theta_zs, run.theta_ft)
    rows = []
    for alpha in alphas:
        interp.set_alpha(alpha)
        rows.append({"alpha": float(alpha), **attack_scores(run.model, head, data, written, batch_size)})
    return rows
