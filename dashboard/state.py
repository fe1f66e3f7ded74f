"""Shared, read-only heavy objects (st.cache_resource) and each session's own patched model."""
from __future__ import annotations

import io
import os
import threading
import uuid
from pathlib import Path

import streamlit as st

from PIL import Image

from paint_core.app import answers
from paint_core.app.identity import file_identity, run_identity, sweep_identity, weights_identity
from paint_core.app import runs as app_runs
from paint_core.app.runs import find_relatives, find_runs, run_tasks
from paint_core.data.images import ImageInputError, read_image
from paint_core.live.sessions import (LIVE_EVAL_N, SLIDER_ALPHAS, SLIDER_STEP, EvalSet, ModelPool, PatchSession,
                                      PredictionStore, build_eval_sets, live_runtime, subsample_accuracies)
from paint_core.io.paths import CACHED_RESULTS_DIR
from paint_core.io.results import ResultsKeyError
from paint_core.models.run import Run, load_run, shared_endpoints
from paint_core.studies.closed_vocab import ClosedVocabResults, Disentanglement
from paint_core.studies.prompt_update import PromptUpdateResults
from paint_core.studies.readers import StudyResults, read_study
from paint_core.studies.search import SearchedPlan, searched_plans
from paint_core.io.run_dir import read_sweep
from paint_core.data.tasks import get_task
from paint_core.runtime import PRECISION_WORDS, Runtime, make_runtime, set_default_runtime

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


def live_precision_note(path: str) -> str:
    """Which precision the live numbers of the run at ``path`` are computed in (PAINT_LIVE_PRECISION)."""
    live = shared_store(path).runtime
    return (f"Live numbers on this page: {PRECISION_WORDS[live.precision]} on {live.device}; the curves are the "
            "sweep's, in the precision it ran in.")


def live_n() -> int:
    """Images per task a slider move re-scores: PAINT_LIVE_N, else 100 on a CPU and 1000 on a GPU."""
    return policy().live_n or (GPU_LIVE_EVAL_N if server_runtime().device.startswith("cuda") else LIVE_EVAL_N)


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


def jobs_root() -> Path:
    """Where this server's background jobs live: ``<write root>/.jobs`` (paint_core.app.jobs)."""
    return policy().write_root / ".jobs"


def uploads_root() -> Path:
    """Where zip uploads are unpacked, once per content: ``<write root>/.uploads`` (paint_core.io.uploads)."""
    return policy().write_root / ".uploads"


def session_id() -> str:
    """This browser session's id: recorded as the owner of the jobs it starts and as who cancelled a job."""
    return st.session_state.setdefault("_paint_session_id", uuid.uuid4().hex)


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


def relatives_dirs() -> dict[str, Path]:
    """label -> a relatives/ folder with study results: cached_results/<model>/relatives (reproduce) and
    ./runs/**/relatives (where to point the CLI's --out for your own model, e.g. runs/ViT-B-32/relatives/)."""
    return find_relatives(CACHED_RESULTS_DIR, Path.cwd() / "runs")


def study(name: str, key: str) -> StudyResults | None:
    """A model selector and one study (``name``.json, also its kind) through its reader; a message instead if
    there is none."""
    dirs = relatives_dirs()
    found = {m: d / f"{name}.json" for m, d in dirs.items() if (d / f"{name}.json").is_file()}
    if not found:
        st.info(f"No {name} results yet. They are written by `python -m paint_core reproduce` into "
                f"cached_results/<model>/relatives/{name}.json; for your own model run `python -m paint_core {name} "
                f"... --out runs/<model>/relatives/{name}.json`.")
        return None
    model = st.selectbox("Model", list(found), key=key)
    return results_doc(found[model], name)


def results_doc(path: Path, kind: str) -> StudyResults | None:
    """A study's results through its kind's reader (``paint_core.studies.readers``); a message instead if the file
    cannot be read or lacks a key its reader needs."""
    try:
        doc = load_results(str(path), kind, file_identity(path))
    except (OSError, ValueError) as e:
        st.error(f"Cannot read {path}: {e}")
        return None
    if doc is None:
        st.warning(f"{path} was written by an older version of PAINT Explorer; run the study again "
                   "(or `python -m paint_core reproduce`) to regenerate it.")
    return doc


@st.cache_data(show_spinner=False)
def load_results(path: str, kind: str, identity: str) -> StudyResults | None:
    """Cached by the file's identity (``app.identity.file_identity``), so a rewritten file is read anew."""
    return read_study(path, kind)


def session_edit(paths: tuple[str, ...], tasks: tuple[str, ...]):
    """The task-arithmetic session over the runs at ``paths``, shared by every browser session: one working copy of
    the model for all of them (not ~200 MB each), and every coefficient setting computed once (the runs and the
    subsample are the shared, read-only ones the Patch page uses too)."""
    return _shared_edit(paths, tuple(run_identity(p) for p in paths), tasks)


@st.cache_resource(show_spinner="Preparing the task vectors...", max_entries=8)
def _shared_edit(paths: tuple[str, ...], identities: tuple[str, ...], tasks: tuple[str, ...]):
    from paint_core.app.sessions import edit_session
    return edit_session([shared_run(p) for p in paths], shared_eval_sets(paths[0], tasks), server_runtime())


CLOSED_VOCAB = CACHED_RESULTS_DIR / "closed_vocab"


def closed_vocab_study() -> ClosedVocabResults | None:
    f = CLOSED_VOCAB / "micro-vit" / "study.json"
    if not f.is_file():
        st.info("No closed-vocabulary study yet: `python -m paint_core reproduce` writes "
                "cached_results/closed_vocab/micro-vit/study.json (or `python -m paint_core closed-vocab --help`).")
        return None
    return results_doc(f, "closed-vocab")


def disentanglement_maps(study: ClosedVocabResults) -> dict[str, Disentanglement]:
    maps = {f"{study.model} (closed vocabulary)": study.disentanglement}
    for f in sorted(CLOSED_VOCAB.glob("*_disentanglement.json")):
        found = results_doc(f, "disentanglement")
        if found:
            maps[f"{found.model} (open vocabulary)"] = found
    return maps


def session_addition(tasks: list[str]):
    """The closed-vocabulary addition session over ``tasks``, shared by every browser session: one encoder for all
    of them, each lambda computed once (keyed by the study's files, so a rerun study is loaded anew)."""
    study = CLOSED_VOCAB / "micro-vit"
    identity = "|".join(f"{t}:{file_identity(study / t / 'encoder.safetensors')}:"
                        f"{file_identity(study / t / 'head.safetensors')}" for t in tasks)
    return _shared_addition(tuple(tasks), identity)


@st.cache_resource(show_spinner="Loading the encoder, heads and task vectors...", max_entries=8)
def _shared_addition(tasks: tuple[str, ...], identity: str):
    from paint_core.app.sessions import addition_session
    return addition_session(CLOSED_VOCAB / "micro-vit", tasks, runtime=server_runtime())


def prompt_study() -> PromptUpdateResults | None:
    """A selector of the prompt studies (one per old -> upgraded pair) and the chosen one."""
    files = sorted((CACHED_RESULTS_DIR / "prompts").glob("update*.json"))
    runs = Path.cwd() / "runs"
    files += sorted(runs.glob("**/prompts/*.json")) if runs.is_dir() else []
    if not files:
        st.info("No prompt study yet: `python -m paint_core reproduce` writes cached_results/prompts/update*.json "
                "(or `python -m paint_core prompts --help`).")
        return None
    studies = {}
    for f in files:
        try:
            found = load_results(str(f), "prompt-update", file_identity(f))
        except ResultsKeyError as e:  # a prompt study this version cannot read: say so
            st.error(f"Cannot read {f}: {e}")
            found = None
        except (OSError, ValueError):
            found = None  # not a prompt study (e.g. a weights sidecar in the same folder)
        if found:
            studies[f] = found
    if not studies:
        st.info("No prompt study found (a study JSON has 'old', 'new' and 'rows').")
        return None
    pick = st.selectbox("Model update", list(studies), key="pr_study",
                        format_func=lambda f: f"{studies[f].old} -> {studies[f].new}")
    return studies[pick]


@st.cache_resource(show_spinner="Looking for an example that fools the zero-shot model...", max_entries=16)
def _fooling_example(path: str, identity: str, alpha: float) -> dict | None:
    return answers.fooling_example(_shared_run(path, identity), alpha)


def fooling_example(path: str, alpha: float) -> dict | None:
    """A composed object the zero-shot model gets wrong under a written word and the patch at ``alpha`` fixes."""
    return _fooling_example(path, run_identity(path), round(float(alpha), 2))


@st.cache_data(show_spinner="Measuring which words this model reads...", max_entries=16)
def _run_word_reading(path: str, identity: str) -> dict:
    run = _shared_run(path, identity)
    return answers.word_reading(run.model, run.preprocess, run.tokenizer)


def run_word_reading(path: str) -> dict:
    """Which class words the zero-shot model of the run at ``path`` reads ({rates, costs, summary}: tables of
    ``paint_core.studies.diagnostics``), measured once per run's files and shared by every session."""
    return _run_word_reading(path, run_identity(path))


@st.cache_data(show_spinner="Measuring which words this model reads...", max_entries=8)
def _model_word_reading(name: str, pretrained: str | None, identity: str) -> dict:
    return answers.word_reading(*_shared_model(name, pretrained, identity))


def model_word_reading(name: str, pretrained: str | None) -> dict:
    """``run_word_reading`` for a model opened without a run (``shared_model``'s name and weights)."""
    return _model_word_reading(name, pretrained, weights_identity(pretrained))


@st.cache_resource(show_spinner="Loading the model...", max_entries=4)
def _shared_model(name: str, pretrained: str | None, identity: str):
    from paint_core.models.clip import load_model
    return load_model(name, pretrained)


def check_offered(name: str) -> str:
    """``name`` if this server offers the model (PAINT_MODELS), else a clear refusal."""
    from dashboard.policy import check_model
    return check_model(policy(), name)


def shared_model(name: str, pretrained: str | None):
    """(model, preprocess, tokenizer) of any model this server offers (PAINT_MODELS), shared and read-only."""
    check_offered(name)
    return _shared_model(name, pretrained, weights_identity(pretrained))


def follow_run(path: str, slider_key: str, chosen: float | None, default: float) -> None:
    """When the user switches to another run, its slider starts at that run's chosen alpha (not the old run's
    position). Call before the slider is drawn."""
    seen = f"{slider_key}__run"
    last = st.session_state.get(seen)
    st.session_state[seen] = path
    if last is not None and last != path:
        st.session_state[slider_key] = float(chosen if chosen is not None else default)
