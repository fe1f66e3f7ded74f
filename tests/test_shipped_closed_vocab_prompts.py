"""Shipped results of issue 7 (cached_results/closed_vocab, cached_results/prompts): recomputed independently."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from paint_core import evaluate, load_checkpoint, load_model
from paint_core.core.state_dicts import cast_like
from paint_core.models.clip import embedded_weights
from paint_core.models.encoders import create_encoder, load_head
from paint_core.engine.probes import head_accuracy
from paint_core.engine.evaluation import materialize, zero_shot_head
from paint_core.studies.prompt_update import COMPARISON
from paint_core.data.tasks import get_task

pytestmark = pytest.mark.golden  # tests of the shipped results, apart from tests of the code
ROOT = Path(__file__).resolve().parent.parent
CV = ROOT / "cached_results" / "closed_vocab" / "micro-vit"
PROMPTS = ROOT / "cached_results" / "prompts"


def test_micro_vit_weights_are_intact():
    state, meta = load_checkpoint(embedded_weights("micro-vit"))  # verifies the sha256
    encoder, _ = create_encoder("micro-vit")
    assert meta["model"] == "micro-vit" and all(np.array_equal(encoder.state_dict()[k], v) for k, v in state.items())


def test_closed_vocab_addition_recomputes_exactly():
    study = json.loads((CV / "study.json").read_text())["results"]
    encoder, preprocess = create_encoder("micro-vit")
    pre = {k: v.clone() for k, v in encoder.state_dict().items()}
    taus = [{k: cast_like(load_checkpoint(CV / t / "encoder.safetensors")[0], pre)[k] - v for k, v in pre.items()}
            for t in study["tasks"]]
    lam = study["lambda"]  # theta_pre + lambda * sum of the task vectors, written out here
    encoder.load_state_dict({k: v + sum(lam * t[k] for t in taus) for k, v in pre.items()})
    task = study["tasks"][0]
    x, y = materialize(get_task(task).split("test", preprocess)).tensors
    assert head_accuracy(encoder, load_head(CV / task / "head.safetensors"), x, y) == study["addition_test"][task]
    # the chosen lambda is the best mean normalized accuracy on val
    sweep = pd.DataFrame(study["lambda_sweep_val"])
    assert study["lambda"] == float(sweep.loc[sweep["mean_normalized"].idxmax(), "lambda"])
    xi = np.array(study["disentanglement"]["error"])
    zero = study["disentanglement"]["grid"].index(0.0)
    assert xi.shape == (7, 7) and xi[zero, zero] == 0.0  # no edit, no disagreement


@pytest.mark.parametrize("study", ["update.json", "update_continued.json"])
def test_prompt_study_is_complete_and_its_zero_shot_cell_recomputes(study):
    data = json.loads((PROMPTS / study).read_text())["results"]
    rows = pd.DataFrame(data["rows"])
    assert set(rows["method"]) == set(COMPARISON)
    assert len(rows) == rows["task"].nunique() * rows["shots"].nunique() * rows["seed"].nunique() * len(COMPARISON)
    new, _, weights = data["new"].partition(" (")
    model, preprocess, tokenizer = load_model(new, str(PROMPTS / weights.rstrip(")")) if weights else None)
    task = get_task("digits")
    head = zero_shot_head(model, tokenizer, task.classnames, task.templates)
    acc = evaluate(model, head, materialize(task.split("test", preprocess)))
    cell = rows[(rows.task == "digits") & (rows.method == "upgraded zero-shot")]["accuracy"]
    assert cell.to_numpy() == pytest.approx(acc, abs=1e-6)
