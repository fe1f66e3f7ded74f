"""Issue 14, engine and CLI: a failed or refused command changes no byte; nothing the tool did not make is
overwritten or deleted; one writer per run; what is loaded is verified; run.json is read through a schema."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from paint_core import load_checkpoint, load_run
from paint_core.io.checkpoints import CheckpointError, save_checkpoint
from paint_core.cli import main
from paint_core.engine.finetune import FinetuneConfig
from paint_core.models.clip import load_model
from paint_core.io.run_dir import read_run_meta, validate_run_meta
from paint_core.studies.patch import run_finetune, run_sweep, select_run
from paint_core.data.folders import FolderWalkError, scan_image_folder
from paint_core.data.tasks import get_task
from paint_core.io.paths import CACHED_RESULTS_DIR, WEIGHTS_DIR
from paint_core.io.writes import RunLocked, WriteRefused, lock_path, run_lock
from conftest import snapshot, write_imagefolder

TINY = FinetuneConfig(steps=2, batch_size=8, warmup=1)


@pytest.fixture(scope="module")
def template_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("template") / "run"
    run_finetune(out, "micro-rn-s", None, "digits", TINY)
    run_sweep(out, ["shapes", "colours"], [0.0, 0.5, 1.0], max_eval=20)
    return out


@pytest.fixture()
def run(template_run, tmp_path) -> Path:
    path = tmp_path / "runs" / "x"
    shutil.copytree(template_run, path)
    return path


# ----------------------------------------------------------------------------- validate, then write
@pytest.mark.parametrize("argv, message", [
    (["--supported", "shapes,colours", "--alphas", "0,1.5", "--max-eval", "20"], "alpha must be in [0, 1]"),
    (["--supported", "shapes,nope", "--alphas", "0,1"], "nope"),
    (["--supported", "shapes,colours", "--alphas", ""], "at least one alpha"),
    (["--supported", "", "--alphas", "0,1"], "at least one supported task"),
    (["--supported", "shapes,colours", "--max-eval", "0"], "max_eval must be a positive"),
    (["--supported", "shapes,colours", "--splits", "val,tset"], "splits must be among"),
])
@pytest.mark.slow
def test_failed_sweep_changes_nothing(run, argv, message, capsys):
    before = snapshot(run.parent)
    assert main(["sweep", "--run", str(run), *argv]) == 1
    assert message in capsys.readouterr().err
    assert snapshot(run.parent) == before


@pytest.mark.slow
def test_sweep_with_other_settings_needs_overwrite_and_then_agrees(run, capsys):
    before = snapshot(run.parent)
    assert main(["sweep", "--run", str(run), "--supported", "shapes", "--alphas", "0,1", "--max-eval", "20"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert snapshot(run.parent) == before
    assert main(["sweep", "--run", str(run), "--supported", "shapes", "--alphas", "0,1", "--max-eval", "20",
                 "--overwrite"]) == 0
    meta = read_run_meta(run)
    assert meta["supported"] == ["shapes"]
    assert meta["sweep_sha256"] == hashlib.sha256((run / "sweep.csv").read_bytes()).hexdigest()
    assert set(pd_tasks(run)) == {"digits", "shapes"}
    assert select_run(run)["alpha"] in (0.0, 1.0)


def pd_tasks(run: Path) -> list[str]:
    import pandas as pd
    return list(pd.read_csv(run / "sweep.csv")["task"].unique())


@pytest.mark.slow
def test_half_updated_sweep_is_detected_not_answered(run):
    """A sweep cut between sweep.csv and run.json (or an edited file): select refuses instead of answering."""
    text = (run / "sweep.csv").read_text().splitlines()
    (run / "sweep.csv").write_text("\n".join(text[:-3]) + "\n")
    with pytest.raises(ValueError, match="does not match"):
        select_run(run)
    # the sweep command repairs it (a resumed sweep starts afresh from an untrusted table)
    run_sweep(run, ["shapes", "colours"], [0.0, 0.5, 1.0], max_eval=20)
    assert select_run(run)["alpha"] in (0.0, 0.5, 1.0)


def test_weights_swapped_under_a_run_are_detected(run, tmp_path):
    other = tmp_path / "runs" / "other"
    run_finetune(other, "micro-rn-s", None, "digits", FinetuneConfig(steps=2, batch_size=8, warmup=1, seed=5))
    for f in ("finetuned.safetensors", "finetuned.json"):
        shutil.copy(other / f, run / f)  # weights and sidecar agree with each other, not with run.json
    with pytest.raises(CheckpointError, match="not the file .*run.json describes"):
        load_run(run)


# ------------------------------------------------------------------ never overwrite what is not ours
def test_finetune_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "experiments.md").write_text("the lab notebook")
    before = snapshot(tmp_path)
    assert main(["finetune", "--model", "micro-rn-s", "--task", "digits", "--out", str(docs), "--steps", "1",
                 "--overwrite"]) == 1
    assert "not a run directory made by this tool" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("out", ["", "/"])
def test_finetune_refuses_empty_or_root_output(out, tmp_path):
    with pytest.raises(WriteRefused, match="give a folder name"):
        run_finetune(out, "micro-rn-s", None, "digits", TINY)


def test_finetune_replaces_a_run_only_when_asked_and_atomically(run, capsys):
    before = snapshot(run.parent)
    assert main(["finetune", "--model", "micro-rn-s", "--task", "counting", "--out", str(run), "--steps", "2",
                 "--batch-size", "8"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert snapshot(run.parent) == before
    assert main(["finetune", "--model", "micro-rn-s", "--task", "counting", "--out", str(run), "--steps", "2",
                 "--batch-size", "8", "--overwrite"]) == 0
    assert read_run_meta(run)["task"] == "counting"
    assert not (run / "sweep.csv").exists()  # the old sweep belonged to the old weights
    assert sorted(p.name for p in run.parent.iterdir()) == ["x"]  # no staging folder, no lock left


def test_interrupted_replacement_leaves_the_old_run(run):
    before = snapshot(run.parent)

    def interrupt(progress) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_finetune(run, "micro-rn-s", None, "counting", TINY, overwrite=True, on_progress=interrupt)
    assert snapshot(run.parent) == before


@pytest.mark.slow
def test_export_never_writes_shipped_weights_or_foreign_files(run, tmp_path, capsys):
    shipped = WEIGHTS_DIR / "micro-rn-s.safetensors"
    shipped_before = snapshot(WEIGHTS_DIR)
    assert main(["export", "--run", str(run), "--alpha", "0.5", "--out", str(shipped), "--overwrite"]) == 1
    assert "shipped results" in capsys.readouterr().err
    assert main(["export", "--run", str(run), "--alpha", "0.5", "--out",
                 str(CACHED_RESULTS_DIR / "new.safetensors")]) == 1
    assert snapshot(WEIGHTS_DIR) == shipped_before and not (CACHED_RESULTS_DIR / "new.safetensors").exists()

    (tmp_path / "settings.json").write_text('{"theme": "dark"}')
    (tmp_path / "notes.safetensors").write_bytes(b"someone else's file")
    before = snapshot(tmp_path)
    assert main(["export", "--run", str(run), "--alpha", "0.5", "--out", str(tmp_path / "settings.safetensors")]) == 1
    assert "settings.json exists" in capsys.readouterr().err
    assert main(["export", "--run", str(run), "--alpha", "0.5", "--out", str(tmp_path / "notes.safetensors"),
                 "--overwrite"]) == 1
    assert "not written by this tool" in capsys.readouterr().err
    assert main(["export", "--run", str(run), "--alpha", "2", "--out", str(tmp_path / "new.safetensors")]) == 1
    assert snapshot(tmp_path) == before

    out = tmp_path / "patched.safetensors"
    assert main(["export", "--run", str(run), "--alpha", "0.5", "--out", str(out)]) == 0
    first = out.read_bytes()
    assert main(["export", "--run", str(run), "--alpha", "1.0", "--out", str(out)]) == 1
    assert out.read_bytes() == first
    assert main(["export", "--run", str(run), "--alpha", "1.0", "--out", str(out), "--overwrite"]) == 0
    state, meta = load_checkpoint(out)
    assert meta["alpha"] == 1.0 and torch.equal(state["visual.conv1.weight"], load_run(run).theta_ft["visual.conv1.weight"])


def test_study_outputs_refuse_foreign_files_and_shipped_results(run, tmp_path, capsys):
    notes = tmp_path / "notes.json"
    notes.write_text("not json at all")
    before = snapshot(tmp_path)
    assert main(["wiseft", "--run", str(run), "--shift", "digits_colour", "--out", str(notes), "--max-eval", "10"]) == 1
    assert "not a result this tool wrote" in capsys.readouterr().err
    assert main(["wiseft", "--run", str(run), "--shift", "digits_colour", "--max-eval", "10",
                 "--out", str(CACHED_RESULTS_DIR / "micro-rn-s" / "relatives" / "wiseft.json")]) == 1
    assert "shipped results" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_export_task_and_convert_refuse_existing_outputs(tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "keep.txt").write_text("x")
    assert main(["export-task", "shapes", "--out", str(folder), "--limit", "2"]) == 1
    assert "not an empty folder" in capsys.readouterr().err
    foreign = tmp_path / "model.safetensors"
    foreign.write_bytes(b"not ours")
    before = snapshot(tmp_path)
    assert main(["convert", str(tmp_path / "old.pt"), "--model", "micro-rn-s", "--out", str(foreign)]) == 1
    assert "not written by this tool" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------------------------- one writer per run
def test_second_writer_is_refused_with_the_first_named(run, capsys):
    before = snapshot(run)
    with run_lock(run, "python -m paint_core sweep --run x (the first writer)"):
        assert main(["sweep", "--run", str(run), "--supported", "shapes,colours", "--alphas", "0,0.5,1",
                     "--max-eval", "20"]) == 1
        err = capsys.readouterr().err
        assert f"process {os.getpid()}" in err and "the first writer" in err
        with pytest.raises(RunLocked):
            run_finetune(run, "micro-rn-s", None, "digits", TINY, overwrite=True)
    assert snapshot(run) == before
    assert not lock_path(run).exists()


def test_lock_of_a_dead_process_is_taken_over(run):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket
    lock_path(run).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "token": "old"}))
    with run_lock(run) as held:
        assert json.loads(held.read_text())["pid"] == os.getpid()
    assert not lock_path(run).exists()


# ---------------------------------------------------------------------------------- verify what is loaded
def test_bit_flipped_pretrained_file_is_refused(random_micro_file, tmp_path, capsys):
    flipped = tmp_path / "w.safetensors"
    shutil.copy(random_micro_file, flipped)
    shutil.copy(Path(random_micro_file).with_suffix(".json"), flipped.with_suffix(".json"))
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0x01
    flipped.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_model("micro-rn-s", str(flipped))
    assert main(["finetune", "--model", "micro-rn-s", "--pretrained", str(flipped), "--task", "digits",
                 "--out", str(tmp_path / "r"), "--steps", "1"]) == 1
    assert "sha256" in capsys.readouterr().err and not (tmp_path / "r").exists()


def _fake_shipped(tmp_path, monkeypatch) -> Path:
    """A copy of the shipped weights folder that the loaders treat as the shipped one."""
    import paint_core.io.checkpoints as checkpoints
    import paint_core.models.clip as models
    folder = tmp_path / "weights"
    shutil.copytree(WEIGHTS_DIR, folder)
    monkeypatch.setattr(checkpoints, "WEIGHTS_DIR", folder.resolve())
    monkeypatch.setattr(models, "WEIGHTS_DIR", folder)
    return folder


def test_shipped_weights_are_verified(tmp_path, monkeypatch):
    folder = _fake_shipped(tmp_path, monkeypatch)
    load_model("micro-rn-s")  # intact: loads
    f = folder / "micro-rn-s.safetensors"
    data = bytearray(f.read_bytes())
    data[-10] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_model("micro-rn-s")


@pytest.mark.parametrize("damage, message", [("missing", "has no sidecar micro-rn-s.json"),
                                             ("garbage", "micro-rn-s.json of micro-rn-s.safetensors is not readable"),
                                             ("no-hash", "malformed: it has no sha256")])
def test_missing_or_malformed_shipped_sidecar_names_the_file(tmp_path, monkeypatch, damage, message):
    folder = _fake_shipped(tmp_path, monkeypatch)
    side = folder / "micro-rn-s.json"
    if damage == "missing":
        side.unlink()
    else:
        side.write_text("{not json" if damage == "garbage" else '{"model": "micro-rn-s"}')
    with pytest.raises(CheckpointError, match=message):
        load_model("micro-rn-s")


def test_sha256_is_computed_once_per_file_version(tmp_path, monkeypatch):
    import paint_core.io.checkpoints as checkpoints
    path = tmp_path / "w.safetensors"
    save_checkpoint(path, {"a": torch.zeros(3)})
    calls = []
    real = hashlib.sha256
    monkeypatch.setattr(checkpoints.hashlib, "sha256", lambda *a: calls.append(1) or real(*a))
    checkpoints._HASHES.clear()
    for _ in range(3):
        load_checkpoint(path)
    assert len(calls) == 1
    save_checkpoint(path, {"a": torch.ones(3)})  # a new version is hashed again (and verified)
    assert torch.equal(load_checkpoint(path)[0]["a"], torch.ones(3))


# ------------------------------------------------------------------------------------ run.json schema
GOOD = {"schema": 1, "model": "micro-rn-s", "pretrained": None, "task": "digits", "config": {}, "provenance": {}}


@pytest.mark.parametrize("change, message", [
    ({"schema": "1"}, "field 'schema' must be the integer 1, got str '1'"),
    ({"schema": 2}, "has schema 2; this code reads schema 1"),
    ({"supported": "shapes"}, "field 'supported' must be a list of task names, got str 'shapes'"),
    ({"supported": ["shapes", 3]}, "field 'supported' must be a list of task names"),
    ({"model": None}, "field 'model' must be a model name"),
    ({"max_eval": -3}, "field 'max_eval' must be positive"),
    ({"download": "yes"}, "field 'download' must be true or false"),
    ({"task": None, "drop": "task"}, "missing the field 'task'"),
])
def test_run_json_schema_errors_name_the_field(change, message):
    meta = {**GOOD, **change}
    if "drop" in change:
        meta.pop(change["drop"]), meta.pop("drop")
    with pytest.raises(ValueError) as e:
        validate_run_meta(meta, "runs/x/run.json")
    assert message in str(e.value) and "runs/x/run.json" in str(e.value)


def test_hand_edited_run_json_is_a_clear_cli_error(run, capsys):
    meta = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**meta, "supported": "shapes"}))
    assert main(["select", "--run", str(run)]) == 1
    assert "field 'supported' must be a list" in capsys.readouterr().err
    (run / "run.json").write_text("{broken")
    assert main(["select", "--run", str(run)]) == 1
    assert "not valid JSON" in capsys.readouterr().err


# ----------------------------------------------------------------------------------- bounded folder walks
def test_folder_walk_follows_no_links_and_is_bounded(tmp_path):
    write_imagefolder(tmp_path / "ds", {"red": (220, 30, 30), "blue": (30, 30, 220)}, per_class=3)
    train = tmp_path / "ds" / "train"
    os.symlink(tmp_path / "ds", train / "red" / "loop")  # a loop: followed, it would never end
    os.symlink("/etc", train / "blue" / "etc")
    found = scan_image_folder(train)
    assert found.classes == ["blue", "red"] and len(found) == 6
    assert all(Path(p).parent.name in ("red", "blue") for p, _ in found.samples)
    task = get_task(f"imagefolder:{tmp_path / 'ds'}")
    assert len(task.split("train")) + len(task.split("val")) == 6 and len(task.split("test")) == 6

    deep = tmp_path / "deep" / "cls"
    for i in range(6):
        deep = deep / f"d{i}"
    deep.mkdir(parents=True)
    with pytest.raises(FolderWalkError, match="deeper than 4"):
        scan_image_folder(tmp_path / "deep")
    with pytest.raises(FolderWalkError, match="more than 5 entries"):
        scan_image_folder(train, max_entries=5)


def test_a_lock_left_by_a_killed_but_unreaped_process_is_taken_over(tmp_path):
    """A SIGKILLed writer whose parent has not reaped it yet (a zombie) still 'exists' for kill(pid, 0)."""
    from paint_core.io.writes import lock_path, run_lock
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        child.send_signal(signal.SIGKILL)
        for _ in range(100):  # wait until it is a zombie; it is deliberately not reaped yet
            if Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z":
                break
            time.sleep(0.05)
        run = tmp_path / "run"
        lock_path(run).write_text(json.dumps({"pid": child.pid, "host": socket.gethostname(),
                                              "started": "earlier", "command": "killed"}))
        with run_lock(run, "me"):
            assert json.loads(lock_path(run).read_text())["command"] == "me"
    finally:
        child.wait()
