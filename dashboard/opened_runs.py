"""The runs this server can open and what every session shares of one: the run (model and endpoints), its
evaluation subsample, its prediction store and model pool, the Patch page's positions; plus the run selector.
Each is built once per version of the run's files (``paint_core.app.identity``) and never written by a session."""
from __future__ import annotations

import io
import threading
from pathlib import Path

import streamlit as st

from paint_core.app import runs as app_runs
from paint_core.app.identity import run_identity, sweep_identity
from paint_core.app.runs import find_runs, run_tasks
from paint_core.data.tasks import get_task
from paint_core.io.paths import CACHED_RESULTS_DIR
from paint_core.io.run_dir import read_sweep
from paint_core.live.sessions import (SLIDER_ALPHAS, SLIDER_STEP, EvalSet, ModelPool, PatchSession, PredictionStore,
                                      build_eval_sets, live_runtime, subsample_accuracies)
from paint_core.models.run import Run, load_run, shared_endpoints
from paint_core.runtime import PRECISION_WORDS
from paint_core.studies.search import SearchedPlan, searched_plans

from dashboard.policy import policy
from dashboard.serving import MODEL_POOL_SIZE, live_n, server_runtime


def available_runs() -> dict[str, str]:
    """label -> run directory, from cached_results/ and ./runs (where the CLI writes by default)."""
    write_root = policy().write_root  # where the Models & runs page writes, if set elsewhere (PAINT_WRITE_ROOT)
    return find_runs([(CACHED_RESULTS_DIR, ""), (Path.cwd() / "runs", "runs/"),  # cwd read now: the user may have moved
                      (write_root, f"{write_root.name}/")])


@st.cache_resource(show_spinner="Loading the run's model and endpoints...", max_entries=16)
def _shared_run(path: str, identity: str) -> Run:
    return load_run(path)


def shared_run(path: str) -> Run:
    """Read-only: shared by every session. Never mutate it; sessions copy the model."""
    return _shared_run(path, run_identity(path))


@st.cache_resource(show_spinner="Preparing the evaluation subsample...", max_entries=32)
def _shared_eval_sets(path: str, identity: str, tasks: tuple[str, ...], n: int) -> dict[str, EvalSet]:
    return build_eval_sets(_shared_run(path, identity), tasks, n)


def shared_eval_sets(path: str, tasks: tuple[str, ...], n: int | None = None) -> dict[str, EvalSet]:
    return _shared_eval_sets(path, run_identity(path), tasks, n or live_n())


@st.cache_data(show_spinner=False)
def sweep_table(path: str, identity: str, per_block: bool = False):
    return read_sweep(path, per_block)


def shared_store(path: str) -> PredictionStore:
    """Subsample predictions per slider position, shared by all sessions; a background thread with its own
    model copy fills every position once (nearest to the chosen alpha first), so later moves are lookups."""
    return _shared_store(path, run_identity(path))


@st.cache_resource(show_spinner=False, max_entries=16)
def _shared_store(path: str, identity: str) -> PredictionStore:
    from dashboard.explorer import slider_grid
    store = PredictionStore(live_runtime(server_runtime(), policy().live_precision))
    run = _shared_run(path, identity)
    sweep = sweep_of(path)
    _, grid = slider_grid(sweep["alpha"].unique() if len(sweep) else (), SLIDER_STEP)
    start = chosen_alpha(path) or 0.0
    near = lambda a: abs(a - start)  # noqa: E731
    # the Patch page's positions first (nearest to the chosen alpha first), then the other pages' finer ones
    order = [*sorted(grid, key=near), *sorted((a for a in SLIDER_ALPHAS if a not in grid), key=near)]
    store.warm(run, _shared_eval_sets(path, identity, run_tasks(run), live_n()), order)
    return store


@st.cache_resource(show_spinner=False, max_entries=16)
def _shared_pool(path: str, identity: str) -> ModelPool:
    return ModelPool(_shared_run(path, identity), size=MODEL_POOL_SIZE)


def shared_pool(path: str) -> ModelPool:
    """The run's few editable models, lent to sessions for a call (an uncached position, an upload)."""
    return _shared_pool(path, run_identity(path))


def session_patch(path: str) -> PatchSession:
    """This browser session's alpha on the run at ``path`` (created once per session; it owns no weights)."""
    key = f"patch_session::{path}::{run_identity(path)}"
    if key not in st.session_state:
        for old in [k for k in st.session_state if str(k).startswith(f"patch_session::{path}::")]:
            del st.session_state[old]  # the run was rewritten: drop this session's copy of the old one
        run = shared_run(path)
        st.session_state[key] = PatchSession(run, shared_eval_sets(path, run_tasks(run)), shared_store(path),
                                             shared_pool(path))
    return st.session_state[key]


@st.cache_resource(show_spinner=False, max_entries=16)
def _thumbnails(path: str, identity: str, task_name: str, n: int) -> list[bytes]:
    run = _shared_run(path, identity)
    split = get_task(task_name, root=run.meta.get("data_root")).split("test")
    out = []
    for i in range(min(n, len(split))):
        buf = io.BytesIO()
        split[i][0].convert("RGB").resize((96, 96)).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def sample_thumbnails(path: str, task_name: str, n: int) -> list[bytes]:
    """PNG thumbnails of the first ``n`` test images of a run's task, encoded once per run: every slider move
    sends the same bytes (the browser has them already)."""
    return _thumbnails(path, run_identity(path), task_name, n)


class ExplorerPositions:
    """What the Patch page's explorer shows at each slider position of one run (``dashboard.explorer``), built
    once per position from the shared PredictionStore and shared by every session: at a stored position the
    predictions are the same for everyone. Also keeps the frontier SVG per split and set of positions."""

    def __init__(self, store: PredictionStore, eval_sets: dict[str, EvalSet], patch: str, supported: tuple[str, ...],
                 sample_labels: list[int]) -> None:
        self.store, self.eval_sets, self.patch, self.supported = store, eval_sets, patch, supported
        self.sample_labels = sample_labels
        self._lock = threading.Lock()
        self._entries: dict[str, dict] = {}
        self._svgs: dict[tuple, str] = {}

    def entries(self) -> dict[str, dict]:
        """``alpha_key`` -> ``position_entry`` for every position the store has (alpha 0 is always there once a
        session has opened the run)."""
        from dashboard.explorer import alpha_key, position_entry
        zero = self.store.get(0.0)
        if zero is None:
            return {}
        zero_acc = subsample_accuracies(zero, self.eval_sets)
        names = self.eval_sets[self.patch].classnames
        n = len(self.sample_labels)
        for alpha in self.store.alphas():
            key = alpha_key(alpha)
            with self._lock:
                if key in self._entries:
                    continue
            probs = self.store.get(alpha)
            entry = position_entry(
                subsample_accuracies(probs, self.eval_sets), zero_acc, self.patch, self.supported,
                {t: len(e.labels) for t, e in self.eval_sets.items()}, [names[y] for y in self.sample_labels],
                [names[int(i)] for i in zero[self.patch][:n].argmax(-1)],
                [names[int(i)] for i in probs[self.patch][:n].argmax(-1)])
            with self._lock:
                self._entries.setdefault(key, entry)
        with self._lock:
            return dict(self._entries)

    def frontier_svg(self, f, chosen: float | None, split: str, sweep_stamp: str, entries: dict[str, dict]) -> str:
        """The frontier SVG with a marker group for each of ``entries`` (drawn once per split, sweep and set)."""
        from dashboard.figures import frontier_svg
        key = (split, sweep_stamp, chosen, tuple(sorted(entries)))
        with self._lock:
            found = self._svgs.get(key)
        if found is None:
            found = frontier_svg(f, self.patch, chosen, {float(a): tuple(e["live"]) for a, e in entries.items()}, split)
            with self._lock:
                if len(self._svgs) > 64:
                    self._svgs.clear()
                found = self._svgs.setdefault(key, found)
        return found


@st.cache_resource(show_spinner=False, max_entries=16)
def _explorer_positions(path: str, identity: str, supported: tuple[str, ...], sample_labels: tuple[int, ...]
                        ) -> ExplorerPositions:
    run = _shared_run(path, identity)
    return ExplorerPositions(_shared_store(path, identity), _shared_eval_sets(path, identity, run_tasks(run), live_n()),
                             run.meta["task"], supported, list(sample_labels))


def explorer_positions(path: str, supported: tuple[str, ...], sample_labels: tuple[int, ...]) -> ExplorerPositions:
    """The run's explorer positions (one object per run, shared by every session); ``sample_labels`` are the
    true classes of the sample grid's images (the first test images)."""
    return _explorer_positions(path, run_identity(path), supported, sample_labels)


def sweep_stamp(path: str) -> str:
    """The sweep file's identity: what a drawing of the sweep depends on."""
    return sweep_identity(path)


def chosen_alpha(path: str) -> float | None:
    """The run's alpha chosen by its selection rule (None before a sweep), read once per version of its sweep."""
    return _chosen_alpha(path, sweep_stamp(path))


@st.cache_data(show_spinner=False, max_entries=64)
def _chosen_alpha(path: str, stamp: str) -> float | None:
    return app_runs.chosen_alpha(path)


def run_blocks(path: str) -> tuple[str, ...]:
    """The blocks a per-block plan moves on this run (those its fine-tune changed), in forward order."""
    return shared_endpoints(shared_run(path)).varying


def run_searched_plans(path: str) -> tuple[list[SearchedPlan], list[str]]:
    """The plans searched for this run (``plan-*.json`` in it), and a sentence per file that cannot be read."""
    return searched_plans(path)


def sweep_of(path: str, per_block: bool = False):
    """The run's sweep table (uniform alphas; ``per_block``: with the rows of searched plans), read once per
    change of the file."""
    return sweep_table(path, sweep_identity(path), per_block)


def pick_run(default_task: str | None = None, key: str = "run", prefer: str | None = None) -> str | None:
    """A run selector; returns the run directory or None (with a message) if there is none. ``prefer``: the
    label selected first when it exists (e.g. the shipped reading model's run on the Typographic page)."""
    runs = available_runs()
    if not runs:
        st.warning("No run found in cached_results/ or ./runs. Make one with `python -m paint_core finetune ...` "
                   "or on the Models & runs page.")
        return None
    labels = list(runs)
    asked = st.session_state.pop("open_run", None)  # "Open" on a finished job (Models & runs)
    if asked is not None:
        match = [l for l, p in runs.items() if Path(p).resolve() == Path(asked).resolve()]
        if match:
            st.session_state[key] = match[0]
    model = st.session_state.get("model")
    preferred = [l for l in labels if default_task and l.endswith(f"/{default_task}") and (not model or l.startswith(model))]
    index = labels.index(prefer) if prefer in labels else labels.index(preferred[0]) if preferred else 0
    label = st.selectbox("Run (model / patch task)", labels, index=index, key=key)
    return runs[label]


def open_session(default_task: str, key: str, prefer: str | None = None) -> PatchSession:
    """Run selector + this session's live model; shows the reason and stops the page if it cannot open."""
    path = pick_run(default_task=default_task, key=key, prefer=prefer)
    if path is None:
        st.stop()
    try:
        return session_patch(path)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        st.error(f"Cannot open this run: {e}")
        st.stop()


def follow_run(path: str, slider_key: str, chosen: float | None, default: float) -> None:
    """When the user switches to another run, its slider starts at that run's chosen alpha (not the old run's
    position). Call before the slider is drawn."""
    seen = f"{slider_key}__run"
    last = st.session_state.get(seen)
    st.session_state[seen] = path
    if last is not None and last != path:
        st.session_state[slider_key] = float(chosen if chosen is not None else default)


def live_precision_note(path: str) -> str:
    """Which precision the live numbers of the run at ``path`` are computed in (PAINT_LIVE_PRECISION)."""
    live = shared_store(path).runtime
    return (f"Live numbers on this page: {PRECISION_WORDS[live.precision]} on {live.device}; the curves are the "
            "sweep's, in the precision it ran in.")
