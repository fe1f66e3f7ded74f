"""The one registry of merge methods: each declared once, with its parameters (name, type, default, range, help).

The CLI options, the study inputs, the dashboard's widgets and the registry tests are all generated from these
declarations (the idea of mergekit's ``parameters()``), so a new method is one ``Method`` entry in
``MERGE_METHODS`` plus its function, and its defaults cannot drift between the places that use it.
Multi-task patching methods (``studies.multitask_methods.MULTITASK_METHODS``) are declared with the same ``Method``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Protocol, Sequence

from .names import unknown_name

if TYPE_CHECKING:  # torch-free at import: the CLI's --help lists these methods without paying for torch
    import torch

    from .task_vectors import TaskVector


@dataclass(frozen=True)
class Param:
    """One declared parameter of a method."""
    name: str                     # the keyword of the method's function, the CLI option --<name>
    type: type                    # int or float
    default: float
    help: str                     # reads after "<name> is": "the drop rate"
    low: float | None = None      # None: unbounded below
    high: float | None = None     # None: unbounded above
    low_open: bool = False        # True: low itself is not allowed
    high_open: bool = False
    step: float = 1.0             # the dashboard widget's step
    in_label: bool = True         # shown in a study entry's name ("dare p=0.9"); a seed is not

    def range_text(self) -> str:
        """The allowed range in interval notation, e.g. "[0, 1)"."""
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"  # :g keeps 20.0 as "20"
        return f"{'(' if self.low_open or self.low is None else '['}{lo}, {hi}{')' if self.high_open or self.high is None else ']'}"

    def check(self, method: str, value: Any) -> float:
        """``value`` as this parameter's type, or a ValueError naming the method, the range and the value."""
        bad = ValueError(f"{method}: {self.name} is {self.help}, {'an integer ' if self.type is int else ''}"
                         f"in {self.range_text()}; got {value!r}")
        if isinstance(value, bool):
            raise bad
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise bad from None
        if not math.isfinite(number) or (self.type is int and number != int(number)):
            raise bad
        if self.low is not None and (number < self.low or (self.low_open and number == self.low)):
            raise bad
        if self.high is not None and (number > self.high or (self.high_open and number == self.high)):
            raise bad
        return int(number) if self.type is int else number

    def widget_bounds(self) -> tuple[float | None, float | None]:
        """The closed bounds a widget can offer: an open end moves in by one step."""
        lo = None if self.low is None else self.low + (self.step if self.low_open else 0)
        hi = None if self.high is None else self.high - (self.step if self.high_open else 0)
        if self.type is float:
            lo, hi = (None if v is None else round(v, 10) for v in (lo, hi))
        return lo, hi


@dataclass(frozen=True)
class Method:
    """A method: its function and its declared parameters (the function takes them as keywords)."""
    name: str
    fn: Callable[..., Any]
    help: str                     # one sentence for the CLI's help and the dashboard's caption
    params: tuple[Param, ...] = ()
    learns: bool = False          # learns from data: the function also takes ``data`` (a ``MergeData``)
    scaled: bool = True           # its merged vector is scaled by a lambda chosen on val (False: taken at 1)


class MergeData(Protocol):
    """What a merge that learns from data may ask of the runs whose task vectors it merges (in their order);
    the studies provide it, computing each statistic once per run and caching it on disk."""

    def fishers(self, n: int) -> list[dict[str, torch.Tensor]]:
        """Each fine-tuned model's diagonal Fisher on n train images of its task (``visual.*`` keys)."""

    def grams(self, n: int) -> list[dict[str, torch.Tensor]]:
        """Each fine-tuned model's input Grams of the image tower's linear maps on n train images of its task."""

    def learn_coefficients(self, vectors: list[TaskVector], layerwise: bool, n: int, init: float, steps: int,
                           lr: float) -> list[dict[str, float]]:
        """AdaMerging's coefficients per vector ({block: c}, or {"all": c}) learned on n unlabeled test images
        of each task."""


def get_method(registry: Mapping[str, Method], kind: str, name: str) -> Method:
    """The registered method ``name``; an unknown name is refused with the choices."""
    if name not in registry:
        raise unknown_name(kind, name, registry)
    return registry[name]


def resolve(method: Method, params: Mapping[str, Any]) -> dict[str, float]:
    """Every declared parameter of ``method``: the given values checked, the others at their defaults."""
    declared = {p.name: p for p in method.params}
    for name in params:
        if name not in declared:
            raise unknown_name(f"parameter of {method.name}", name, declared)
    return {p.name: p.check(method.name, params.get(p.name, p.default)) for p in method.params}


def method_inputs(method: Method, params: Mapping[str, Any]) -> dict[str, Any]:
    """A study entry's inputs: the method and every parameter value, so any changed parameter recomputes.
    A method without parameters is named by its entry alone and stores {} (as results files always have)."""
    resolved = resolve(method, params)
    return {"method": method.name, **resolved} if resolved else {}


def method_label(method: Method, params: Mapping[str, Any]) -> str:
    """A study entry's name: the method and its labelled parameters, e.g. "ties k=20", "dare p=0.9"."""
    resolved = resolve(method, params)
    return " ".join([method.name, *(f"{p.name}={resolved[p.name]:g}" for p in method.params if p.in_label)])


def merge_entries(choices: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
    """A study's merges from (method, parameters) pairs: {label: inputs}, e.g. {"ties k=20": {"method": "ties",
    "k": 20.0}}; unknown methods, parameters or values are refused before anything runs."""
    out: dict[str, dict[str, Any]] = {}
    for name, params in choices:
        m = get_method(MERGE_METHODS, "merge method", name)
        out[method_label(m, params)] = method_inputs(m, params)
    return out


def _sum(task_vectors: list[TaskVector]) -> TaskVector:
    return sum(task_vectors[1:], task_vectors[0])


def _mean(task_vectors: list[TaskVector]) -> TaskVector:
    return _sum(task_vectors) * (1 / len(task_vectors))


def _topk_mask(tv: TaskVector, k: float) -> dict[str, torch.Tensor]:
    """Entries of ``tv`` among its top ``k`` percent by magnitude (over the whole vector)."""
    import torch
    flat = torch.cat([v.abs().reshape(-1).float() for v in tv.vector.values()])
    keep = max(1, int(round(flat.numel() * k / 100)))
    threshold = torch.topk(flat, keep, sorted=False).values.min()
    return {key: v.abs().float() >= threshold for key, v in tv.vector.items()}


def _ties(task_vectors: list[TaskVector], k: float) -> TaskVector:
    import torch
    masks = [_topk_mask(tv, k) for tv in task_vectors]
    out = {}
    for key in task_vectors[0].vector:
        trimmed = torch.stack([tv.vector[key] * m[key] for tv, m in zip(task_vectors, masks)])
        sign = torch.sign(trimmed.sum(0))
        agree = (torch.sign(trimmed) == sign) & (trimmed != 0)
        count = agree.sum(0).clamp(min=1)
        out[key] = (trimmed * agree).sum(0) / count
    return task_vectors[0]._new(out)


def _dare(task_vectors: list[TaskVector], p: float, seed: int) -> TaskVector:
    import torch
    gen = torch.Generator().manual_seed(seed)
    keys = list(task_vectors[0].vector)
    out = {key: torch.zeros_like(task_vectors[0].vector[key]) for key in keys}
    for tv in task_vectors:
        for key in keys:
            keep = torch.rand(tv.vector[key].shape, generator=gen) >= p
            out[key] += tv.vector[key] * keep / (1 - p)
    return task_vectors[0]._new(out)


def regmean_layer(weights: Sequence[torch.Tensor], grams: Sequence[torch.Tensor], alpha: float = 1.0) -> torch.Tensor:
    """RegMean (Jin et al. 2023) for one linear layer: the weight whose outputs are closest, in least squares, to
    each model's own outputs on its own inputs.

    ``weights``: torch Linear weights, [out, in] each; ``grams``: each model's input Gram X_i^T X_i, [in, in].
    With in-by-out weights W_i = weights[i].T and G~_i = G_i with its off-diagonal entries times ``alpha`` in
    [0, 1] (1: plain RegMean; 0: diagonal Grams, a per-input weighted mean), W* = (sum G~_i)^-1 sum G~_i W_i.
    Returns W*.T ([out, in], the weights' dtype). Equal Grams give the plain mean.
    """
    import torch
    if not weights or len(weights) != len(grams):
        raise ValueError(f"regmean_layer needs one Gram per weight; got {len(weights)} weights, {len(grams)} Grams")
    if not 0 <= alpha <= 1:
        raise ValueError(f"regmean_layer: alpha scales the off-diagonal Gram entries, in [0, 1]; got {alpha}")
    out_dim, in_dim = weights[0].shape
    for i, (w, g) in enumerate(zip(weights, grams)):
        if tuple(w.shape) != (out_dim, in_dim) or tuple(g.shape) != (in_dim, in_dim):
            raise ValueError(f"regmean_layer: model {i} has weight {tuple(w.shape)} and Gram {tuple(g.shape)}; "
                             f"expected ({out_dim}, {in_dim}) and ({in_dim}, {in_dim})")
    dtype = torch.promote_types(weights[0].dtype, torch.float64)
    scale = torch.full((in_dim, in_dim), float(alpha), dtype=dtype).fill_diagonal_(1.0)
    tilde = [g.to(dtype) * scale for g in grams]
    lhs = sum(tilde[1:], tilde[0])
    rhs = sum(t @ w.to(dtype).T for t, w in zip(tilde, weights))
    return torch.linalg.solve(lhs, rhs).T.to(weights[0].dtype)


def _fisher(task_vectors: list[TaskVector], data: MergeData, n: int, floor: float) -> TaskVector:
    """Fisher merging (Matena & Raffel 2022) of the fine-tuned models theta_i = theta_0 + tau_i: theta* =
    sum F_i theta_i / sum F_i per entry, so tau* = sum F_i tau_i / sum F_i (F_i floored at ``floor``); entries
    without a Fisher (buffers) take the mean."""
    fishers = data.fishers(n)
    out = {}
    for key in task_vectors[0].vector:
        taus = [tv.vector[key] for tv in task_vectors]
        if all(key in f for f in fishers):
            weights = [f[key].to(taus[0].device).clamp(min=floor) for f in fishers]
            out[key] = (sum(w * t.float() for w, t in zip(weights, taus)) / sum(weights)).to(taus[0].dtype)
        else:
            out[key] = sum(taus) / len(taus)
    return task_vectors[0]._new(out)


def _regmean(task_vectors: list[TaskVector], data: MergeData, n: int, offdiag: float) -> TaskVector:
    """RegMean (Jin et al. 2023): every linear map with an input Gram in every run merged by ``regmean_layer``
    (on the task vectors: theta_0's share cancels in the closed form), every other entry the mean."""
    grams = data.grams(n)
    out = {}
    for key in task_vectors[0].vector:
        taus = [tv.vector[key] for tv in task_vectors]
        if all(key in g for g in grams) and taus[0].dim() == 2:
            out[key] = regmean_layer(taus, [g[key] for g in grams], offdiag)
        else:
            out[key] = sum(taus) / len(taus)
    return task_vectors[0]._new(out)


def _learned(layerwise: bool) -> Callable[..., TaskVector]:
    def adamerging(task_vectors: list[TaskVector], data: MergeData, n: int, init: float, steps: int,
                   lr: float) -> TaskVector:
        """AdaMerging (Yang et al. 2024): tau* = sum_i c_i(block) tau_i, the c learned by entropy minimisation."""
        from .blocks import block_of_keys
        coefficients = data.learn_coefficients(task_vectors, layerwise, n, init, steps, lr)
        owner = block_of_keys(task_vectors[0].vector)
        out = {}
        for key in task_vectors[0].vector:
            out[key] = sum(tv.vector[key] * c.get(owner[key] if layerwise else "all", init)
                           for tv, c in zip(task_vectors, coefficients))
        return task_vectors[0]._new(out)
    adamerging.__name__ = "_adamerging" + ("" if layerwise else "_task")
    return adamerging


N_STATISTICS = Param("n", int, 256, "the images per task the statistics are taken on", low=1, high=10_000,
                     step=32, in_label=False)
ADAMERGING = (Param("n", int, 256, "the unlabeled test images per task", low=1, high=10_000, step=32, in_label=False),
              Param("init", float, 0.3, "the coefficients' start (the paper's 0.3)", low=0, high=1, step=0.05),
              Param("steps", int, 100, "the Adam steps", low=1, high=5_000, step=10),
              Param("lr", float, 0.001, "Adam's learning rate (the paper's 1e-3)", low=0, high=1, low_open=True,
                    step=0.001))

MERGE_METHODS: dict[str, Method] = {m.name: m for m in (
    Method("sum", _sum, "tau_1 + ... + tau_n (task arithmetic)"),
    Method("mean", _mean, "the sum divided by n"),
    Method("ties", _ties, "TIES trims each vector to its top-k% entries by magnitude, elects per entry the sign "
           "of the summed trimmed values and averages only the entries that agree",
           (Param("k", float, 20.0, "the percent of entries kept", low=0, high=100, low_open=True),)),
    # p = 0.9: the DARE paper's headline drop rate (Yu et al. 2023, MergeLM); the shipped
    # cached_results hold "dare p=0.9" (seed 0) and, as a second study variant, "dare p=0.5".
    Method("dare", _dare, "DARE drops each entry with probability p, rescales the kept ones by 1 / (1 - p), "
           "then sums",
           (Param("p", float, 0.9, "the drop rate", low=0, high=1, high_open=True, step=0.05),
            Param("seed", int, 0, "the random seed of the drops", low=0, in_label=False))),
    Method("fisher", _fisher, "Fisher merging weighs each entry of each fine-tuned model by its diagonal Fisher "
           "on the model's own task",
           (N_STATISTICS, Param("floor", float, 1e-6, "the least Fisher an entry gets", low=0, high=1,
                                low_open=True, step=1e-6)), learns=True, scaled=False),
    Method("regmean", _regmean, "RegMean solves each linear map for the outputs closest to every model's own on "
           "its own task's inputs (the others: mean)",
           # 0.9, not 1: with fewer input rows than a layer's width (256 images, one attention-pool token) the
           # summed Grams are singular and plain RegMean's solve is not unique; the paper tunes this alpha too
           (N_STATISTICS, Param("offdiag", float, 0.9, "RegMean's scale of the Grams' off-diagonal entries (its "
                                "alpha)", low=0, high=1, step=0.05)), learns=True, scaled=False),
    Method("adamerging", _learned(True), "layer-wise AdaMerging learns one coefficient per block and task vector "
           "by minimising the entropy of predictions on unlabeled test images", ADAMERGING, learns=True,
           scaled=False),
    Method("adamerging_task", _learned(False), "task-wise AdaMerging learns one coefficient per task vector the "
           "same way", ADAMERGING, learns=True, scaled=False),
)}


def merge(task_vectors: list[TaskVector], method: str = "sum", data: MergeData | None = None,
          **params: Any) -> TaskVector:
    """Merge task vectors of one base model into one; scale it afterwards with ``apply_to(pretrained, scale)``.

    ``method`` is a name in ``MERGE_METHODS`` and ``params`` its declared parameters (missing ones take their
    declared defaults), e.g. ``merge(tvs, "ties", k=20)``, ``merge(tvs, "dare", p=0.9, seed=0)``. A method that
    learns from data (fisher, regmean, adamerging) also needs ``data``, the runs behind the vectors
    (``studies.merge_data.RunsData``).
    """
    if not task_vectors:
        raise ValueError("merge needs at least one task vector")
    m = get_method(MERGE_METHODS, "merge method", method)
    resolved = resolve(m, params)
    for tv in task_vectors[1:]:
        task_vectors[0]._check(tv)
    if m.learns:
        if data is None:
            raise ValueError(f"{method} learns from data: give the runs behind the task vectors "
                             "(paint_core.studies.merge_data.RunsData)")
        return m.fn(list(task_vectors), data, **resolved)
    return m.fn(list(task_vectors), **resolved)
