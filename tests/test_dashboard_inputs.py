"""Issue 25 on the dashboard: a batch zip is unpacked once inside the write root and released, damaged zips get
one message, alpha grids are bounded, any session may cancel a running job after a reload, and an export never
lands on a run's own files."""
from __future__ import annotations

import io
import json
import signal
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from paint_core.data import world
from paint_core.engine.finetune import FinetuneConfig
from paint_core.app.jobs import list_jobs
from paint_core.studies.patch import run_finetune, run_sweep
from conftest import snapshot

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "dashboard" / "app.py")
TINY = FinetuneConfig(steps=2, batch_size=8, warmup=1)
pytestmark = pytest.mark.slow


@pytest.fixture()
def server(tmp_path, monkeypatch) -> Path:
    """A server started in ``tmp_path``: its write root is tmp_path/runs."""
    monkeypatch.chdir(tmp_path)
    for var in ("PAINT_WRITE_ROOT", "PAINT_DATA_ROOTS", "PAINT_READ_ONLY", "PAINT_MODELS", "PAINT_MAX_STEPS"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "runs").mkdir()
    return tmp_path


def page(name: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.switch_page(f"app_pages/{name}.py").run()
    assert not at.exception, at.exception
    return at


def typographic_zip() -> bytes:
    """Twelve PAINT-layout images: the world's objects with a word written on them."""
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(buf, "w") as z:
        for i, (shape, word) in enumerate([(s, w) for s in world.SHAPES[:3] for w in world.SHAPES[:4]]):
            img = world.write_word(world.render_object(rng, shape, "red", radius=(0.3, 0.34)), word, "center", 0.22)
            png = io.BytesIO()
            img.save(png, "PNG")
            z.writestr(f"set/label={shape}_text={word}.png", png.getvalue())
    return buf.getvalue()


def unpacked(server: Path) -> list[Path]:
    uploads = server / "runs" / ".uploads"
    return sorted(p for p in uploads.iterdir() if p.name != ".lock") if uploads.exists() else []


# ------------------------------------------------------------------------------------ batch zips
def test_a_batch_zip_is_unpacked_once_inside_the_write_root_and_released(server):
    at = page("typographic")
    at.radio(key="typo_batch_src").set_value("Zip").run()
    at.file_uploader(key="typo_batch_zip").set_value(("set.zip", typographic_zip(), "application/zip")).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    [folder] = unpacked(server)
    assert len([p for p in folder.iterdir() if p.suffix == ".png"]) == 12
    inode = next(folder.glob("*.png")).stat().st_ino
    for word in ("cat", "dog", "star"):  # the review: every rerun unpacked the zip again, 100 MB each time
        at.text_input(key="typo_word").set_value(word).run()
    assert unpacked(server) == [folder] and next(folder.glob("*.png")).stat().st_ino == inode
    at.number_input(key="typo_batch_n").set_value(10).run()
    at.button(key="typo_batch_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    shown = next(d.value for d in at.dataframe if "attack success (%)" in d.value.columns)
    assert list(shown["n"]) == [10, 10]
    at.radio(key="typo_batch_src").set_value("Embedded test set").run()  # the zip is no longer used
    assert not at.exception and unpacked(server) == []
    assert any("Worst examples" in m.value for m in at.markdown)  # the scored set still shows, from memory


def test_damaged_zips_get_one_message_and_leave_nothing(server):
    good = typographic_zip()
    first = good.find(b"PK\x01\x02")  # the first file's central-directory record
    at = page("typographic")
    at.radio(key="typo_batch_src").set_value("Zip").run()
    for offset, fmt, value, message in [
        (16, "<I", 0x12345678, "the zip is damaged: label=circle_text=circle.png cannot be read (Bad CRC-32"),
        (24, "<I", 10 ** 6, "the zip is damaged: label=circle_text=circle.png unpacks to"),
        (8, "<H", 1, "the zip is encrypted ('set/label=circle_text=circle.png')"),
        (10, "<H", 99, "'set/label=circle_text=circle.png' in the zip uses compression method 99"),
    ]:
        data = bytearray(good)
        struct.pack_into(fmt, data, first + offset, value)
        at.file_uploader(key="typo_batch_zip").set_value(("bad.zip", bytes(data), "application/zip")).run()
        assert not at.exception, at.exception
        errors = [e.value for e in at.error]
        assert len(errors) == 1 and errors[0].startswith(f"Cannot use this zip: {message}"), errors
        assert unpacked(server) == []
        assert "typo_batch_go" not in [b.key for b in at.button]  # nothing to score


# ------------------------------------------------------------------------------------ alpha grids
@pytest.mark.parametrize("alphas, message", [
    ("0:1:1e-5", "alphas '0:1:1e-5': 100,001 values; at most 1,001 per sweep (e.g. 0:1:0.001)"),
    ("nan:1:0.1", "alphas 'nan:1:0.1': start, stop and step must be finite numbers"),
    ("0:inf:0.1", "alphas '0:inf:0.1': start, stop and step must be finite numbers"),
])
def test_alpha_grids_are_bounded_on_the_models_page(server, alphas, message):
    at = page("models_runs")
    at.text_input(key="mr_out").set_value("runs/grid")
    at.text_input(key="mr_alphas").set_value(alphas)
    at.button(key="mr_start").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [f"Fine-tune refused: {message}"]
    assert list_jobs(server / "runs" / ".jobs") == [] and not (server / "runs" / "grid").exists()


# ------------------------------------------------------------------------------------ cancel after a reload
def test_any_session_may_cancel_a_running_job(server):
    """A job started by another session (a browser tab since closed or reloaded): the page offers Cancel, and
    the job's process gets SIGTERM with this session recorded as who cancelled it."""
    job = server / "runs" / ".jobs" / "theirs"
    job.mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    try:
        (job / "job.json").write_text(json.dumps({"spec": {"out": str(server / "runs" / "long")}, "owner": "gone-tab",
                                                  "description": "a 14 h sweep", "started": time.time()}))
        (job / "pid").write_text(str(proc.pid))
        at = page("models_runs")
        button = at.button(key="cancel_theirs")
        assert button.help == "started by another session"
        button.click().run()
        assert not at.exception
        assert proc.wait(timeout=30) == -signal.SIGTERM
        assert json.loads((job / "cancel.json").read_text())["by"] != "gone-tab"
    finally:
        proc.kill()


def test_a_read_only_server_offers_no_cancel(monkeypatch):
    from dashboard.policy import may_cancel, policy
    monkeypatch.delenv("PAINT_READ_ONLY", raising=False)
    assert may_cancel(policy())
    monkeypatch.setenv("PAINT_READ_ONLY", "1")
    assert not may_cancel(policy())


# ------------------------------------------------------------------------------------ export
def test_export_never_lands_on_the_runs_own_files(server):
    run = server / "runs" / "r"
    run_finetune(run, "micro-rn-s", None, "digits", TINY)
    run_sweep(run, ["shapes"], [0.0, 1.0], max_eval=20)
    before = snapshot(run)
    for target, alpha, message in [
        ("runs/r/finetuned.safetensors", "0.5", f"output {run / 'finetuned.safetensors'} would replace "
         f"finetuned.safetensors of the run directory {run}; write exports beside the run instead (e.g. "
         f"{run.parent / 'r-patched.safetensors'})"),
        ("runs/out.safetensors", "1.5", "alpha must be in [0, 1] (0 = zero-shot, 1 = fine-tuned), got 1.5"),
    ]:
        at = page("models_runs")
        at.text_input(key="ex_run").set_value("runs/r")
        at.text_input(key="ex_alpha").set_value(alpha)
        at.text_input(key="ex_out").set_value(target)
        at.checkbox(key="ex_replace").check()
        at.button(key="ex_go").click().run()
        assert [e.value for e in at.error] == [f"Export refused or failed: {message}"]
    assert snapshot(run) == before
    run_sweep(run, ["shapes"], [0.0, 0.5, 1.0], max_eval=20)  # the run still sweeps
