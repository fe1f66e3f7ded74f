"""Background jobs: a fine-tune and its sweep, or a per-block search, in a process of their own, so that a closed tab, a rerun or a
crashed page loses nothing, and a class keeps its sliders responsive while a job trains.

A job is a folder ``<jobs root>/<id>/`` holding ``job.json`` (what to run), ``log.txt`` (everything the job
printed), ``progress.json`` (its last progress report) and, once it ends, ``status.json`` (done, failed or
cancelled, with a message). The folder is the whole truth: any server process, even a restarted one, lists the
same jobs. A job process is ``python -m paint_core.app.jobs <folder>``; cancelling sends it SIGTERM, and the run
it was building is removed whole (``run_finetune`` builds beside and swaps in), so an earlier run at the same
place stays as it was. A job computes in the runtime its spec carries whole (device, precision, data workers,
gradient accumulation and checkpointing, compile): the starter's, never what the job process happens to default to.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..io.atomic import atomic_write_text
from ..io.writes import folder_lock, process_alive
from ..runtime import Runtime, make_runtime, use_runtime

STATES = ("running", "done", "failed", "cancelled", "lost")
PROGRESS_EVERY_S = 0.5   # progress.json is rewritten at most this often
LOG_TAIL_BYTES = 20_000  # what ``read_log`` returns of a long log


class JobRefused(RuntimeError):
    """A job that cannot start now (e.g. the server already runs its limit of jobs)."""


class JobCancelled(BaseException):
    """Raised inside a job process by SIGTERM: unwinds like KeyboardInterrupt, so every cleanup runs."""


@dataclass(frozen=True)
class FinetuneJob:
    """A fine-tune of ``model`` on ``task`` into run directory ``out``, then its sweep (as ``paint_core
    finetune`` + ``sweep`` do); checked by the caller's policy before it is started."""
    out: str
    model: str
    pretrained: str | None
    task: str
    supported: tuple[str, ...]
    alphas: tuple[float, ...]
    steps: int = 300
    lr: float = 3e-4
    max_eval: int | None = None
    overwrite: bool = False
    runtime: Runtime = Runtime()
    command: str = "dashboard job"


@dataclass(frozen=True)
class SearchJob:
    """A per-block search (as ``paint_core search`` does) of run directory ``run``, its plan written to ``out``."""
    run: str
    out: str
    method: str = "cma"
    budget: int = 60
    tolerance: float = 0.01
    runtime: Runtime = Runtime()
    command: str = "dashboard job"


JOB_KINDS = {"finetune": FinetuneJob, "search": SearchJob}


@dataclass(frozen=True)
class JobStatus:
    id: str
    folder: Path
    description: str
    state: str                    # one of STATES; "lost": the process ended without a word (killed hard)
    out: str
    started: float
    done: int = 0
    total: int = 0
    what: str = ""
    loss: float | None = None
    message: str = ""
    ended: float | None = None
    owner: str = field(default="", repr=False)
    run: str = ""                 # the run directory the job makes (a fine-tune) or reads (a search)

    @property
    def running(self) -> bool:
        return self.state == "running"


# ------------------------------------------------------------------------------ the server's side
_children: dict[str, subprocess.Popen] = {}  # this process's job processes, polled so they never linger as zombies


def start_job(root: str | Path, spec: FinetuneJob | SearchJob, description: str, limit: int = 1, owner: str = "") -> str:
    """Start ``spec`` in a process of its own; returns the job id. Refused (``JobRefused``) when ``limit``
    jobs already run. ``owner`` (e.g. a browser session) is recorded; who may cancel is the caller's policy
    (the dashboard's: dashboard/policy.py ``may_cancel``)."""
    root = Path(root)
    kind = next((k for k, c in JOB_KINDS.items() if isinstance(spec, c)), None)
    if kind is None:
        raise TypeError(f"not a job: {spec!r}")
    if limit < 1:
        raise JobRefused("this server runs no jobs (its job limit is 0)")
    with folder_lock(root):  # one starter at a time: counting and starting are one step
        running = [j for j in list_jobs(root) if j.running]
        if len(running) >= limit:
            raise JobRefused("the server is already running its limit of jobs (" + "; ".join(
                f"{j.description}, {j.what or 'starting'} {j.done}/{j.total}" for j in running)
                + "); try again when one finishes")
        job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        folder = root / job_id
        folder.mkdir()
        atomic_write_text(folder / "job.json", json.dumps(
            {"kind": kind, "spec": asdict(spec), "description": description, "owner": owner,
             "started": time.time()}, indent=1))
        with open(folder / "log.txt", "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "paint_core.app.jobs", str(folder)], stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
        atomic_write_text(folder / "pid", str(proc.pid))
        _children[job_id] = proc
    return job_id


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _pid(folder: Path) -> int | None:
    """The job process's id as its starter wrote it; None when there is no readable, positive one."""
    try:
        pid = int((folder / "pid").read_text())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 else None


def job_status(folder: str | Path) -> JobStatus | None:
    """What a job folder says now; None for a folder that is not a job (or not yet one)."""
    folder = Path(folder)
    meta = _read_json(folder / "job.json")
    if meta is None:
        return None
    child = _children.get(folder.name)
    if child is not None and child.poll() is not None:
        _children.pop(folder.name, None)  # reaped
    progress = _read_json(folder / "progress.json") or {}
    end = _read_json(folder / "status.json")
    if end is not None:
        state, message, ended = end.get("state", "failed"), end.get("message", ""), end.get("ended")
    else:
        pid = _pid(folder)  # None: starting (pid not written yet), or its starter died before writing it
        alive = process_alive(pid) if pid is not None else time.time() - meta.get("started", 0) < 30
        state, message, ended = ("running", "", None) if alive else (
            "lost", "the job process ended without reporting (killed, or out of memory); see its log", None)
    return JobStatus(folder.name, folder, meta.get("description", ""), state, meta["spec"].get("out", ""),
                     meta.get("started", 0.0), int(progress.get("done", 0)), int(progress.get("total", 0)),
                     progress.get("what", ""), progress.get("loss"), message, ended, meta.get("owner", ""),
                     meta["spec"].get("run", meta["spec"].get("out", "")))


def list_jobs(root: str | Path) -> list[JobStatus]:
    """Every job under ``root``, newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [job_status(f) for f in root.iterdir() if f.is_dir() and not f.name.startswith(".")]
    return sorted((j for j in found if j is not None), key=lambda j: j.started, reverse=True)


def wait_job(root: str | Path, job_id: str, timeout: float = 600.0, poll: float = 0.5) -> JobStatus:
    """Block until the job ends (for scripts and tests); TimeoutError if it still runs after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        status = job_status(Path(root) / job_id)
        if status is None:
            raise ValueError(f"no job {job_id!r} under {root}")
        if not status.running:
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still runs after {timeout:g} s")
        time.sleep(poll)


def cancel_job(root: str | Path, job_id: str, by: str | None = None) -> bool:
    """Ask a running job to stop (SIGTERM to its process group); False if it is not running. ``by`` (e.g. a
    browser session) is recorded, so a job cancelled by someone other than its starter says so."""
    status = job_status(Path(root) / job_id)
    if status is None or not status.running:
        return False
    pid = _pid(status.folder)
    if pid is None:
        return False
    if by is not None:
        atomic_write_text(status.folder / "cancel.json", json.dumps({"by": by, "at": time.time()}))
    try:
        os.killpg(pid, signal.SIGTERM)
    except OSError:
        return False
    return True


def read_log(root: str | Path, job_id: str, tail: int = LOG_TAIL_BYTES) -> str:
    """The end of a job's log as a person reads it: progress bars redrawn with carriage returns keep only
    their last state."""
    path = Path(root) / job_id / "log.txt"
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - tail))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.replace("\r\n", "\n").split("\n"))


# ------------------------------------------------------------------------------ the job's side
def cancel_message(folder: Path) -> str:
    """What a cancelled job reports: by whom, when another session than its starter cancelled it."""
    meta, asked = _read_json(folder / "job.json") or {}, _read_json(folder / "cancel.json") or {}
    by = asked.get("by")
    who = " by another session" if by is not None and by != meta.get("owner") else ""
    return f"cancelled{who}; nothing was written (an earlier run at the same place is unchanged)"


def job_runtime(spec: FinetuneJob | SearchJob) -> Runtime:
    """The spec's runtime, checked again in the job's own process (its device must be there too)."""
    rt = spec.runtime
    return make_runtime(rt.device, rt.precision, rt.workers, rt.accum_steps, rt.grad_checkpointing, rt.compile)


def _raise_cancelled(signum, frame) -> None:
    raise JobCancelled()


def run_job(folder: str | Path) -> int:
    """Run the job in ``folder`` in this process (its own, started by ``start_job``); always ends by writing
    status.json. Returns the process exit code."""
    from ..engine.training import Progress
    from ..configs import SearchConfig
    from ..engine.finetune import FinetuneConfig
    from ..studies.patch import SweepSpec, run_finetune
    from ..studies.search import search_run

    folder = Path(folder)
    signal.signal(signal.SIGTERM, _raise_cancelled)
    last = [0.0]

    def report(p: Progress) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY_S or p.done >= p.total:
            last[0] = now
            atomic_write_text(folder / "progress.json", json.dumps(
                {"done": p.done, "total": p.total, "what": p.what, "loss": p.loss}))

    def finish(state: str, message: str) -> None:
        atomic_write_text(folder / "status.json", json.dumps({"state": state, "message": message,
                                                              "ended": time.time()}))
        print(f"[job] {state}: {message}", flush=True)

    try:
        meta = json.loads((folder / "job.json").read_text())
        fields, kind = meta["spec"], meta.get("kind", "finetune")
        print(f"[job] {meta.get('description', '')}", flush=True)
        if kind == "search":
            spec = SearchJob(**{**fields, "runtime": Runtime(**fields["runtime"])})
            with use_runtime(job_runtime(spec)):
                result = search_run(spec.run, spec.out, spec.method,
                                    SearchConfig(tolerance=spec.tolerance, budget=spec.budget),
                                    command=spec.command, on_progress=report)
            finish("done", f"plan written to {result['file']} ({result['evaluated']} plans measured)")
            return 0
        spec = FinetuneJob(**{**fields, "supported": tuple(fields["supported"]), "alphas": tuple(fields["alphas"]),
                              "runtime": Runtime(**fields["runtime"])})
        with use_runtime(job_runtime(spec)):
            out = run_finetune(spec.out, spec.model, spec.pretrained, spec.task,
                               FinetuneConfig(steps=spec.steps, lr=spec.lr), command=spec.command,
                               overwrite=spec.overwrite, on_progress=report,
                               sweep_spec=SweepSpec(spec.supported, spec.alphas, max_eval=spec.max_eval))
        finish("done", f"run written to {out}")
        return 0
    except JobCancelled:
        finish("cancelled", cancel_message(folder))
        return 1
    except Exception as e:  # noqa: BLE001 -- every failure becomes the job's status, with its traceback in the log
        traceback.print_exc()
        finish("failed", f"{type(e).__name__}: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(run_job(sys.argv[1]))
