"""PAINT's typographic layout as a task (issue 13, part 6): names parsed, evaluation-only, attack success."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from paint_core.cli import main
from paint_core.data.tasks import get_task
from paint_core.data.world import render_object, write_word

CACHED_RUN = str(Path(__file__).resolve().parent.parent / "cached_results" / "micro-rn-l" / "typographic")
FILES = [("circle", "star"), ("circle", "square"), ("square", "circle"), ("star", "triangle"),
         ("triangle", "circle"), ("square", "square"), ("star", "hot dog"), ("triangle", "star")]


@pytest.fixture()
def typo_folder(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "rta"
    folder.mkdir()
    for label, text in FILES:
        img = write_word(render_object(rng, label, "red").resize((96, 96)), text, "center", 0.25)
        img.save(folder / f"label={label}_text={text.replace(' ', '_')}.png")
    return folder


def test_names_are_parsed_and_the_task_is_evaluation_only(typo_folder):
    task = get_task(f"typographic:{typo_folder}")
    assert task.classnames == ("circle", "square", "star", "triangle")
    test = task.split("test")
    assert len(test) == len(FILES)
    labels = [test[i][1] for i in range(len(test))]
    files = sorted(p.name for p in typo_folder.iterdir())
    assert [task.classnames[l] for l in labels] == [f.split("_text=")[0][len("label="):] for f in files]
    written = task.written_class("test")
    assert sum(w == -1 for w in written) == 1  # "hot dog" is not a class
    with pytest.raises(ValueError, match="evaluation-only.*typographic-split:"):
        task.split("train")
    words = get_task(f"typographic:{typo_folder}?words")
    assert "hot dog" in words.classnames and -1 not in list(words.written_class("test"))
    carved = get_task(f"typographic-split:{typo_folder}")
    assert sum(len(carved.split(s)) for s in ("train", "val", "test")) == len(FILES)


def test_bad_layouts_are_clear_errors(typo_folder, tmp_path):
    (typo_folder / "notes.png").write_bytes(b"x")
    with pytest.raises(ValueError, match="not named label=<class>_text=<word>.*notes.png"):
        get_task(f"typographic:{typo_folder}")
    single = tmp_path / "single" / "dog"
    single.mkdir(parents=True)
    render_object(np.random.default_rng(0), "circle", "red").save(single / "label=dog_text=cat.png")
    with pytest.raises(ValueError, match="single class .*typographic:"):
        get_task(f"imagefolder:{tmp_path / 'single'}")


@pytest.mark.slow
def test_attack_cli_equals_an_independent_count(typo_folder, capsys):
    from paint_core import interpolate, load_run
    from paint_core.engine.evaluation import materialize, zero_shot_head
    task_name = f"typographic:{typo_folder}"
    assert main(["attack", "--run", CACHED_RUN, "--task", task_name, "--alphas", "0,1", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    run = load_run(CACHED_RUN)
    task = get_task(task_name)
    x, y = materialize(task.split("test", run.preprocess)).tensors
    head = zero_shot_head(run.model, run.tokenizer, task.classnames, task.templates)
    written = torch.as_tensor(task.written_class("test"))
    for row in rows:
        run.model.load_state_dict(interpolate(run.theta_zs, run.theta_ft, row["alpha"]))
        with torch.no_grad():
            feats = torch.nn.functional.normalize(run.model.encode_image(x), dim=-1)
            pred = (feats @ head.T).argmax(-1)
        attacked = (written >= 0) & (written != y)
        assert row["n"] == len(FILES) and row["n_attacked"] == int(attacked.sum()) == 6
        assert row["accuracy"] == pytest.approx(float((pred == y).float().mean()))
        assert row["attack_success"] == pytest.approx(float((pred[attacked] == written[attacked]).float().mean()))
    assert main(["attack", "--run", CACHED_RUN, "--task", "shapes"]) == 1
    assert "does not say which word is written" in capsys.readouterr().err
