"""The one registry of merge methods: each declared once, with its parameters (name, type, default, range, help).

The CLI options, the study inputs, the dashboard's widgets and the registry tests are all generated from these
declarations (the idea of mergekit's ``parameters()``), so a new method is one ``Method`` entry in
``MERGE_METHODS`` plus its function, and its defaults cannot drift between the places that use it.
Multi-task patching methods (``studies.multitask_methods.MULTITASK_METHODS``) are declared with the same ``Method``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

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
)}


def merge(task_vectors: list[TaskVector], method: str = "sum", **params: Any) -> TaskVector:
    """Merge task vectors of one base model into one; scale it afterwards with ``apply_to(pretrained, scale)``.

    ``method`` is a name in ``MERGE_METHODS`` and ``params`` its declared parameters (missing ones take their
    declared defaults), e.g. ``merge(tvs, "ties", k=20)``, ``merge(tvs, "dare", p=0.9, seed=0)``.
    """
    if not task_vectors:
        raise ValueError("merge needs at least one task vector")
    m = get_method(MERGE_METHODS, "merge method", method)
    resolved = resolve(m, params)
    for tv in task_vectors[1:]:
        task_vectors[0]._check(tv)
    return m.fn(list(task_vectors), **resolved)
