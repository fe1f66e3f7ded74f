"""Background jobs (issue 15, part 2): a fine-tune and its sweep in a process of their own; progress, log,
cancel that writes nothing, a killed job reported as such, and the server's job limit."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from pathlib import Path

import pandas as pd
import pytest

from paint_core.app.jobs import (FinetuneJob, JobRefused, cancel_job, job_status, list_jobs, read_log, start_job,
                                 wait_job)
from paint_core.engine.finetune import FinetuneConfig
from paint_core.io.run_dir import read_run_meta
from paint_core.runtime import Runtime
from paint_core.studies.patch import run_finetune

pytestmark = pytest.mark.slow  # each job is a fresh interpreter importing torch


def _spec(out: Path, steps: int, runtime: Runtime = Runtime(), **kw) -> FinetuneJob:
    return FinetuneJob(out=str(out), model="micro-rn-s", pretrained=None, task="digits", supported=("shapes",),
                       alphas=(0.0, 0.5, 1.0), steps=steps, max_eval=30, runtime=runtime, **kw)


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _wait_until(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_a_job_fine_tunes_sweeps_and_reports_in_its_own_process(tmp_path):
    jobs, out = tmp_path / "jobs", tmp_path / "runs" / "a"
    runtime = Runtime(accum_steps=2)  # the starter's runtime, carried whole to the job
    job_id = start_job(jobs, _spec(out, steps=4, runtime=runtime), "fine-tune of micro-rn-s on digits", owner="session-1")
    pid = int((jobs / job_id / "pid").read_text())
    assert pid != os.getpid()
    status = wait_job(jobs, job_id, timeout=300)
    assert status.state == "done", read_log(jobs, job_id)
    assert (status.what, status.done, status.total) == ("sweep", 3, 3)  # the last report: all three alphas
    assert status.owner == "session-1" and status.out == str(out)
    sweep = pd.read_csv(out / "sweep.csv")
    assert sorted(sweep["alpha"].unique()) == [0.0, 0.5, 1.0]
    meta = read_run_meta(out)
    assert meta["config"]["steps"] == 4 and meta["supported"] == ["shapes"]
    assert {k: meta["provenance"]["runtime"][k] for k in ("device", "precision", "accum_steps")} == {
        "device": "cpu", "precision": "fp32", "accum_steps": 2}  # computed in it, not in the job's own default
    log = read_log(jobs, job_id)
    assert "finetune: 100%" in log and "done: run written to" in log
    assert "\r" not in log  # progress bars keep their last state only
    assert [j.id for j in list_jobs(jobs)] == [job_id]


def test_cancel_writes_nothing_and_keeps_the_earlier_run(tmp_path):
    jobs, out = tmp_path / "jobs", tmp_path / "runs" / "kept"
    run_finetune(out, "micro-rn-s", None, "digits", FinetuneConfig(steps=2, batch_size=8, warmup=1))
    before = _digest(out)
    job_id = start_job(jobs, _spec(out, steps=2000, overwrite=True), "a long fine-tune", owner="me")
    _wait_until(lambda: job_status(jobs / job_id).done >= 2)  # training has begun
    assert cancel_job(jobs, job_id)
    status = wait_job(jobs, job_id, timeout=60)
    assert status.state == "cancelled" and "nothing was written" in status.message
    assert _digest(out) == before  # the earlier run, byte for byte
    assert sorted(p.name for p in out.parent.iterdir()) == ["kept"]  # no staging folder, no lock left
    assert not cancel_job(jobs, job_id)  # an ended job cannot be cancelled again


def test_a_job_killed_hard_is_reported_lost_and_frees_its_slot(tmp_path):
    jobs = tmp_path / "jobs"
    job_id = start_job(jobs, _spec(tmp_path / "runs" / "b", steps=2000), "doomed", limit=1)
    with pytest.raises(JobRefused, match="already running its limit of jobs .*doomed"):
        start_job(jobs, _spec(tmp_path / "runs" / "c", steps=2), "second", limit=1)
    _wait_until(lambda: job_status(jobs / job_id).done >= 1)
    os.killpg(int((jobs / job_id / "pid").read_text()), signal.SIGKILL)  # as the OOM killer would
    _wait_until(lambda: not job_status(jobs / job_id).running, timeout=30)
    status = job_status(jobs / job_id)
    assert status.state == "lost" and "see its log" in status.message
    second = start_job(jobs, _spec(tmp_path / "runs" / "c", steps=2), "second", limit=1)  # the slot is free
    assert wait_job(jobs, second, timeout=300).state == "done"


def test_a_failing_job_says_why(tmp_path):
    jobs = tmp_path / "jobs"
    job_id = start_job(jobs, FinetuneJob(out=str(tmp_path / "runs" / "x"), model="micro-rn-s", pretrained=None,
                                         task="no-such-task", supported=("shapes",), alphas=(0.0,), runtime=Runtime()),
                       "bad task")
    status = wait_job(jobs, job_id, timeout=120)
    assert status.state == "failed" and "no-such-task" in status.message
    assert "Traceback" in read_log(jobs, job_id)
    assert not (tmp_path / "runs" / "x").exists()


def test_job_folders_alone_say_the_state(tmp_path):
    """What any server process (a restarted one too) reads: no pid file yet is 'running' for 30 s, a pid of a
    dead process without status.json is 'lost', status.json is final."""
    folder = tmp_path / "jobs" / "j1"
    folder.mkdir(parents=True)
    (folder / "job.json").write_text(json.dumps({"spec": {"out": "o"}, "description": "d", "started": time.time()}))
    assert job_status(folder).state == "running"
    (folder / "pid").write_text("999999999")
    assert job_status(folder).state == "lost"
    (folder / "status.json").write_text(json.dumps({"state": "done", "message": "ok", "ended": time.time()}))
    assert job_status(folder).state == "done" and job_status(folder).message == "ok"
    (tmp_path / "jobs" / "not-a-job").mkdir()
    assert [j.id for j in list_jobs(tmp_path / "jobs")] == ["j1"]
