"""Diagnostics of a model on the embedded world: zero-shot accuracy, linear probes, and does it read.

A linear probe on frozen image features tells whether the features for a task exist (then patching can
bend the frontier: only the head's alignment is missing) or must be built (then fine-tuning overwrites
other skills and the frontier is a straight line).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..data import world as w
from ..data.tasks import get_task
from ..engine.evaluation import evaluate, materialize, zero_shot_head


@torch.no_grad()
def typographic_reading(model: torch.nn.Module, preprocess: Callable, tokenizer: Callable, n: int = 300,
                        seed: int = 7) -> dict:
    """On objects with a misleading shape word written on them: how often the zero-shot shape head names the
    object, how often it names the written word; and the object rate with non-class words (the control)."""
    task = get_task("shapes")
    head = zero_shot_head(model, tokenizer, task.classnames, task.templates)
    rng = np.random.default_rng(seed)
    attack, control, labels, words = [], [], [], []
    for _ in range(n):
        label = int(rng.integers(0, len(w.SHAPES)))
        word = w.SHAPES[int(rng.choice([i for i in range(len(w.SHAPES)) if i != label]))]
        colour = list(w.COLOURS)[int(rng.integers(0, len(w.COLOURS)))]
        state = int(rng.integers(0, 2 ** 31))
        attack.append(preprocess(w.render_object_with_word(np.random.default_rng(state), w.SHAPES[label], colour, word)))
        other = w.OTHER_WORDS[int(rng.integers(0, len(w.OTHER_WORDS)))]
        control.append(preprocess(w.render_object_with_word(np.random.default_rng(state), w.SHAPES[label], colour, other)))
        labels.append(label)
        words.append(w.SHAPES.index(word))
    labels_t, words_t = torch.tensor(labels), torch.tensor(words)
    pa = (F.normalize(model.encode_image(torch.stack(attack)), dim=-1) @ head.T).argmax(-1)
    pc = (F.normalize(model.encode_image(torch.stack(control)), dim=-1) @ head.T).argmax(-1)
    return {"object_rate": float((pa == labels_t).float().mean()), "word_rate": float((pa == words_t).float().mean()),
            "control_object_rate": float((pc == labels_t).float().mean()), "n": n}


def zero_shot_accuracies(model: torch.nn.Module, preprocess: Callable, tokenizer: Callable, tasks: list[str],
                         split: str = "test") -> dict[str, float]:
    out = {}
    for name in tasks:
        task = get_task(name)
        head = zero_shot_head(model, tokenizer, task.classnames, task.templates)
        out[name] = evaluate(model, head, materialize(task.split(split, preprocess)))
    return out
