"""Issue 14, dashboard: typed paths stay inside the configured roots, nothing outside is read, written or
revealed, existing runs are replaced only when asked, one job at a time, read-only mode, fresh caches."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from paint_core.engine.finetune import FinetuneConfig
from paint_core.io.run_dir import read_run_meta
from paint_core.studies.patch import run_finetune, run_sweep
from paint_core.io.paths import WEIGHTS_DIR
from paint_core.app.jobs import list_jobs, read_log, wait_job
from conftest import snapshot

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "dashboard" / "app.py")
TINY = FinetuneConfig(steps=2, batch_size=8, warmup=1)
pytestmark = pytest.mark.slow


def models_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.switch_page("app_pages/models_runs.py").run()
    assert not at.exception, at.exception
    return at


def submit_finetune(at: AppTest, steps: int = 2, **fields) -> AppTest:
    values = {"mr_model": "micro-rn-s", "mr_task": "digits", "mr_out": "runs/new", "mr_alphas": "0,1",
              "mr_pretrained": "", "mr_supported": "shapes,colours", **fields}
    for key, value in values.items():
        at.text_input(key=key).set_value(value)
    at.number_input(key="mr_steps").set_value(steps)
    at.number_input(key="mr_max_eval").set_value(20)
    at.button(key="mr_start").click().run()
    assert not at.exception, at.exception
    if at.success:  # a job started: let it finish, as a user would watch it do
        root = Path.cwd() / "runs" / ".jobs"
        assert wait_job(root, list_jobs(root)[0].id, timeout=300).state == "done", read_log(root, list_jobs(root)[0].id)
    return at


@pytest.fixture()
def server(tmp_path, monkeypatch) -> Path:
    """A server started in ``tmp_path`` (write root tmp_path/runs) with a lab notebook beside it."""
    monkeypatch.chdir(tmp_path)
    for var in ("PAINT_WRITE_ROOT", "PAINT_DATA_ROOTS", "PAINT_READ_ONLY", "PAINT_MODELS", "PAINT_MAX_STEPS"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "experiments.md").write_text("the lab notebook")
    (tmp_path / "runs").mkdir()
    return tmp_path


@pytest.mark.parametrize("out, message", [
    ("docs", "outside the folders"), ("/etc", "outside the folders"), ("runs/../docs", "outside the folders"),
    ("/", "outside the folders"), ("", "give a path"), ("runs", "give a folder inside"),
])
def test_finetune_output_outside_the_write_root_is_refused(server, out, message):
    before = snapshot(server)
    at = submit_finetune(models_page(), mr_out=out)
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert snapshot(server) == before


def test_existing_folders_and_runs_are_kept(server):
    (server / "runs" / "notes").mkdir()
    (server / "runs" / "notes" / "a.txt").write_text("mine")
    run_finetune(server / "runs" / "mine", "micro-rn-s", None, "digits", TINY)
    before = snapshot(server)
    at = submit_finetune(models_page(), mr_out="runs/notes")
    assert any("not a run directory made by this tool" in e.value for e in at.error)
    at = submit_finetune(models_page(), mr_out="runs/mine", mr_task="counting")
    assert any("already holds a run" in e.value for e in at.error)
    assert snapshot(server) == before
    at = models_page()
    at.checkbox(key="mr_replace").check()
    at = submit_finetune(at, mr_out="runs/mine", mr_task="counting")
    assert not at.error, [e.value for e in at.error]
    assert read_run_meta(server / "runs" / "mine")["task"] == "counting"
    assert sorted(p.name for p in (server / "runs").iterdir()) == [".jobs", "mine", "notes"]  # nothing left beside


def test_server_files_are_neither_read_nor_revealed(server):
    before = snapshot(server)
    messages = {}
    for pretrained in ("/etc/passwd", "/etc/no-such-file-here"):
        at = submit_finetune(models_page(), mr_pretrained=pretrained)
        messages[pretrained] = [e.value.replace(pretrained, "PATH") for e in at.error]
        assert any("outside the folders" in m for m in messages[pretrained])
        assert not any("root:" in m for m in messages[pretrained])
    assert messages["/etc/passwd"] == messages["/etc/no-such-file-here"]  # existence is not revealed
    for task in ("imagefolder:/", "imagefolder:/etc", "imagefolder:../"):
        at = submit_finetune(models_page(), mr_task=task)
        assert [e.value for e in at.error] and all("outside the folders" in e.value for e in at.error)
        assert not any("passwd" in e.value or "ssl" in e.value for e in at.error)
    assert snapshot(server) == before


@pytest.mark.parametrize("fields, message", [
    ({"mr_model": "ViT-B-32"}, "not offered on this server"),
    ({"mr_model": "micro-rn-s", "mr_pretrained": "laion2b_s34b_b79k"}, "does not allow"),
    ({"mr_task": "torchvision:MNIST"}, "not offered on the dashboard"),
    ({"mr_supported": "shapes,nope"}, "unknown task 'nope'"),
])
def test_expensive_or_unknown_requests_are_refused(server, fields, message):
    before = snapshot(server)
    at = submit_finetune(models_page(), **fields)
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert snapshot(server) == before


def test_steps_are_capped_by_configuration(server, monkeypatch):
    monkeypatch.setenv("PAINT_MAX_STEPS", "5")
    at = models_page()
    assert at.number_input(key="mr_steps").max == 5
    at = submit_finetune(at, steps=5, mr_out="runs/capped")
    assert not at.error and read_run_meta(server / "runs" / "capped")["config"]["steps"] == 5


def test_one_training_job_per_server(server):
    """A job folder whose process is alive (this test's own) holds the server's one job slot."""
    import json
    import os
    import time
    other = server / "runs" / ".jobs" / "someone"
    other.mkdir(parents=True)
    (other / "job.json").write_text(json.dumps({"spec": {"out": str(server / "runs" / "theirs")},
                                                "description": "someone's fine-tune", "started": time.time()}))
    (other / "pid").write_text(str(os.getpid()))
    at = submit_finetune(models_page(), mr_out="runs/second")
    assert any("already running its limit" in e.value and "someone's fine-tune" in e.value for e in at.error)
    assert not (server / "runs" / "second").exists()
    assert [j.id for j in list_jobs(server / "runs" / ".jobs")] == ["someone"]  # no second job was started


def test_export_stays_inside_the_write_root(server):
    run_finetune(server / "runs" / "r", "micro-rn-s", None, "digits", TINY)
    (server / "runs" / "settings.json").write_text('{"theme": "dark"}')
    shipped = snapshot(WEIGHTS_DIR)
    before = snapshot(server)
    for target, message in [(str(WEIGHTS_DIR / "micro-rn-s.safetensors"), "outside the folders"),
                            ("runs/settings.safetensors", "settings.json exists"),
                            ("/tmp/anywhere/x.safetensors", "outside the folders"),
                            ("runs/x.txt", "must end in .safetensors")]:
        at = models_page()
        at.text_input(key="ex_run").set_value("runs/r")
        at.text_input(key="ex_out").set_value(target)
        at.button(key="ex_go").click().run()
        assert any(message in e.value for e in at.error), (target, [e.value for e in at.error])
    at = models_page()
    at.text_input(key="ex_run").set_value("/etc")
    at.text_input(key="ex_out").set_value("runs/p.safetensors")
    at.button(key="ex_go").click().run()
    assert any("outside the folders" in e.value for e in at.error)
    assert snapshot(server) == before and snapshot(WEIGHTS_DIR) == shipped
    assert not Path("/tmp/anywhere").exists()


def test_read_only_mode_hides_every_write_action(server, monkeypatch):
    monkeypatch.setenv("PAINT_READ_ONLY", "1")
    at = models_page()
    assert not at.button and not at.text_input
    assert any("read-only" in i.value for i in at.info)


def test_login_gate_shows_only_the_login_button(server, monkeypatch):
    monkeypatch.setenv("PAINT_REQUIRE_LOGIN", "1")
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert [b.label for b in at.button] == ["Log in"] and not at.slider and not at.metric


def _explorer_labels(at: AppTest) -> list[str]:
    """The metric labels the Patch page's alpha explorer shows at its alpha."""
    import json
    data = json.loads(at.get("bidi_component")[0].proto.json)
    return [m["label"] for m in data["positions"][f"{data['alpha']:.2f}"]["metrics"]]


def test_rewritten_run_is_not_served_stale(server):
    """runs/x rewritten from a digits run to a counting run: a new session gets the counting model."""
    x = server / "runs" / "x"
    run_finetune(x, "micro-rn-s", None, "digits", TINY)
    run_sweep(x, ["shapes"], [0.0, 1.0], max_eval=20)
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.switch_page("app_pages/patch.py").run()
    at.selectbox(key="patch_run").set_value("runs/x").run()
    assert any(label.startswith("digits (") for label in _explorer_labels(at))
    run_finetune(x, "micro-rn-s", None, "counting", TINY, overwrite=True)
    run_sweep(x, ["shapes"], [0.0, 1.0], max_eval=20)
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.switch_page("app_pages/patch.py").run()
    at.selectbox(key="patch_run").set_value("runs/x").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    labels = _explorer_labels(at)
    assert any(label.startswith("counting (") for label in labels) and not any(
        label.startswith("digits (") for label in labels)


def test_learning_rate_plus_is_a_small_step(server):
    """Streamlit's default float step (0.01) made "+" jump from 3e-4 to 1e-2."""
    lr = models_page().number_input(key="mr_lr")
    assert lr.step == pytest.approx(1e-5) and lr.value == pytest.approx(3e-4)


def test_the_decode_cache_of_dashboard_sweeps_lies_inside_the_write_root(tmp_path, monkeypatch):
    from dashboard.policy import policy
    monkeypatch.setenv("PAINT_WRITE_ROOT", str(tmp_path / "w"))
    monkeypatch.delenv("PAINT_CACHE_DIR", raising=False)
    assert policy().decode_cache == (tmp_path / "w" / ".decoded").resolve()
    monkeypatch.setenv("PAINT_CACHE_DIR", str(tmp_path / "elsewhere"))  # the operator's explicit choice wins
    assert policy().decode_cache == (tmp_path / "elsewhere").resolve()
