"""This server: its runtime (device, precision), how many images a live move re-scores, where its jobs and uploads
live, and who a browser session is. Everything here is per server, read from the policy (dashboard/policy.py)."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import streamlit as st

from paint_core.live.sessions import LIVE_EVAL_N
from paint_core.runtime import Runtime, make_runtime, set_default_runtime

from dashboard.policy import policy

GPU_LIVE_EVAL_N = 1000
MODEL_POOL_SIZE = 2  # editable models per run, lent to sessions one call at a time


@st.cache_resource(show_spinner=False)
def server_runtime() -> Runtime:
    """The device and precision of this server (PAINT_DEVICE, PAINT_PRECISION), the default of every thread."""
    p = policy()
    os.environ["PAINT_CACHE_DIR"] = str(p.decode_cache)  # sweeps started here decode inside the write root
    runtime = make_runtime(p.device, p.precision)
    set_default_runtime(runtime)
    return runtime


def live_n() -> int:
    """Images per task a slider move re-scores: PAINT_LIVE_N, else 100 on a CPU and 1000 on a GPU."""
    return policy().live_n or (GPU_LIVE_EVAL_N if server_runtime().device.startswith("cuda") else LIVE_EVAL_N)


def jobs_root() -> Path:
    """Where this server's background jobs live: ``<write root>/.jobs`` (paint_core.app.jobs)."""
    return policy().write_root / ".jobs"


def uploads_root() -> Path:
    """Where zip uploads are unpacked, once per content: ``<write root>/.uploads`` (paint_core.io.uploads)."""
    return policy().write_root / ".uploads"


def session_id() -> str:
    """This browser session's id: recorded as the owner of the jobs it starts and as who cancelled a job."""
    return st.session_state.setdefault("_paint_session_id", uuid.uuid4().hex)
