"""Shared, read-only heavy objects (st.cache_resource) and each session's own patched model."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from PIL import Image

from paint_core.images import ImageInputError, read_image
from paint_core.live import LIVE_EVAL_N, EvalSet, PatchSession, build_eval_sets
from paint_core.runs import Run, load_run, read_sweep, select_run
from paint_core.tasks import SUPPORTED_TASKS

ROOT = Path(__file__).resolve().parent.parent
EVAL_N = LIVE_EVAL_N


def available_runs() -> dict[str, str]:
    """label -> run directory, from cached_results/ and ./runs (where the CLI writes by default)."""
    found = {}
    for root in (ROOT / "cached_results", Path.cwd() / "runs"):  # cwd read now: the user may have moved
        for meta in sorted(root.glob("**/run.json")) if root.is_dir() else []:
            label = str(meta.parent.relative_to(root))
            found[f"{label}" if root.name == "cached_results" else f"runs/{label}"] = str(meta.parent)
    return found


@st.cache_resource(show_spinner="Loading the run's model and endpoints...")
def shared_run(path: str) -> Run:
    """Read-only: shared by every session. Never mutate it; sessions copy the model."""
    return load_run(path)


@st.cache_resource(show_spinner="Preparing the evaluation subsample...")
def shared_eval_sets(path: str, tasks: tuple[str, ...], n: int = EVAL_N) -> dict[str, EvalSet]:
    return build_eval_sets(shared_run(path), tasks, n)


@st.cache_data(show_spinner=False)
def sweep_table(path: str, mtime: float):
    return read_sweep(path)


def run_tasks(run: Run) -> tuple[str, ...]:
    supported = run.meta.get("supported") or [t for t in SUPPORTED_TASKS if t != run.meta["task"]]
    return (run.meta["task"], *[s for s in supported if s != run.meta["task"]])


def session_patch(path: str) -> PatchSession:
    """This browser session's own live model for the run at ``path`` (created once per session)."""
    key = f"patch_session::{path}"
    if key not in st.session_state:
        run = shared_run(path)
        st.session_state[key] = PatchSession(run, shared_eval_sets(path, run_tasks(run)))
    return st.session_state[key]


def chosen_alpha(path: str) -> float | None:
    try:
        return select_run(path)["alpha"]
    except (ValueError, FileNotFoundError, KeyError):
        return None


def sweep_of(path: str):
    f = Path(path) / "sweep.csv"
    return sweep_table(path, f.stat().st_mtime if f.is_file() else 0.0)


def pick_run(default_task: str | None = None, key: str = "run") -> str | None:
    """A run selector; returns the run directory or None (with a message) if there is none."""
    runs = available_runs()
    if not runs:
        st.warning("No run found in cached_results/ or ./runs. Make one with `python -m paint_core finetune ...` "
                   "or on the Models & runs page.")
        return None
    labels = list(runs)
    model = st.session_state.get("model")
    preferred = [l for l in labels if default_task and l.endswith(f"/{default_task}") and (not model or l.startswith(model))]
    index = labels.index(preferred[0]) if preferred else 0
    label = st.selectbox("Run (model / patch task)", labels, index=index, key=key)
    return runs[label]


def open_session(default_task: str, key: str) -> PatchSession:
    """Run selector + this session's live model; shows the reason and stops the page if it cannot open."""
    path = pick_run(default_task=default_task, key=key)
    if path is None:
        st.stop()
    try:
        return session_patch(path)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        st.error(f"Cannot open this run: {e}")
        st.stop()


def uploaded_image(key: str) -> Image.Image | None:
    """A file uploader whose bad files become a message on the page, never an exception."""
    up = st.file_uploader("PNG, JPEG or WebP", type=["png", "jpg", "jpeg", "webp"], key=key)
    if up is None:
        return None
    try:
        return read_image(up.getvalue(), up.name)
    except ImageInputError as e:
        st.error(str(e))
        return None
