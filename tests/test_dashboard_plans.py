"""Issue 27, item 5: the Patch page's per-block mode. AppTest drives it; every number shown is checked against the
engine on its own (interpolate a plan by hand, evaluate the same images), and the search job against its file."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from paint_core import evaluate, interpolate, load_run
from paint_core.configs import SearchConfig
from paint_core.core.plan import Plan, early_blocks_frozen
from paint_core.data.tasks import get_task
from paint_core.engine.evaluation import materialize, zero_shot_head
from paint_core.engine.finetune import FinetuneConfig
from paint_core.live.sessions import LIVE_EVAL_N
from paint_core.studies.patch import run_finetune, select_run
from paint_core.studies.search import read_searched_plan

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "dashboard" / "app.py")
CACHED = ROOT / "cached_results"
RUN = "micro-rn-l/digits"
TASKS = ("digits", "shapes", "colours")
pytestmark = pytest.mark.slow


def _patch_page(run: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.switch_page("app_pages/patch.py").run()
    at.selectbox(key="patch_run").set_value(run).run()
    at.radio(key="coef_mode").set_value("per block").run()
    assert not at.exception, at.exception
    return at


def _engine_accuracies(run_dir: Path, plan: Plan, tasks=TASKS, n: int = LIVE_EVAL_N) -> dict[str, str]:
    """What the page must show for ``plan``: the first ``n`` test images of each task, weights lerped by hand."""
    run = load_run(run_dir)
    run.model.load_state_dict(interpolate(run.theta_zs, run.theta_ft, plan))
    out = {}
    for name in tasks:
        task = get_task(name)
        head = zero_shot_head(run.model, run.tokenizer, task.classnames, task.templates)
        out[name] = f"{100 * evaluate(run.model, head, materialize(task.split('test', run.preprocess), n)):.1f}%"
    return out


def _shown(at: AppTest) -> dict[str, str]:
    return {m.label.split(" (")[0]: m.value for m in at.metric if "live: first" in m.label}


def _sliders(at: AppTest) -> dict[str, float]:
    return {s.label: s.value for s in at.slider}


def test_per_block_sliders_show_the_engines_accuracies():
    at = _patch_page(RUN)
    blocks = ["stem", "layer1", "layer2", "layer3", "layer4", "attnpool"]
    chosen = select_run(CACHED / RUN)["alpha"]
    assert list(_sliders(at)) == blocks and set(_sliders(at).values()) == {chosen}  # starts at the run's alpha
    assert _shown(at) == _engine_accuracies(CACHED / RUN, Plan.of(chosen))  # all equal: the uniform plan
    [frozen] = [b for b in at.button if b.label.startswith("early blocks frozen")]
    frozen.click().run()
    expected = early_blocks_frozen(blocks, chosen)
    assert _sliders(at) == {b: expected.coefficient(b) for b in blocks}
    assert _shown(at) == _engine_accuracies(CACHED / RUN, expected)
    at.slider(key=f"block::{CACHED / RUN}::layer4").set_value(0.3).run()  # one block moved by hand
    moved = Plan.per_block({**dict(expected.blocks), "layer4": 0.3})
    assert _shown(at) == _engine_accuracies(CACHED / RUN, moved)
    assert any(f"`{moved.key}`" in m.value for m in at.markdown)
    assert any("This plan as plan.json" in str(d.proto) for d in at.get("download_button"))


def test_the_searched_plan_is_a_preset_and_a_point_beside_the_frontier():
    searched = read_searched_plan(CACHED / RUN / "plan-cma.json")
    at = _patch_page(RUN)
    [preset] = [b for b in at.button if b.label == "searched by cma"]
    assert f"plan-cma.json: val patch {100 * searched.val.patch:.1f}%" in preset.help
    preset.click().run()
    assert _sliders(at) == {b: round(c, 2) for b, c in searched.plan.blocks}
    rounded = Plan.per_block({b: round(c, 2) for b, c in searched.plan.blocks})
    assert _shown(at) == _engine_accuracies(CACHED / RUN, rounded)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    [point] = [t for t in spec["data"] if t.get("name") == "searched by cma (test)"]
    assert point["x"] == [pytest.approx(100 * searched.test.patch)]
    assert point["y"] == [pytest.approx(100 * searched.test.supported)]
    [measured] = [t for t in spec["data"] if t.get("name") == "per-block plans measured by a search"]
    assert measured["customdata"] == [searched.plan.key]  # on test: only the plan the search chose
    at.radio(key="split").set_value("val").run()  # on val: every plan the searches tried
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    [measured] = [t for t in spec["data"] if t.get("name") == "per-block plans measured by a search"]
    tried = json.loads((CACHED / RUN / "plan-cma.json").read_text())["evaluated"]
    assert len(measured["customdata"]) >= tried - 1 and searched.plan.key in measured["customdata"]


def test_a_search_started_from_models_and_runs_lands_as_a_preset(tmp_path, monkeypatch):
    from paint_core.app.jobs import list_jobs, wait_job
    from paint_core.studies.patch import SweepSpec
    monkeypatch.chdir(tmp_path)
    for var in ("PAINT_WRITE_ROOT", "PAINT_READ_ONLY", "PAINT_MODELS"):
        monkeypatch.delenv(var, raising=False)
    run_dir = tmp_path / "runs" / "small"
    run_finetune(run_dir, "micro-rn-s", None, "digits", FinetuneConfig(steps=30, batch_size=32, warmup=3),
                 sweep_spec=SweepSpec(("shapes",), (0.0, 0.5, 1.0), max_eval=40))
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.switch_page("app_pages/models_runs.py").run()
    at.text_input(key="se_run").set_value(str(CACHED / RUN))  # outside the write root: refused
    at.button(key="se_start").click().run()
    assert any("Search refused" in e.value and "outside" in e.value for e in at.error), [e.value for e in at.error]
    at.text_input(key="se_run").set_value("runs/small")
    at.number_input(key="se_budget").set_value(6)
    at.number_input(key="se_tolerance").set_value(2.0)
    at.button(key="se_start").click().run()
    assert not at.error, [e.value for e in at.error]
    [job] = list_jobs(tmp_path / "runs" / ".jobs")
    assert job.run == str(run_dir) and wait_job(tmp_path / "runs" / ".jobs", job.id, timeout=600).state == "done"
    found = read_searched_plan(run_dir / "plan-cma.json")
    doc = json.loads((run_dir / "plan-cma.json").read_text())
    assert doc["config"]["budget"] == 6 and doc["config"]["tolerance"] == 0.02
    assert found.val.drift <= 0.02 + 1e-12
    at.run()
    [opener] = [b for b in at.button if b.label == "Open on the Patch page"]
    assert opener.key == f"open_{job.id}"
    page = _patch_page("runs/small")
    assert any(b.label == "searched by cma" for b in page.button)
    assert SearchConfig().budget != 6  # the form's value reached the job, not the default
