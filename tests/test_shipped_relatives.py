"""The relatives' shipped results (cached_results/micro-rn-l/relatives): numbers recomputed independently,
and the headline properties the closing notes state."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from paint_core import evaluate, interpolate, load_run
from paint_core.core.selection import choose_addition, choose_negation
from paint_core.engine.evaluation import materialize, zero_shot_head
from paint_core.core.state_dicts import average_states
from paint_core.models.run import run_task_vector
from paint_core.data.tasks import get_task
from paint_core.studies.wiseft import robustness_summary

pytestmark = pytest.mark.golden  # tests of the shipped results, apart from tests of the code
ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "cached_results" / "micro-rn-l"
REL = RUNS / "relatives"


def _json(name: str) -> dict:
    """A study's inputs and results side by side (results.py keeps them apart in the file)."""
    doc = json.loads((REL / f"{name}.json").read_text())
    return {**doc["inputs"], **doc["results"]}


def _accuracy(run, state, task_name: str, split: str = "test") -> float:
    task = get_task(task_name)
    run.model.load_state_dict(state)
    head = zero_shot_head(run.model, run.tokenizer, task.classnames, task.templates)
    return evaluate(run.model, head, materialize(task.split(split, run.preprocess)))


@pytest.mark.slow
def test_parallel_patch_recomputes_exactly():
    result = _json("multitask")
    runs = [load_run(RUNS / t) for t in result["tasks"]]
    par = result["methods"]["parallel"]
    state = interpolate(runs[0].theta_zs, average_states([r.theta_ft for r in runs]), par["alpha"])
    assert _accuracy(runs[0], state, "digits") == par["test"]["digits"]


def test_multitask_headlines():
    rows = {r["model"]: r for r in _json("multitask")["comparison"]}
    # joint patching stays within a few points of the specialists on the patch tasks, supported kept
    assert rows["joint"]["vs_specialists"] > -0.05 and rows["joint"]["supported_mean"] > 0.97
    assert rows["joint"]["patch_mean"] == max(rows[m]["patch_mean"] for m in ("joint", "sequential", "parallel"))


@pytest.mark.slow
def test_a_transfer_cell_recomputes_exactly():
    table = pd.DataFrame(_json("transfer")["rows"])
    cell = table[(table["mode"] == "finetuned") & (table.patch_task == "digits_low") & (table.eval_task == "digits_high")].iloc[0]
    run = load_run(RUNS / "digits_low")
    assert _accuracy(run, run.theta_zs, "digits_high") == cell.zero_shot
    assert _accuracy(run, run.theta_ft, "digits_high") == cell.patched


def test_wiseft_summary_follows_from_its_rows():
    result = _json("wiseft")
    rows = pd.DataFrame(result["rows"])
    for shift in result["shift_tasks"]:
        assert robustness_summary(rows, result["id_task"], shift, "test") == result["summary_test"][shift]
    # the endpoints of both ensembles are the same two models
    for shift in result["shift_tasks"]:
        s = result["summary_test"][shift]
        assert s["weight"]["finetuned"]["shift"] == pytest.approx(s["output"]["finetuned"]["shift"], abs=1e-6)


def test_arithmetic_choices_follow_from_the_val_sweeps_and_negation_forgets():
    result = _json("arithmetic")
    ft_val = {k.split("/")[0]: v for k, v in result["finetuned"].items() if k.endswith("/val")}
    for name, r in result["addition"].items():
        assert choose_addition(pd.DataFrame(r["val_sweep"]), result["tasks"], ft_val) == r["lambda"]
    for target, r in result["negation"].items():
        assert choose_negation(pd.DataFrame(r["val_sweep"]), target, r["control"]) == r["lambda"]
        control_zs = sum(r["zero_shot_test"][c] for c in r["control"]) / len(r["control"])
        control = sum(r["test"][c] for c in r["control"]) / len(r["control"])
        assert control > control_zs - 0.06  # the control tasks hold (chosen on val: >= 95% of zero-shot)
        assert r["test"][target] < r["zero_shot_test"][target] - 0.2  # the target task is forgotten


@pytest.mark.slow
def test_negation_point_recomputes_exactly():
    result = _json("arithmetic")
    r = result["negation"]["digits"]
    run = load_run(RUNS / "digits")
    state = (-run_task_vector(run)).apply_to(run.theta_zs, r["lambda"])
    assert _accuracy(run, state, "digits") == r["test"]["digits"]


def test_runs_of_different_zero_shot_models_are_refused(capsys):
    from paint_core.cli import main
    code = main(["arithmetic", "--runs", f"{RUNS / 'digits'},{RUNS.parent / 'micro-rn-s' / 'counting'}",
                 "--supported", "shapes", "--out", "/tmp/never.json"])
    err = capsys.readouterr().err
    assert code == 1 and "not patched from the same zero-shot model" in err and "micro-rn-s" in err
    assert main(["multitask", "--runs", "", "--supported", "shapes", "--out", "/tmp/never.json"]) == 1
    assert "at least one run directory" in capsys.readouterr().err
    assert main(["arithmetic", "--runs", str(RUNS / "digits"), "--supported", "shapes", "--merges", "ties",
                 "--k", "0", "--out", "/tmp/never.json"]) == 1
    assert "ties: k is the percent of entries kept, in (0, 100]" in capsys.readouterr().err


def test_summary_md_carries_the_relatives_as_stored():
    from paint_core.studies.reproduce import plans_markdown, relatives_markdown
    text = (ROOT / "cached_results" / "summary.md").read_text()
    tail = relatives_markdown(ROOT / "cached_results") + plans_markdown(ROOT / "cached_results")
    assert text.endswith(tail) and "## Per-block plans" in tail and "## Relatives on micro-rn-l" in text
