"""AppTest drives each page; displayed numbers are checked against independent engine computations."""
from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest

from paint_core import evaluate, interpolate, load_run
from paint_core.engine.evaluation import materialize, predict, zero_shot_head
from paint_core.live.sessions import LIVE_EVAL_N, compare_predictions
from paint_core.data.embedded import SHAPE_TEMPLATES
from paint_core.data.tasks import get_task
from paint_core.data.world import SHAPES

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "dashboard" / "app.py")
CACHED = ROOT / "cached_results"
RUN = "micro-rn-l/digits"
pytestmark = pytest.mark.slow


def _app(page: str | None = "patch") -> AppTest:
    """The app, on ``page`` (the Patch page unless asked; None: the first page, "Start here")."""
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    assert not at.exception, at.exception
    if page is not None:
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, at.exception
    return at


def _independent_accuracy(run_dir: Path, task_name: str, alpha: float, n: int = LIVE_EVAL_N) -> float:
    run = load_run(run_dir)
    run.model.load_state_dict(interpolate(run.theta_zs, run.theta_ft, alpha))
    task = get_task(task_name)
    head = zero_shot_head(run.model, run.tokenizer, task.classnames, task.templates)
    return evaluate(run.model, head, materialize(task.split("test", run.preprocess), n))


def _explorer(at: AppTest) -> dict:
    """The data the Patch page's alpha explorer draws from (its browser side only displays it)."""
    [component] = [c for c in at.get("bidi_component") if c.proto.component_name == "paint_explorer.alpha_explorer"]
    return json.loads(component.proto.json)


def _shown(data: dict, task: str, alpha: float) -> str:
    entry = data["positions"][f"{alpha:.2f}"]
    return next(m["value"] for m in entry["metrics"] if m["task"] == task)


def test_patch_slider_shows_engine_accuracy():
    at = _app()
    at.selectbox(key="patch_run").set_value(RUN).run()
    at.session_state["alpha"] = 0.8  # what the browser's explorer reports after a move
    at.run()
    assert not at.exception
    data = _explorer(at)
    assert data["alpha"] == 0.8 and "0.80" in data["positions"]
    for task in ("digits", "shapes"):
        expected = _independent_accuracy(CACHED / RUN, task, 0.8)
        assert _shown(data, task, 0.8) == f"{100 * expected:.1f}%"
    # the live point the browser writes under the frontier: the patch metric and the mean supported metric
    entry = data["positions"]["0.80"]
    supported = [float(_shown(data, t, 0.8).rstrip("%")) for t in ("shapes", "colours")]
    assert entry["live_text"] == [_shown(data, "digits", 0.8), f"{sum(supported) / 2:.1f}%"]
    # the frontier drawing holds a marker for every position sent, the one at 0.8 among them
    assert data["svg"].count('class="pe-marker"') == len(data["positions"]) and 'data-alpha="0.80"' in data["svg"]
    # the sample grid's "now" predictions are the engine's at alpha 0.8 on the first 12 test images
    run = load_run(CACHED / RUN)
    run.model.load_state_dict(interpolate(run.theta_zs, run.theta_ft, 0.8))
    task = get_task("digits")
    head = zero_shot_head(run.model, run.tokenizer, task.classnames, task.templates)
    images = materialize(task.split("test", run.preprocess), 12).tensors[0]
    expected = [task.classnames[int(i)] for i in predict(run.model, head, images).argmax(-1)]
    shown = [c.split(" | now ")[1].split(" (")[0] for c in entry["captions"]]
    assert shown == expected and len(data["thumbs"]) == 12
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)  # the interactive frontier, for hovering
    names = [t.get("name") for t in spec["data"]]
    from paint_core.studies.patch import select_run
    assert "frontier (test)" in names and f"chosen on val (alpha {select_run(CACHED / RUN)['alpha']:g})" in names


def test_two_sessions_never_see_each_others_weights():
    a, b = _app(), _app()
    a.selectbox(key="patch_run").set_value(RUN).run()
    b.selectbox(key="patch_run").set_value(RUN).run()
    a.session_state["alpha"] = 0.0
    a.run()
    b.session_state["alpha"] = 1.0
    b.run()
    a.run()
    assert _explorer(a)["alpha"] == 0.0 and _explorer(b)["alpha"] == 1.0
    assert a.session_state["alpha"] == 0.0
    assert _shown(_explorer(b), "digits", 1.0) == f"{100 * _independent_accuracy(CACHED / RUN, 'digits', 1.0):.1f}%"
    assert _shown(_explorer(a), "digits", 0.0) != _shown(_explorer(b), "digits", 1.0)


def _png_bytes(seed: int = 0) -> bytes:
    from paint_core.data.world import render_object
    buf = io.BytesIO()
    render_object(np.random.default_rng(seed), "triangle", "red").resize((120, 120)).save(buf, "PNG")
    return buf.getvalue()


def test_typographic_upload_table_matches_engine():
    at = _app()
    at.switch_page("app_pages/typographic.py").run()
    at.selectbox(key="typo_run").set_value("micro-rn-l/typographic").run()
    at.radio(key="typo_source").set_value("Upload").run()
    at.file_uploader(key="typo_upload").set_value(("tri.png", _png_bytes(), "image/png")).run()
    at.slider(key="typo_alpha").set_value(0.6).run()
    assert not at.exception and not at.error
    shown = [d.value for d in at.dataframe if "zero-shot class" in d.value.columns][1]  # without, then with the word
    run = load_run(CACHED / "micro-rn-l/typographic")
    patched = load_run(CACHED / "micro-rn-l/typographic").model
    patched.load_state_dict(interpolate(run.theta_zs, run.theta_ft, 0.6))
    from paint_core.data.images import read_image
    from paint_core.data.world import write_word
    word = at.text_input(key="typo_word").value  # the page opens on its fooling example's word
    img = write_word(read_image(_png_bytes()), word, "center", 0.22)
    expected = compare_predictions({"zero-shot": run.model, "patched (alpha 0.6)": patched}, run.preprocess,
                                   run.tokenizer, img, list(SHAPES), SHAPE_TEMPLATES, head_model=run.model)
    assert list(shown.columns) == list(expected.columns)
    for col in expected.columns:
        if col.endswith("class"):
            assert list(shown[col]) == list(expected[col])
        else:
            np.testing.assert_allclose(shown[col].to_numpy(dtype=float), expected[col].to_numpy(dtype=float), atol=2e-4)


@pytest.mark.parametrize("payload, message", [(b"not an image", "not an image"), (_png_bytes()[:300], "corrupt")])
def test_bad_upload_shows_error_and_page_survives(payload, message):
    at = _app()
    at.switch_page("app_pages/typographic.py").run()
    at.radio(key="typo_source").set_value("Upload").run()
    at.file_uploader(key="typo_upload").set_value(("bad.png", payload, "image/png")).run()
    assert not at.exception
    assert any(message in e.value for e in at.error)
    assert at.slider(key="typo_alpha").value is not None  # the rest of the page is still there


def test_empty_class_list_is_a_clear_error():
    at = _app()
    at.switch_page("app_pages/typographic.py").run()
    at.text_area(key="typo_classes").set_value("  \n").run()
    assert not at.exception and any("class list is empty" in e.value for e in at.error)


def test_counting_per_count_view_matches_engine():
    at = _app()
    at.switch_page("app_pages/counting.py").run()
    at.selectbox(key="count_run").set_value("micro-rn-l/counting").run()
    at.slider(key="count_alpha").set_value(0.5).run()
    assert not at.exception
    shown = at.dataframe[-1].value  # the per-count table comes last
    run = load_run(CACHED / "micro-rn-l/counting")
    run.model.load_state_dict(interpolate(run.theta_zs, run.theta_ft, 0.5))
    task = get_task("counting")
    ds = materialize(task.split("test", run.preprocess), LIVE_EVAL_N)
    head = zero_shot_head(run.model, run.tokenizer, task.classnames, task.templates)
    with torch.no_grad():
        pred = (run.model.encode_image(ds.tensors[0]) @ head.T).argmax(-1)
    for i, name in enumerate(task.classnames):
        mask = ds.tensors[1] == i
        expected = round(100 * float((pred[mask] == i).float().mean()), 1)
        assert shown.loc[name, "patched (alpha 0.5)"] == pytest.approx(expected, abs=0.051)


def test_run_missing_files_is_a_message_not_a_crash(tmp_path, monkeypatch):
    broken = tmp_path / "runs" / "broken"
    broken.mkdir(parents=True)
    (broken / "run.json").write_text(json.dumps({"schema": 1}))
    monkeypatch.chdir(tmp_path)
    at = _app()
    at.selectbox(key="patch_run").set_value("runs/broken").run()
    assert not at.exception
    assert any("missing" in e.value and "finetuned.safetensors" in e.value for e in at.error)


def test_models_page_finetunes_sweeps_and_exports(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    at = _app()
    at.switch_page("app_pages/models_runs.py").run()
    at.text_input(key="mr_model").set_value("micro-rn-s")
    at.text_input(key="mr_task").set_value("digits")
    at.text_input(key="mr_out").set_value("runs/ui-run")
    at.number_input(key="mr_steps").set_value(3)
    at.text_input(key="mr_alphas").set_value("0,1")
    at.number_input(key="mr_max_eval").set_value(20)
    at.button(key="mr_start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    from paint_core.app.jobs import list_jobs, wait_job
    jobs = tmp_path / "runs" / ".jobs"
    [job] = list_jobs(jobs)
    assert job.out == str(tmp_path / "runs" / "ui-run") and job.owner
    assert wait_job(jobs, job.id, timeout=300).state == "done"
    assert (tmp_path / "runs/ui-run/sweep.csv").is_file()
    at.run()  # the job list now offers the run it made
    assert any("Open on the Patch page" in b.label for b in at.button)
    from dashboard.text import duration
    [done] = list_jobs(jobs)
    started = time.strftime("%H:%M:%S", time.localtime(done.started))
    assert any(m.value.endswith(f" · done · started {started} · took {duration(done.ended - done.started)}")
               for m in at.markdown)  # how long it took
    at.text_input(key="ex_run").set_value("runs/ui-run")
    at.text_input(key="ex_alpha").set_value("1.0")
    at.text_input(key="ex_out").set_value("runs/patched.safetensors")
    at.button(key="ex_go").click().run()
    assert any("Wrote " in s.value and "patched.safetensors" in s.value for s in at.success)
    from paint_core import load_checkpoint
    state, meta = load_checkpoint(tmp_path / "runs/patched.safetensors")
    run = load_run(tmp_path / "runs/ui-run")
    assert meta["alpha"] == 1.0 and all(torch.equal(state[k], run.theta_ft[k]) for k in state)
    download = at.get("download_button")
    assert len(download) == 1 and "Download the weights" in str(download[0].proto)
    # an empty alpha exports at the alpha the run chose on val, and says which
    from paint_core.studies.patch import select_run
    chosen = select_run(tmp_path / "runs/ui-run")["alpha"]
    at.text_input(key="ex_alpha").set_value("")
    at.text_input(key="ex_out").set_value("runs/chosen.safetensors")
    at.button(key="ex_go").click().run()
    assert any(f"at alpha {chosen:g}" in s.value for s in at.success)
    assert load_checkpoint(tmp_path / "runs/chosen.safetensors")[1]["alpha"] == chosen


def test_patch_page_follows_one_sample_along_alpha():
    """The sample's probability of its true class at the 21 slider positions equals a model built at each alpha."""
    import base64
    at = _app()
    at.selectbox(key="sample_pick").set_value(2).run()
    assert not at.exception
    spec = next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
                if "(true)" in json.dumps(json.loads(c.proto.spec)["data"][0].get("name", "")))
    y = spec["data"][0]["y"]
    y = np.frombuffer(base64.b64decode(y["bdata"]), dtype=y["dtype"]) if isinstance(y, dict) else np.array(y)
    run = load_run(CACHED / RUN)
    task = get_task("digits")
    image, label = task.split("test", run.preprocess)[2]
    head = zero_shot_head(run.model, run.tokenizer, task.classnames, task.templates)
    from paint_core.engine.evaluation import predict
    expected = []
    for alpha in [round(0.05 * i, 2) for i in range(21)]:
        run.model.load_state_dict(interpolate(run.theta_zs, run.theta_ft, alpha))
        expected.append(float(predict(run.model, head, image.unsqueeze(0))[0, label]))
    np.testing.assert_allclose(np.asarray(y, dtype=float), expected, atol=1e-5)


def test_switching_runs_starts_the_slider_at_the_new_runs_chosen_alpha():
    from paint_core.studies.patch import select_run
    at = _app()
    at.session_state["alpha"] = 0.95
    at.run()
    at.selectbox(key="patch_run").set_value("micro-rn-l/counting").run()
    assert not at.exception
    data = _explorer(at)
    assert data["alpha"] == pytest.approx(select_run(CACHED / "micro-rn-l/counting")["alpha"])
    assert data["run"].endswith("micro-rn-l/counting")  # a new run name: the browser's slider jumps there


def test_start_page_tells_the_story_with_the_sweeps_numbers():
    from paint_core.studies.patch import select_run
    at = _app(page=None)
    assert [h.value for h in at.header] == ["1. The problem", "2. Fine-tuning fixes it, at a cost to the rest",
                                            "3. Interpolate the weights", "4. The frontier bends",
                                            "5. Choose alpha on held-out data"]
    df = pd.read_csv(CACHED / RUN / "sweep.csv")
    test = df[df["split"] == "test"]
    digits = test[test["task"] == "digits"].set_index("alpha")["accuracy"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["digits, zero-shot"] == f"{100 * digits.loc[digits.index.min()]:.1f}%"
    assert metrics["digits, fine-tuned"] == f"{100 * digits.loc[digits.index.max()]:.1f}%"
    chosen = select_run(CACHED / RUN)["alpha"]
    assert metrics["chosen alpha"] == f"{chosen:g}"
    assert metrics["digits, patched"] == f"{100 * digits.loc[chosen]:.1f}%"
    supported = test[test["task"] != "digits"].groupby("alpha")["accuracy"].mean()
    assert metrics["shapes and colours, patched"] == f"{100 * supported.loc[chosen]:.1f}%"


def test_patch_page_shows_the_whole_split_figure_beside_the_live_one_on_the_sweeps_grid():
    """Issue 26, item 6: at alpha 0.8 Start here said +40.2 points (whole test split) and Patch +48.0 (first 100
    images), and the slider stepped by 0.05 over a 0.1 sweep. Now each task carries both figures, labelled, and
    the slider steps with the sweep, so every position has its own point on the curve."""
    from paint_core.studies.patch import patch_story
    at = _app()
    at.selectbox(key="patch_run").set_value(RUN).run()
    at.session_state["alpha"] = 0.8
    at.run()
    data = _explorer(at)
    assert data["step"] == pytest.approx(0.1) and data["n_positions"] == 11
    assert set(data["positions"]) <= {f"{a / 10:.2f}" for a in range(11)} and "0.80" in data["positions"]
    assert data["svg"].count('class="pe-marker"') == len(data["positions"])
    df = pd.read_csv(CACHED / RUN / "sweep.csv")
    test = df[df["split"] == "test"]
    for task in ("digits", "shapes", "colours"):
        acc = test[test["task"] == task].set_index("alpha")
        whole = data["whole"]["0.80"]["tasks"][task]
        assert whole == {"value": f"{100 * acc.loc[0.8, 'accuracy']:.1f}%", "n": int(acc.loc[0.8, "n"]),
                         "delta": f"{100 * (acc.loc[0.8, 'accuracy'] - acc.loc[0.0, 'accuracy']):+.1f} vs zero-shot"}
    story = patch_story(CACHED / RUN)
    assert story["chosen_alpha"] == 0.8  # the Start page's alpha: its "+40.2 points" is the whole-split delta here
    assert data["whole"]["0.80"]["tasks"]["digits"]["delta"] == \
        f"{100 * (story['chosen']['patch'] - story['zero_shot']['patch']):+.1f} vs zero-shot"
    metric = next(m for m in data["positions"]["0.80"]["metrics"] if m["task"] == "digits")
    assert metric["label"] == "digits (patch)" and metric["sample"] == f"live: first {LIVE_EVAL_N} test images"
    at.session_state["alpha"] = 0.35  # a value off the grid (e.g. from an older page) lands on it
    at.run()
    assert _explorer(at)["alpha"] in (0.3, 0.4)


def test_a_one_step_run_says_why_its_patch_page_shows_little(tmp_path, monkeypatch):
    from paint_core.configs import FinetuneConfig
    from paint_core.studies.patch import run_finetune, run_sweep
    out = tmp_path / "runs" / "one-step"
    run_finetune(out, "micro-rn-s", None, "digits", FinetuneConfig(steps=1, batch_size=8, warmup=1))
    run_sweep(out, ["shapes", "colours"], [0.0, 0.5, 1.0], max_eval=20)
    monkeypatch.chdir(tmp_path)
    at = _app()
    at.selectbox(key="patch_run").set_value("runs/one-step").run()
    assert not at.exception
    [note] = [i.value for i in at.info if i.value.startswith("This run can show little")]
    assert note.startswith("This run can show little: it was fine-tuned for only 1 step (digits: ")
    assert "Fine-tune for more steps (the default is 300)" in note
    at.selectbox(key="patch_run").set_value(RUN).run()
    assert not [i for i in at.info if i.value.startswith("This run can show little")]
