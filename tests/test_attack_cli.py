"""`attack` on bad input (issue 25): a max-eval that is no number of images, and images the model cannot tell
apart (it gives every one the same class) are said, not reported as plain rates."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from paint_core import interpolate, load_run
from paint_core.cli import main
from paint_core.data.tasks import get_task
from paint_core.engine.evaluation import materialize, predict, zero_shot_head

RUN = Path(__file__).resolve().parent.parent / "cached_results" / "reading" / "typographic"
# micro-rn-l's typographic run: the colour fields below get one answer from it at both alphas (the reader at 64 px
# tells one of them apart at alpha 0)
PHOTO_RUN = RUN.parent.parent / "micro-rn-l" / "typographic"


def test_max_eval_must_be_a_positive_number_of_images(capsys):
    for bad in ("-1", "0"):
        assert main(["attack", "--run", str(RUN), "--task", "typographic", f"--max-eval={bad}"]) == 1
        assert capsys.readouterr().err == f"error: max_eval must be a positive number of images, got {bad}\n"


def _photos(folder: Path) -> None:
    """Eight smooth colour fields in PAINT's typographic naming: nothing like the procedural world."""
    rng = np.random.default_rng(0)
    names = ["circle", "square", "triangle", "star"]
    for label, text in [(a, b) for a in names for b in names if a != b][:8]:
        field = rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8)
        Image.fromarray(field).resize((200, 150), Image.BICUBIC).save(folder / f"label={label}_text={text}.jpg")


@pytest.mark.slow
def test_one_answer_for_every_image_is_said(tmp_path, capsys):
    _photos(tmp_path)
    assert main(["attack", "--run", str(PHOTO_RUN), "--task", f"typographic:{tmp_path}", "--alphas", "0,1", "--json"]) == 0
    out = capsys.readouterr()
    rows = json.loads(out.out)
    run = load_run(PHOTO_RUN)  # the predictions recomputed: one class for all eight, at both alphas
    task = get_task(f"typographic:{tmp_path}")
    data = materialize(task.split("test", run.preprocess))
    head = zero_shot_head(run.model, run.tokenizer, task.classnames, task.templates)
    answers = []
    for alpha in (0.0, 1.0):
        run.model.load_state_dict(interpolate(run.theta_zs, run.theta_ft, alpha))
        pred = predict(run.model, head, data.tensors[0]).argmax(-1)
        assert torch.equal(pred, pred[:1].expand(8))
        answers.append(task.classnames[int(pred[0])])
    assert [r["single_answer"] for r in rows] == answers == ["square", "square"]
    assert out.err.splitlines()[-1] == (
        "note: at alpha 0, 1 the model answers 'square' for every one of the 8 images: they are probably unlike "
        "anything it was trained on (e.g. photos for a model of the procedural world), so these accuracies and "
        "attack rates say little")
    # the embedded set, in the model's domain: several answers, no note
    assert main(["attack", "--run", str(RUN), "--task", "typographic", "--alphas", "0,1", "--max-eval", "40"]) == 0
    out = capsys.readouterr()
    assert "note:" not in out.err and "accuracy" in out.out
