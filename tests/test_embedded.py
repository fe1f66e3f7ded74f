"""The shipped embedded models and cached_results: integrity, and a sweep point recomputed from scratch."""
import json
from pathlib import Path

import pytest

from paint_core import evaluate, interpolate, list_models, load_checkpoint, load_model, load_run
from paint_core.engine.evaluation import zero_shot_head
from paint_core.models.clip import embedded_weights
from paint_core.studies.reproduce import ALPHAS, run_summary
from paint_core.io.run_dir import read_sweep
from paint_core.data.embedded import PATCH_TASKS, SUPPORTED_TASKS
from paint_core.data.tasks import get_task

pytestmark = pytest.mark.golden  # tests of the shipped results, apart from tests of the code
ROOT = Path(__file__).resolve().parent.parent
CACHED = ROOT / "cached_results"


@pytest.mark.parametrize("name", list(list_models()))
def test_shipped_weights_are_intact_and_load(name):
    state, meta = load_checkpoint(embedded_weights(name))  # verifies the sha256 in the sidecar
    assert meta["model"] == name and meta["command"].startswith("python -m paint_core pretrain")
    model, _, _ = load_model(name)
    assert all((model.state_dict()[k] == v).all() for k, v in state.items())


@pytest.mark.parametrize("name", list(list_models()))
@pytest.mark.parametrize("task", PATCH_TASKS)
def test_every_cached_run_is_complete(name, task):
    run_dir = CACHED / name / task
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["provenance"]["command"] == "python -m paint_core reproduce"
    df = read_sweep(run_dir)
    assert sorted(df["alpha"].unique()) == ALPHAS
    assert set(df["task"]) == {task, *SUPPORTED_TASKS} and set(df["split"]) == {"val", "test"}
    summary = json.loads((CACHED / "summary.json").read_text())
    assert summary["models"][name]["runs"][task] == json.loads(json.dumps(run_summary(run_dir, task)))


@pytest.mark.slow
def test_a_cached_sweep_point_recomputes_exactly():
    run_dir = CACHED / "micro-rn-l" / "digits"
    run = load_run(run_dir)
    run.model.load_state_dict(interpolate(run.theta_zs, run.theta_ft, 0.3))  # independent of the Interpolator
    for name in ("digits", "shapes"):
        task = get_task(name)
        head = zero_shot_head(run.model, run.tokenizer, task.classnames, task.templates)
        acc = evaluate(run.model, head, task.split("val", run.preprocess))
        cached = read_sweep(run_dir).query("alpha == 0.3 and split == 'val' and task == @name")["accuracy"].item()
        assert acc == pytest.approx(cached, abs=1e-9)


def _diagnostics(name):
    return json.loads((CACHED / name / "diagnostics.json").read_text())["results"]


@pytest.mark.parametrize("name", list(list_models()))
def test_zero_shot_is_good_on_supported_and_half_knows_patch_tasks(name):
    d = _diagnostics(name)
    assert all(d["zero_shot_test"][t] >= 0.85 for t in SUPPORTED_TASKS)
    for task in PATCH_TASKS:
        chance = 1 / len(get_task(task).classnames)
        assert chance + 0.1 < d["zero_shot_test"][task] < d["linear_probe_test"][task]


def test_large_model_frontier_bends_as_in_the_paper():
    """Issue 4's targets on the larger model, recomputed from the cached sweeps (test split, choices on val)."""
    from paint_core.core.frontier import chord_gap, frontier, gain_within_drift
    gains = {}
    for task in PATCH_TASKS:
        df = read_sweep(CACHED / "micro-rn-l" / task)
        gains[task] = gain_within_drift(df, task, SUPPORTED_TASKS, 0.01)["patch_gain"]
        assert chord_gap(frontier(df, task, SUPPORTED_TASKS, "test")).iloc[1:-1].mean() > 0, task
    assert sum(g >= 0.20 for g in gains.values()) >= 2, gains


def test_reading_test_groups_partition_the_images_and_reweight_to_the_totals():
    """reading_test's per-ink and per-position rates are rates of disjoint groups covering every image: their
    counts sum to n and their count-weighted means give back the overall rates (the shipped reader, n=60)."""
    from paint_core.studies.diagnostics import reading_test
    model, preprocess, tokenizer = load_model("micro-rn-s-64", str(ROOT / "paint_core/weights/micro-rn-s-64-reads.safetensors"))
    r = reading_test(model, preprocess, tokenizer, n=60)
    assert set(r["by_ink"]) == {"white", "black", "yellow"} and set(r["by_position"]) == {"over", "top", "bottom"}
    for groups in (r["by_ink"], r["by_position"]):
        assert sum(g["n"] for g in groups.values()) == r["n"] == 60
        for rate in ("attacked_accuracy", "word_rate", "control_accuracy"):
            assert sum(g[rate] * g["n"] for g in groups.values()) / 60 == pytest.approx(r[rate], abs=1e-6)


@pytest.mark.parametrize("name", list(list_models()))
def test_typographic_reading_recomputed_equals_the_cached_diagnostics(name):
    """The shipped diagnostics' reading figures come back from the code as it is now (`reproduce` calls it)."""
    from paint_core.studies.diagnostics import typographic_reading
    model, preprocess, tokenizer = load_model(name)
    cached = _diagnostics(name)["typographic_reading"]
    got = typographic_reading(model, preprocess, tokenizer, n=cached["n"])
    assert got == pytest.approx(cached, abs=1e-6)
