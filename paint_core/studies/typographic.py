"""Typographic attacks on a patched model: accuracy and attack-success rate along alpha, on PAINT's layout
(``typographic:PATH``) or any task that knows the word written on each image."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..core.interpolation import Interpolator
from ..data.tasks import get_task
from ..engine.evaluation import attack_scores, check_max_eval, materialize, zero_shot_head
from .patch import load_run


def attack_sweep(run_path: str | Path, task_name: str, alphas: Sequence[float], max_eval: int | None = None,
                 batch_size: int = 256) -> list[dict]:
    """One row per alpha: accuracy, attack-success rate, images and attacked images of ``task_name``'s test
    split, and ``single_answer``: the class the model gives every image at that alpha, if it gives only one
    (see ``single_answer_note``)."""
    check_max_eval(max_eval)
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
        scores = attack_scores(run.model, head, data, written, batch_size)
        one = scores.pop("single_answer")
        rows.append({"alpha": float(alpha), **scores, "single_answer": None if one is None else task.classnames[one]})
    return rows


def single_answer_note(rows: Sequence[dict]) -> str | None:
    """A hint when the model gave one class to every image at some alpha: the images are probably outside
    what it has seen (photos for a model of the procedural world), and its rates say little about reading."""
    same = [r for r in rows if r.get("single_answer") is not None]
    if not same:
        return None
    alphas = ", ".join(f"{r['alpha']:g}" for r in same)
    answers = sorted({r["single_answer"] for r in same})
    return (f"at alpha {alphas} the model answers {' or '.join(repr(a) for a in answers)} for every one of the "
            f"{same[0]['n']} images: they are probably unlike anything it was trained on (e.g. photos for a model "
            "of the procedural world), so these accuracies and attack rates say little")
