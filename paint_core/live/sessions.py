"""What an interactive front end needs: a per-user live patched model, and side-by-side predictions.

A ``PatchSession`` is one user's alpha. It owns no weights: its predictions come from the run's shared
``PredictionStore``, and when it needs weights at its alpha (a position nobody computed yet, an uploaded image)
it borrows a model from the run's ``ModelPool`` for that call, which re-interpolates it in place with
``Interpolator``. The loaded ``Run`` stays read-only, shared by every user.
"""
from __future__ import annotations

import copy
import queue
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Callable, Iterator, Sequence

import atexit
import pandas as pd
import torch
from PIL import Image

from ..core.interpolation import Interpolator
from ..core.plan import Plan
from ..core.task_vectors import TaskVector, apply_vectors
from ..data.tasks import get_task
from ..engine.evaluation import materialize, predict, zero_shot_head
from ..engine.probes import head_accuracy
from ..models.run import Run, shared_endpoints
from ..runtime import PRECISIONS, Runtime, current_runtime, module_device, use_runtime


# Images per task that a slider move re-evaluates: 100 keeps a move under ~0.3 s on 2 cores for the
# embedded model (benchmarks/slider.py) at 1-point resolution; the cached sweep has the full splits.
LIVE_EVAL_N = 100
SLIDER_STEP = 0.05
SLIDER_ALPHAS = tuple(round(SLIDER_STEP * i, 2) for i in range(int(round(1 / SLIDER_STEP)) + 1))
# an EditSession computes ahead for this long after the last request: a page left open does not keep a core busy
AHEAD_FOR_S = 20.0


def live_runtime(runtime: Runtime | None = None, precision: str = "auto") -> Runtime:
    """The runtime of live (slider) numbers: ``runtime`` (default the current one) in ``precision``. "auto" is
    bfloat16 autocast on a CUDA device (float16 autocast on one without bfloat16) and the runtime's own
    precision elsewhere: a cold move on ViT-B-32 with 1,000 images per task took 336 ms in float32 and 87 ms
    under bfloat16 on an H200 (issue 28). Sweeps keep the run's precision; the live numbers say which they use."""
    rt = runtime or current_runtime()
    if precision == "auto":
        if not rt.device.startswith("cuda"):
            return rt
        precision = "amp_bf16" if torch.cuda.is_bf16_supported() else "amp"
    if precision not in PRECISIONS:
        raise ValueError(f"unknown live precision {precision!r}; choose auto or one of: {', '.join(PRECISIONS)}")
    return replace(rt, precision=precision)


@dataclass(frozen=True)
class EvalSet:
    """A fixed evaluation subsample of one task, preprocessed once, with the task's zero-shot head."""
    task: str
    classnames: tuple[str, ...]
    images: torch.Tensor
    labels: torch.Tensor
    head: torch.Tensor


def build_eval_sets(run: Run, tasks: Sequence[str], n: int = LIVE_EVAL_N, split: str = "test") -> dict[str, EvalSet]:
    """The first ``n`` images of ``split`` of each task, on the run's device (read-only; safe to share between
    sessions)."""
    out = {}
    for name in tasks:
        task = get_task(name, root=run.meta.get("data_root"), download=run.meta.get("download", False))
        ds = materialize(task.split(split, run.preprocess), n)
        head = zero_shot_head(run.model, run.tokenizer, task.classnames, task.templates)
        images = ds.tensors[0].to(module_device(run.model))  # on the GPU with the model: a move copies nothing
        out[name] = EvalSet(name, task.classnames, images, ds.tensors[1], head)
    return out


def subsample_accuracies(probs: dict[str, torch.Tensor], eval_sets: dict[str, EvalSet]) -> dict[str, float]:
    """Exact accuracy (correct / n) per task of predicted probabilities on the evaluation subsamples."""
    return {t: int((p.argmax(-1) == eval_sets[t].labels).sum()) / len(p) for t, p in probs.items()}


class PredictionStore:
    """Subsample predictions per plan (an alpha is the uniform plan) of one run, shared by every session
    (thread-safe).

    The subsample and the weights at a plan never change, so a forward pass made by one session, or by
    the background warm-up, serves every other session: a slider position computed once is a lookup after.
    """

    def __init__(self, runtime: Runtime | None = None) -> None:
        self._lock = threading.Lock()
        self._probs: dict[Plan, dict[str, torch.Tensor]] = {}
        self.warm_seconds: float | None = None  # how long the warm-up took, once it has finished
        self.runtime = runtime or live_runtime()  # every prediction stored here is computed in this runtime

    def get(self, plan: float | Plan) -> dict[str, torch.Tensor] | None:
        with self._lock:
            return self._probs.get(Plan.of(plan))

    def put(self, plan: float | Plan, probs: dict[str, torch.Tensor]) -> None:
        with self._lock:
            self._probs.setdefault(Plan.of(plan), probs)

    def alphas(self) -> list[float]:
        """The uniform plans computed so far, as alphas."""
        with self._lock:
            return sorted(p.uniform for p in self._probs if p.is_uniform)

    def warm(self, run: Run, eval_sets: dict[str, EvalSet], alphas: Sequence[float],
             start: float | None = None) -> threading.Thread:
        """Fill the store for ``alphas`` in a daemon thread with its own model copy, nearest to ``start`` first."""
        order = sorted(alphas, key=lambda a: abs(a - start)) if start is not None else list(alphas)

        def work() -> None:
            t0 = time.perf_counter()
            model, interp = editable_model(run)
            for a in order:
                if _SHUTTING_DOWN.is_set():
                    return
                if self.get(a) is None:
                    interp.set_plan(a)
                    with use_runtime(self.runtime):
                        self.put(a, {t: predict(model, e.head, e.images) for t, e in eval_sets.items()})
            self.warm_seconds = time.perf_counter() - t0

        thread = threading.Thread(target=work, name="paint-warm-up", daemon=True)
        thread.start()
        _track(thread)
        return thread


# A daemon thread still inside torch when the interpreter exits aborts the process ("terminate called
# without an active exception"): at exit, tell warm-ups to stop and wait for the current forward pass.
_SHUTTING_DOWN = threading.Event()
_WARM_THREADS: list[threading.Thread] = []


def _track(thread: threading.Thread) -> None:
    """Remember a background thread that computes (a warm-up, a prefetch worker) until it has ended."""
    _WARM_THREADS[:] = [t for t in _WARM_THREADS if t.is_alive()] + [thread]


@atexit.register
def _stop_warm_ups() -> None:
    _SHUTTING_DOWN.set()
    for thread in _WARM_THREADS:
        thread.join(timeout=30)


def session_model(run: Run) -> torch.nn.Module:
    """A copy of the run's model for one session that shares, read-only, every tensor equal at both endpoints
    (the frozen text tower): a session holds only the weights interpolation changes."""
    fixed = shared_endpoints(run).fixed
    memo = {id(t): t for name, t in [*run.model.named_parameters(), *run.model.named_buffers()]
            if name in fixed and t.is_floating_point()}
    return copy.deepcopy(run.model, memo)


def editable_model(run: Run) -> tuple[torch.nn.Module, Interpolator]:
    """A ``session_model`` and its Interpolator over the run's shared endpoints: weights to move to any alpha."""
    model = session_model(run)
    return model, Interpolator(model, endpoints=shared_endpoints(run))


class ModelPool:
    """At most ``size`` editable copies of a run's model, lent one call at a time at the borrower's alpha.

    Sessions then own no weights (a class of 30 costs the memory of ``size`` models, not 30); the copies are
    made on first need, so a pool nobody borrows from holds nothing. A borrower waits when all are lent.
    """

    def __init__(self, run: Run, size: int = 2):
        if size < 1:
            raise ValueError(f"a model pool needs at least one model, got {size}")
        self.run, self.size = run, size
        self._free: queue.Queue = queue.Queue()
        self._made = 0
        self._lock = threading.Lock()

    @property
    def made(self) -> int:
        return self._made

    @contextmanager
    def borrow(self, plan: float | Plan) -> Iterator[torch.nn.Module]:
        """A model holding theta(``plan``) for the block; never keep it past the block."""
        model, interp = self._take()
        try:
            interp.set_plan(plan)
            yield model
        finally:
            self._free.put((model, interp))

    def _take(self) -> tuple[torch.nn.Module, Interpolator]:
        try:
            return self._free.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._made < self.size:
                self._made += 1
                return editable_model(self.run)
        return self._free.get()


class PatchSession:
    """One user's alpha (or per-block plan) on a run. ``set_alpha`` / ``set_plan`` move it; ``accuracies``
    evaluates the subsample there.

    Predictions come from the shared ``store`` when another session (or the warm-up) made them; otherwise a
    model is borrowed from ``pool`` (default: a private pool of one) and the result shared through the store.
    """

    def __init__(self, run: Run, eval_sets: dict[str, EvalSet], store: PredictionStore | None = None,
                 pool: ModelPool | None = None):
        self.run = run
        self.eval_sets = eval_sets
        self.store = store
        self.pool = pool if pool is not None else ModelPool(run, 1)
        self.runtime = store.runtime if store is not None else live_runtime()  # the store's, so answers agree
        self._plan = Plan.of(0.0)
        self._probs_by_alpha: dict[Plan, dict[str, torch.Tensor]] = {}
        self.zero_shot_probs = self.probabilities()

    @property
    def alpha(self) -> float | None:
        """The session's alpha; None while it holds a per-block plan."""
        return self._plan.uniform

    @property
    def plan(self) -> Plan:
        return self._plan

    def set_alpha(self, alpha: float) -> None:
        self.set_plan(Plan.of(alpha))

    def set_plan(self, plan: Plan | float) -> None:
        self._plan = Plan.of(plan).check()

    @contextmanager
    def patched_model(self) -> Iterator[torch.nn.Module]:
        """The model at this session's alpha, borrowed for the block (for uploads and other images)."""
        with self.pool.borrow(self._plan) as model:
            yield model

    def probabilities(self) -> dict[str, torch.Tensor]:
        """Subsample probabilities at the current alpha; remembered per alpha, so going back to a slider
        position costs nothing (a slider has few positions; the weights at an alpha never change)."""
        alpha = self._plan
        if alpha not in self._probs_by_alpha:
            shared = self.store.get(alpha) if self.store is not None else None
            if shared is None:
                with self.pool.borrow(alpha) as model, use_runtime(self.runtime):
                    shared = {t: predict(model, e.head, e.images) for t, e in self.eval_sets.items()}
                if self.store is not None:
                    self.store.put(alpha, shared)
            self._probs_by_alpha[alpha] = shared
        return self._probs_by_alpha[alpha]

    def accuracies(self, probs: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
        """Subsample accuracy per task of ``probs``, or of the current alpha's probabilities."""
        return subsample_accuracies(self.probabilities() if probs is None else probs, self.eval_sets)

    def along_alpha(self, task: str, index: int, alphas: Sequence[float] = SLIDER_ALPHAS) -> pd.DataFrame:
        """One subsample image's class probabilities at every alpha (rows) and class (columns): the per-image
        story of a patch. Positions the shared store or this session already has are lookups; at the others only
        this image is scored, on a borrowed model. The session's alpha does not move."""
        ev = self.eval_sets[task]
        if not 0 <= index < len(ev.labels):
            raise ValueError(f"sample {index} is not in the {len(ev.labels)}-image subsample of {task}")
        rows = []
        for a in alphas:
            known = self._probs_by_alpha.get(Plan.of(a)) or (self.store.get(a) if self.store is not None else None)
            if known is not None:
                rows.append(known[task][index].numpy())
            else:
                with self.pool.borrow(a) as model, use_runtime(self.runtime):
                    rows.append(predict(model, ev.head, ev.images[index:index + 1])[0].numpy())
        return pd.DataFrame(rows, index=pd.Index([float(a) for a in alphas], name="alpha"), columns=list(ev.classnames))


def per_class_accuracy(probs: torch.Tensor, labels: torch.Tensor, classnames: Sequence[str]) -> pd.DataFrame:
    """Accuracy per true class (e.g. per true count), with the number of images of each."""
    pred = probs.argmax(-1)
    rows = []
    for i, name in enumerate(classnames):
        mask = labels == i
        n = int(mask.sum())
        rows.append({"class": name, "accuracy": int((pred[mask] == i).sum()) / n if n else float("nan"), "n": n})
    return pd.DataFrame(rows)


def compare_predictions(models: dict[str, torch.nn.Module], preprocess: Callable, tokenizer: Callable,
                        image: Image.Image, classnames: Sequence[str], templates: Sequence[str],
                        head_model: torch.nn.Module, top: int = 5) -> pd.DataFrame:
    """Top-``top`` class probabilities of each model for one image, side by side.

    The head comes from ``head_model``'s text tower (the zero-shot head, as in PAINT). Columns:
    rank, then ``<name> class`` and ``<name> prob`` for each model.
    """
    head = zero_shot_head(head_model, tokenizer, classnames, templates)
    return top_predictions(models, head, preprocess(image.convert("RGB")).unsqueeze(0), classnames, top)


def top_predictions(models: dict[str, torch.nn.Module], head: torch.Tensor, x: torch.Tensor,
                    classnames: Sequence[str], top: int = 5) -> pd.DataFrame:
    """``compare_predictions`` with the head and the preprocessed image (a batch of one) given: what a page that
    keeps its head across reruns calls."""
    k = min(top, len(classnames))
    table = {"rank": list(range(1, k + 1))}
    for name, model in models.items():
        p = predict(model, head, x)[0]
        vals, idx = p.topk(k)
        table[f"{name} class"] = [classnames[i] for i in idx.tolist()]
        table[f"{name} prob"] = [round(float(v), 4) for v in vals]
    return pd.DataFrame(table)


def parse_classnames(text: str) -> list[str]:
    """One class per line or comma-separated; refuses an empty list and duplicates with a clear message."""
    parts = [p.strip() for chunk in text.splitlines() for p in chunk.split(",")]
    names = [p for p in parts if p]
    if not names:
        raise ValueError("the class list is empty: write at least two class names, one per line")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate class names: {', '.join(dupes)}")
    return names


# (task vectors in page order, method, one coefficient per vector, the method's parameters) -> the merged vector;
# the application layer gives one that knows the runs behind the vectors (the merges that learn from data)
MergeFn = Callable[..., TaskVector]


class EditSession:
    """A live task-arithmetic model: theta_zs + merge(c_i * tau_i), re-evaluated on a subsample.

    ``vectors`` (task -> tau) must share ``base``'s zero-shot model (read-only, shared). One session may serve every
    user of a page: it holds one working copy of the weights, used under a lock, and remembers accuracies per
    (coefficients, method, params), like ``PatchSession`` per alpha, so a setting one user computed is a lookup for
    the others. Every forward pass runs in ``runtime`` (default: the current one when the session is made).
    """

    def __init__(self, base: Run, vectors: dict[str, TaskVector], eval_sets: dict[str, EvalSet], merge: MergeFn,
                 runtime: Runtime | None = None):
        if not vectors:
            raise ValueError("give at least one run (one task vector each)")
        self.model = copy.deepcopy(base.model)
        self.theta_zs = base.theta_zs
        self.vectors = dict(vectors)
        self.merge = merge
        self.eval_sets = eval_sets
        self.runtime = runtime or current_runtime()
        self._cache: dict[tuple, dict[str, float]] = {}
        self._lock = threading.Lock()  # the one working copy of the weights, one computation at a time
        self._ahead: list[tuple[dict[str, float], str, dict]] = []  # settings to compute when idle, next first
        self._asked_at = 0.0  # time.monotonic() of the last prefetch request
        self._wake = threading.Condition()
        self._worker: threading.Thread | None = None
        self.zero_shot = self.accuracies({t: 0.0 for t in self.vectors}, "sum")

    def state(self, coefficients: dict[str, float], method: str = "sum", **params) -> dict[str, torch.Tensor]:
        names = list(self.vectors)
        tau = self.merge([self.vectors[n] for n in names], method, [coefficients.get(n, 0.0) for n in names], **params)
        return tau.apply_to(self.theta_zs, 1.0)

    def _key(self, coefficients: dict[str, float], method: str, params: dict) -> tuple:
        return (tuple(round(float(coefficients.get(n, 0.0)), 4) for n in self.vectors), method,
                tuple(sorted(params.items())))

    def knows(self, coefficients: dict[str, float], method: str = "sum", **params) -> bool:
        """Whether these accuracies were computed already (a merge that learns is computed only when asked)."""
        return self._key(coefficients, method, params) in self._cache

    def computed(self, method: str = "sum", **params) -> dict[tuple[float, ...], dict[str, float]]:
        """Every setting computed so far with this method and params: coefficients (in the vectors' order, rounded
        as the cache keys them) -> accuracies. What a browser can draw without asking again."""
        tail = (method, tuple(sorted(params.items())))
        return {key[0]: acc for key, acc in list(self._cache.items()) if key[1:] == tail}

    def accuracies(self, coefficients: dict[str, float], method: str = "sum", **params) -> dict[str, float]:
        key = self._key(coefficients, method, params)
        if key not in self._cache:
            with self._lock:
                if key not in self._cache:  # another user may have computed it while this one waited
                    with use_runtime(self.runtime):
                        self.model.load_state_dict(self.state(coefficients, method, **params))
                        probs = {t: predict(self.model, e.head, e.images) for t, e in self.eval_sets.items()}
                    self._cache[key] = subsample_accuracies(probs, self.eval_sets)
        return self._cache[key]

    def prefetch(self, settings: Sequence[dict[str, float]], method: str = "sum", **params) -> None:
        """Compute ``settings`` (the likely next moves, e.g. ``slider_neighbours``) in a background thread, in
        order, replacing any earlier list: a class moving a slider one step finds the answer computed. A request
        waits at most for the one setting being computed (both take the session's lock). The list is dropped
        ``AHEAD_FOR_S`` after the last request."""
        with self._wake:
            self._asked_at = time.monotonic()
            self._ahead = [(dict(c), method, dict(params)) for c in settings
                           if not self.knows(c, method, **params)]
            if self._worker is None:
                self._worker = threading.Thread(target=self._compute_ahead, name="paint-prefetch", daemon=True)
                self._worker.start()
                _track(self._worker)
            self._wake.notify()

    def _compute_ahead(self) -> None:
        """The prefetch worker: computes the queued settings, then ends once the queue has stayed empty for a
        second or nobody has asked for ``AHEAD_FOR_S`` (an idle session holds no thread, and a session dropped
        from a cache is not kept alive by one)."""
        while not _SHUTTING_DOWN.is_set():
            with self._wake:
                if time.monotonic() - self._asked_at > AHEAD_FOR_S:
                    self._ahead = []
                if not self._ahead:
                    self._wake.wait(timeout=1.0)
                if not self._ahead or _SHUTTING_DOWN.is_set():
                    self._worker = None  # the next prefetch starts a new worker
                    return
                coefficients, method, params = self._ahead.pop(0)
            try:
                self.accuracies(coefficients, method, **params)
            except Exception:  # noqa: BLE001 (a guess that fails is left for the user's own request to report)
                continue


def slider_neighbours(values: dict[str, float], step: float, lo: float, hi: float,
                      reach: int = 1) -> list[dict[str, float]]:
    """The settings up to ``reach`` slider steps away from ``values`` along one slider, nearest first (at each
    distance each slider up, then down), within [lo, hi]."""
    out = []
    for distance in range(1, reach + 1):
        for sign in (1, -1):
            for name, v in values.items():
                moved = round(v + sign * distance * step, 4)
                if lo - 1e-9 <= moved <= hi + 1e-9:
                    out.append({**values, name: moved})
    return out


class AdditionSession:
    """A live closed-vocabulary task addition: encoder theta_pre + lambda * sum(tau_t), each task's own head.

    ``taus`` are the tasks' encoder task vectors from ``encoder``'s current weights (theta_pre); ``data`` holds each
    task's evaluation (images, labels). Like ``EditSession``, one session serves every user of a page: the encoder is
    the one working copy, used under a lock, and each lambda is computed once. Every forward pass runs in ``runtime``
    (default: the current one when the session is made).
    """

    def __init__(self, encoder: torch.nn.Module, heads: dict[str, torch.nn.Module], taus: Sequence[TaskVector],
                 data: dict[str, tuple[torch.Tensor, torch.Tensor]], runtime: Runtime | None = None):
        if len(taus) != len(heads) or set(data) != set(heads):
            raise ValueError(f"one head, task vector and evaluation set per task; got {len(heads)} heads, "
                             f"{len(taus)} task vectors and data for {sorted(data)}")
        self.tasks = list(heads)
        self.encoder = encoder
        self.theta_pre = {k: v.clone() for k, v in encoder.state_dict().items()}
        self.heads, self.taus, self.data = heads, list(taus), data
        self.runtime = runtime or current_runtime()
        self._cache: dict[float, dict[str, float]] = {}
        self._lock = threading.Lock()  # the one working copy of the encoder, one computation at a time

    def accuracies(self, lam: float) -> dict[str, float]:
        lam = round(float(lam), 4)
        if lam not in self._cache:
            with self._lock:
                if lam not in self._cache:  # another user may have computed it while this one waited
                    self.encoder.load_state_dict(apply_vectors(self.theta_pre, self.taus, [lam] * len(self.taus)))
                    with use_runtime(self.runtime):
                        self._cache[lam] = {t: head_accuracy(self.encoder, self.heads[t], *self.data[t])
                                            for t in self.tasks}
        return self._cache[lam]
