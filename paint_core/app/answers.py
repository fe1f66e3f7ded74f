"""What a page computes from an opened run or model, beyond one forward pass: the Typographic page's fooling
example and its word reading. The dashboard caches these by the run's identity; here they are plain functions."""
from __future__ import annotations

import copy
from typing import Callable

import torch

from ..core.interpolation import interpolate
from ..data import world
from ..data.embedded import SHAPE_TEMPLATES
from ..engine.attack import find_fooling_example
from ..engine.evaluation import zero_shot_head
from ..models.run import Run
from ..studies.diagnostics import control_costs, reading_by_word, word_rates, word_summary, word_trials

WORD_READING_PER_CELL = 2  # the page's per-word test: 540 objects (90 per class word), ~3 s on one CPU core


def fooling_example(run: Run, alpha: float) -> dict | None:
    """A composed object the run's zero-shot model gets wrong under a written word and the patch at ``alpha``
    fixes (``find_fooling_example``'s answer); the run's model is not touched (the patch is a copy)."""
    patched = copy.deepcopy(run.model)
    patched.load_state_dict(interpolate(run.theta_zs, run.theta_ft, alpha))
    head = zero_shot_head(run.model, run.tokenizer, world.SHAPES, SHAPE_TEMPLATES)
    return find_fooling_example(run.model, patched, head, run.preprocess)


def word_reading(model: torch.nn.Module, preprocess: Callable, tokenizer: Callable,
                 per_cell: int = WORD_READING_PER_CELL) -> dict:
    """Which class words ``model`` reads: {rates, costs, summary}, the tables of ``studies.diagnostics``."""
    results = reading_by_word(model, preprocess, tokenizer, word_trials(per_cell))
    return {"rates": word_rates(results), "costs": control_costs(results), "summary": word_summary(results)}
