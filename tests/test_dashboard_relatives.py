"""AppTest on the relatives' pages: displayed numbers against the studies' JSON and independent computations."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from conftest import coefficient_explorer, live_coefficients

from paint_core import evaluate, load_run
from paint_core.io.checkpoints import load_checkpoint
from paint_core.core.state_dicts import cast_like
from paint_core.models.encoders import create_encoder, load_head
from paint_core.engine.probes import head_accuracy
from paint_core.engine.evaluation import materialize, zero_shot_head
from paint_core.live.sessions import LIVE_EVAL_N
from paint_core.models.run import run_task_vector
from paint_core.data.tasks import get_task

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "dashboard" / "app.py")
CACHED = ROOT / "cached_results"
REL = CACHED / "micro-rn-l" / "relatives"
pytestmark = pytest.mark.slow


def _page(name: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.switch_page(f"app_pages/{name}.py").run()
    assert not at.exception, at.exception
    return at


def _metric(at: AppTest, task: str) -> str:
    return next(m.value for m in at.metric if m.label == task or m.label.startswith(f"{task} ("))


def _set_coefficients(at: AppTest, **values: float) -> None:
    """What the browser's explorer reports after a move: the page's coefficients, as its callback stores them."""
    for task, value in values.items():
        at.session_state[f"ta_coef_{task}"] = value
    at.run()


def _flat(path: Path) -> dict:
    """A study's inputs and results side by side (results.py keeps them apart in the file)."""
    doc = json.loads(Path(path).read_text())
    return {**doc["inputs"], **doc["results"]}


def _spec(at: AppTest, i: int = 0) -> dict:
    return json.loads(at.get("plotly_chart")[i].proto.spec)


def test_multitask_page_shows_the_study():
    result = _flat(REL / "multitask.json")
    at = _page("multitask")
    table = at.dataframe[0].value
    assert list(table["model"]) == [r["model"] for r in result["comparison"]]
    digits = [round(100 * r["digits"], 1) for r in result["comparison"]]
    assert table["digits %"].tolist() == digits
    assert len(_spec(at, 0)["data"]) == len(result["comparison"])
    heat = _spec(at, 1)["data"][0]  # the transfer tab renders too (tabs are all rendered)
    transfer = pd.DataFrame(_flat(REL / "transfer.json")["rows"])
    row = transfer[(transfer["mode"] == "finetuned")].iloc[0]
    i, j = heat["y"].index(row.patch_task), heat["x"].index(row.eval_task)
    assert heat["z"][i][j] == pytest.approx(100 * row.change)


def test_wiseft_page_table_equals_the_study():
    result = _flat(REL / "wiseft.json")
    at = _page("wiseft")
    shift = result["shift_tasks"][1]
    at.selectbox(key="wf_shift").set_value(shift).run()
    table = at.dataframe[0].value.set_index("ensemble")
    for name in ("weight", "output"):
        assert table.loc[f"{name}-space", "shift: best %"] == pytest.approx(
            round(100 * result["summary_test"][shift][name]["best_shift"], 1))
    names = [t["name"] for t in _spec(at)["data"]]
    assert names[0].startswith("endpoints") and "weight-space ensemble" in names and "output-space ensemble" in names


def test_task_arithmetic_sliders_match_an_independent_edit():
    at = _page("arithmetic")
    at.selectbox(key="ta_model").set_value("micro-rn-l").run()
    at.multiselect(key="ta_tasks").set_value(["digits", "counting"]).run()
    at.selectbox(key="ta_method").set_value("sum").run()
    _set_coefficients(at, digits=0.5, counting=-0.3)
    assert not at.exception, at.exception
    assert coefficient_explorer(at)["values"] == [0.5, -0.3]
    shown = {m["task"]: m["value"] for m in live_coefficients(at)}
    runs = [load_run(CACHED / "micro-rn-l" / t) for t in ("digits", "counting")]
    tau = run_task_vector(runs[0]) * 0.5 + run_task_vector(runs[1]) * -0.3
    model = runs[0].model
    model.load_state_dict(tau.apply_to(runs[0].theta_zs))
    for name in ("digits", "counting", "shapes"):
        task = get_task(name)
        head = zero_shot_head(model, runs[0].tokenizer, task.classnames, task.templates)
        acc = evaluate(model, head, materialize(task.split("test", runs[0].preprocess), LIVE_EVAL_N))
        assert shown[name] == f"{100 * acc:.1f}%"


def test_closed_vocab_slider_matches_an_independent_addition():
    study_dir = CACHED / "closed_vocab" / "micro-vit"
    study = _flat(study_dir / "study.json")
    at = _page("closed_vocab")
    at.slider(key="cv_lambda").set_value(0.4).run()
    encoder, preprocess = create_encoder("micro-vit")
    pre = {k: v.clone() for k, v in encoder.state_dict().items()}
    taus = []
    for t in study["tasks"]:
        ft = cast_like(load_checkpoint(study_dir / t / "encoder.safetensors")[0], pre)
        taus.append({k: ft[k] - v for k, v in pre.items()})
    encoder.load_state_dict({k: v + sum(0.4 * t[k] for t in taus) for k, v in pre.items()})  # written out here
    for t in study["tasks"]:
        x, y = materialize(get_task(t).split("test", preprocess), LIVE_EVAL_N).tensors
        acc = head_accuracy(encoder, load_head(study_dir / t / "head.safetensors"), x, y)
        assert _metric(at, t) == f"{100 * acc:.1f}%"
    assert at.dataframe[0].value["linear probe %"].tolist() == [round(100 * study["probe_test"][t], 1) for t in study["tasks"]]
    assert len(_spec(at)["data"][0]["z"]) == len(study["disentanglement"]["grid"])


def test_prompts_page_means_equal_the_rows():
    data = _flat(CACHED / "prompts" / "update.json")  # the first study, selected by default
    rows = pd.DataFrame(data["rows"])
    at = _page("prompts")
    at.selectbox(key="pr_task").set_value("digits").run()
    at.selectbox(key="pr_shots").set_value(4).run()
    sub = rows[(rows.task == "digits") & (rows.shots == 4)]
    expected = (100 * sub.groupby("method")["accuracy"].mean()).round(1)
    shown = at.dataframe[0].value["mean"]
    for method, value in expected.items():
        assert shown.loc[method] == pytest.approx(value)
    bars = _spec(at)["data"][0]
    assert bars["x"] == list(dict.fromkeys(sub["method"]))


def test_a_study_written_under_runs_is_listed(tmp_path, monkeypatch):
    """A user's own study (CLI --out runs/<model>/relatives/...) shows on the page next to the shipped ones."""
    import shutil
    mine = tmp_path / "runs" / "my-model" / "relatives"
    mine.mkdir(parents=True)
    data = json.loads((REL / "wiseft.json").read_text())
    data["inputs"]["shift_tasks"] = data["inputs"]["shift_tasks"][:1]
    (mine / "wiseft.json").write_text(json.dumps(data))
    shutil.copytree(CACHED / "prompts", tmp_path / "runs" / "my-model" / "prompts")
    monkeypatch.chdir(tmp_path)
    at = _page("wiseft")
    assert "runs/my-model" in at.selectbox(key="wf_model").options
    at.selectbox(key="wf_model").set_value("runs/my-model").run()
    assert at.selectbox(key="wf_shift").options == data["inputs"]["shift_tasks"]
    at.switch_page("app_pages/prompts.py").run()
    assert len(at.selectbox(key="pr_study").options) == 4  # the two shipped studies and the two copies


def _readable(table: pd.DataFrame) -> None:
    """No None or NaN cell, no snake_case header: what a class reads, not the study's raw keys."""
    assert not table.isna().any().any(), table
    assert not (table.astype(str) == "None").any().any(), table
    assert not [c for c in table.columns if "_" in c], list(table.columns)


def test_multitask_and_transfer_tables_are_readable_and_hold_the_study():
    """Issue 26, item 7: None cells, a cut-off "[0.8, 0.2", snake_case headers, fractions beside points."""
    result = _flat(REL / "multitask.json")
    at = _page("multitask")
    table = at.dataframe[0].value
    _readable(table)
    rows = {r["model"]: r for r in result["comparison"]}
    for _, shown in table.iterrows():
        r = rows[shown["model"]]
        assert shown["alpha"] == str(r["alpha"]).strip("[]")  # e.g. "0.8, 0.2, 0.3", not a cut-off "[0.8, 0.2"
        assert shown["digits %"] == round(100 * r["digits"], 1)
        assert shown["vs specialists (pts)"] == ("reference" if r.get("vs_specialists") is None
                                                    else f"{100 * r['vs_specialists']:+.1f}")
    assert table.set_index("model").loc["joint", "vs specialists (pts)"] == "-3.4"  # the README's figure
    transfer = at.dataframe[1].value
    _readable(transfer)
    rows = pd.DataFrame(_flat(REL / "transfer.json")["rows"])
    rows = rows[(rows["mode"] == "finetuned") & rows["disjoint_classes"]].sort_values("change", ascending=False)
    assert list(transfer.columns) == ["patched on", "evaluated on", "alpha", "zero-shot %", "patched %",
                                      "change (points)"]
    assert transfer["patched %"].tolist() == [round(100 * v, 1) for v in rows["patched"]]
    assert transfer["change (points)"].tolist() == [round(100 * v, 1) for v in rows["change"]]


def test_arithmetic_labels_fit_and_the_negation_table_has_no_empty_cells():
    result = _flat(REL / "arithmetic.json")
    at = _page("arithmetic")
    at.selectbox(key="ta_model").set_value("micro-rn-l").run()
    live = live_coefficients(at)
    assert [m["label"] for m in live] == ["digits", "counting", "typographic", "shapes", "colours"]
    assert all(m["delta"].endswith(" pts") for m in live)
    assert [m["sample"].split(",")[0] for m in live] == ["task vector"] * 3 + ["control"] * 2
    assert any(c.value.startswith("Task vectors: digits, counting, typographic; controls: shapes, colours. First "
                                  f"{LIVE_EVAL_N} test images") for c in at.caption)
    negation = next(d.value for d in at.dataframe if "forget" in d.value.columns)
    _readable(negation)
    for _, shown in negation.iterrows():
        r = result["negation"][shown["forget"]]
        assert shown["forgotten task: negated %"] == round(100 * r["test"][shown["forget"]], 1)
        assert shown["controls: negated %"] == round(100 * sum(r["test"][c] for c in r["control"])
                                                     / len(r["control"]), 1)
    assert negation.set_index("forget").loc["digits", "forgotten task: negated %"] == 9.4  # the README's figure


def test_wiseft_page_states_its_conclusion_in_words():
    from dashboard.text import wiseft_conclusion
    from paint_core.studies.wiseft import WiseftResults
    result = _flat(REL / "wiseft.json")
    study = WiseftResults.from_doc(json.loads((REL / "wiseft.json").read_text()))
    at = _page("wiseft")
    for shift in result["shift_tasks"]:
        at.selectbox(key="wf_shift").set_value(shift).run()
        said = next(m.value for m in at.markdown if m.value.startswith("**What it shows:**"))
        assert said == "**What it shows:** " + wiseft_conclusion(study.summary_test[shift], shift, study.id_task)
        # micro-rn-l: neither ensemble beats the fine-tuned model on any digit shift (README, WiSE-FT)
        assert "Neither ensemble beats both endpoints on the shift" in said
        _readable(at.dataframe[0].value)


def test_the_arithmetic_page_shares_one_model_and_its_answers_between_sessions(monkeypatch):
    """Every session of the Task arithmetic page uses one EditSession (one working copy of the weights, not one
    per visitor), and a coefficient setting one visitor computed is a lookup for the next."""
    import threading
    import dashboard.study_results as study_results
    import paint_core.live.sessions as sessions
    calls = []
    real = sessions.predict
    # asked by a page (not one slider step ahead, which the session computes in the background)
    monkeypatch.setattr(sessions, "predict", lambda *a, **k: (threading.current_thread().name != "paint-prefetch"
                                                              and calls.append(1)) or real(*a, **k))
    study_results._shared_edit.clear()

    def visit():
        at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=300)
        at.run()
        at.switch_page("app_pages/arithmetic.py").run()
        at.selectbox(key="ta_model").set_value("micro-rn-s").run()
        at.multiselect(key="ta_tasks").set_value(["digits", "counting"]).run()
        before = len(calls)
        _set_coefficients(at, digits=0.7)
        assert not at.exception and not at.error
        return at, len(calls) - before

    first, computed = visit()
    assert computed > 0  # a new setting: evaluated
    second, again = visit()
    assert again == 0  # the same setting in another session: the first one's answer
    assert live_coefficients(second) == live_coefficients(first)
    assert coefficient_explorer(second)["values"] == [0.7, 0.3]


def test_the_closed_vocab_page_shares_one_encoder_and_its_answers_between_sessions(monkeypatch):
    """Every session of the Closed vocabulary page uses one AdditionSession (one encoder, not a deep copy per
    visitor), and a lambda one visitor computed is a lookup for the next."""
    import dashboard.study_results as study_results
    import paint_core.live.sessions as sessions
    calls = []
    real = sessions.head_accuracy
    monkeypatch.setattr(sessions, "head_accuracy", lambda *a, **k: calls.append(1) or real(*a, **k))
    study_results._shared_addition.clear()
    sessions_seen = []
    real_shared = study_results.session_addition
    monkeypatch.setattr(study_results, "session_addition", lambda tasks: sessions_seen.append(real_shared(tasks))
                        or sessions_seen[-1])

    def visit():
        at = _page("closed_vocab")
        before = len(calls)
        at.slider(key="cv_lambda").set_value(0.7).run()
        assert not at.exception and not at.error
        return at, len(calls) - before

    first, computed = visit()
    assert computed == len(_flat(CACHED / "closed_vocab" / "micro-vit" / "study.json")["tasks"])  # one per task
    second, again = visit()
    assert again == 0
    assert [m.value for m in second.metric] == [m.value for m in first.metric]
    assert len({id(s) for s in sessions_seen}) == 1 and len({id(s.encoder) for s in sessions_seen}) == 1
