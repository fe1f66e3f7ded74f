"""The real path of issue 7 with random weights: a timm encoder through the closed-vocabulary CLI, and two
open_clip models of equal text width through the prompt CLI."""
from __future__ import annotations

import json

import open_clip
import pytest
import torch

from paint_core import evaluate, load_model
from paint_core.io.checkpoints import save_checkpoint
from paint_core.cli import main
from paint_core.engine.evaluation import materialize, zero_shot_head
from paint_core.models.clip import register_embedded_configs
from paint_core.data.tasks import get_task

pytestmark = pytest.mark.slow


def test_closed_vocab_cli_on_a_random_timm_model(tmp_path):
    out = tmp_path / "cv"
    code = main(["closed-vocab", "--model", "test_vit", "--pretrained", "random", "--tasks", "digits,counting",
                 "--steps", "2", "--lrs", "1e-4,1e-3", "--probe-n", "32", "--max-eval", "16", "--grid-n", "8", "--out", str(out)])
    assert code == 0
    study = json.loads((out / "study.json").read_text())["results"]
    assert study["model"] == "test_vit" and set(study["per_task"]) == {"digits", "counting"}
    assert 0 <= study["addition_mean_absolute"] <= 1 and len(study["lambda_sweep_val"]) == 16
    search = study["per_task"]["digits"]["lr_search_val"]
    assert set(search) == {"0.0001", "0.001"} and study["per_task"]["digits"]["lr"] in (1e-4, 1e-3)
    assert search[str(study["per_task"]["digits"]["lr"])] == max(search.values())
    assert (out / "digits" / "encoder.safetensors").is_file() and (out / "counting" / "head.safetensors").is_file()
    assert main(["closed-vocab", "--model", "vit_tiny_patch16_22", "--out", str(out)]) == 1  # unknown name


def test_prompt_cli_between_two_random_open_clip_models(tmp_path, random_micro_file):
    register_embedded_configs()
    torch.manual_seed(1)
    large = tmp_path / "micro-rn-l-random.safetensors"
    save_checkpoint(large, open_clip.create_model("micro-rn-l", pretrained=None).state_dict(), {"model": "micro-rn-l"})
    out = tmp_path / "prompts.json"
    code = main(["prompts", "--old", "micro-rn-s", "--old-pretrained", random_micro_file, "--new", "micro-rn-l",
                 "--new-pretrained", str(large), "--tasks", "digits", "--shots", "1", "--seeds", "0", "--steps", "2",
                 "--pool", "40", "--max-eval", "30", "--out", str(out)])
    assert code == 0
    rows = json.loads(out.read_text())["results"]["rows"]
    assert len(rows) == 8
    model, preprocess, tokenizer = load_model("micro-rn-l", str(large))
    task = get_task("digits")
    head = zero_shot_head(model, tokenizer, task.classnames, task.templates)
    expected = evaluate(model, head, materialize(task.split("test", preprocess), 30))
    got = next(r["accuracy"] for r in rows if r["method"] == "upgraded zero-shot")
    assert got == pytest.approx(expected, abs=1e-6)
