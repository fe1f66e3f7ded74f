"""Task vectors (Ilharco et al. 2023): tau = theta_finetuned - theta_pretrained, with +, unary -, and * scalar."""
from __future__ import annotations

from typing import Sequence

import torch

from .names import unknown_name
from .state_dicts import StateDict, add_scaled, check_compatible, difference


class TaskVector:
    """Per-key differences of floating-point tensors (integer buffers carry no direction and are skipped).

    ``base`` names the pretrained model the vector was taken from (e.g. "micro-rn-l@<digest>"): vectors of
    different bases are refused even when their shapes agree, since their sum would mean nothing.
    """

    def __init__(self, pretrained: StateDict | None = None, finetuned: StateDict | None = None,
                 vector: StateDict | None = None, base: str | None = None):
        self.base = base
        if vector is not None:
            self.vector = dict(vector)
            return
        if pretrained is None or finetuned is None:
            raise ValueError("TaskVector needs pretrained and finetuned state dicts, or vector=")
        self.vector = difference(finetuned, pretrained)

    def _check(self, other: "TaskVector") -> None:
        if self.base and other.base and self.base != other.base:
            raise ValueError(f"task vectors of different base models: {self.base} vs {other.base}")
        check_compatible(self.vector, other.vector, "task vectors")

    def _new(self, vector: StateDict) -> "TaskVector":
        return TaskVector(vector=vector, base=self.base)

    def __add__(self, other: "TaskVector") -> "TaskVector":
        if not isinstance(other, TaskVector):
            return NotImplemented
        self._check(other)
        return self._new({k: v + other.vector[k] for k, v in self.vector.items()})

    def __radd__(self, other):  # lets sum([tv1, tv2]) work
        return self if other == 0 else self.__add__(other)

    def __neg__(self) -> "TaskVector":
        return self._new({k: -v for k, v in self.vector.items()})

    def __sub__(self, other: "TaskVector") -> "TaskVector":
        return self + (-other)

    def __mul__(self, scale: float) -> "TaskVector":
        if not isinstance(scale, (int, float)):
            return NotImplemented
        return self._new({k: v * float(scale) for k, v in self.vector.items()})

    __rmul__ = __mul__

    def apply_to(self, pretrained: StateDict, scale: float = 1.0) -> StateDict:
        """pretrained + scale * tau for every key of the vector; other tensors are copied unchanged."""
        return add_scaled(pretrained, [(scale, self.vector)])


def apply_vectors(pretrained: StateDict, vectors: Sequence[TaskVector], coefficients: Sequence[float]) -> StateDict:
    """pretrained + sum_i c_i * tau_i, each vector with its own coefficient (vectors of one base model)."""
    if len(vectors) != len(coefficients):
        raise ValueError(f"{len(coefficients)} coefficients for {len(vectors)} task vectors")
    for tv in vectors[1:]:
        vectors[0]._check(tv)
    return add_scaled(pretrained, [(float(c), tv.vector) for tv, c in zip(vectors, coefficients)])


MERGE_METHODS = ("sum", "mean", "ties", "dare")


def _topk_mask(tv: TaskVector, k: float) -> dict[str, torch.Tensor]:
    """Entries of ``tv`` among its top ``k`` percent by magnitude (over the whole vector)."""
    flat = torch.cat([v.abs().reshape(-1).float() for v in tv.vector.values()])
    keep = max(1, int(round(flat.numel() * k / 100)))
    threshold = torch.topk(flat, keep, sorted=False).values.min()
    return {key: v.abs().float() >= threshold for key, v in tv.vector.items()}


def merge(task_vectors: list[TaskVector], method: str = "sum", **params) -> TaskVector:
    """Merge task vectors into one; scale it afterwards with ``apply_to(pretrained, scale)``.

    - "sum": tau_1 + ... + tau_n (task arithmetic); "mean": the sum divided by n.
    - "ties" (param ``k``, percent of entries kept per vector, default 20): trim each vector to its top-k%
      magnitudes, elect per entry the sign of the summed trimmed values, average only the entries that agree.
    - "dare" (params ``p``, drop rate in [0, 1), default 0.9, and ``seed``): drop each entry with probability
      p, rescale the kept ones by 1 / (1 - p), then sum.
    """
    if not task_vectors:
        raise ValueError("merge needs at least one task vector")
    if method not in MERGE_METHODS:
        raise unknown_name("merge method", method, MERGE_METHODS)
    for tv in task_vectors[1:]:
        task_vectors[0]._check(tv)
    keys = list(task_vectors[0].vector)
    if method in ("sum", "mean"):
        total = sum(task_vectors[1:], task_vectors[0])
        return total * (1 / len(task_vectors)) if method == "mean" else total
    if method == "ties":
        k = float(params.get("k", 20))
        if not 0 < k <= 100:
            raise ValueError(f"ties: k is the percent of entries kept, in (0, 100]; got {k}")
        masks = [_topk_mask(tv, k) for tv in task_vectors]
        out = {}
        for key in keys:
            trimmed = torch.stack([tv.vector[key] * m[key] for tv, m in zip(task_vectors, masks)])
            sign = torch.sign(trimmed.sum(0))
            agree = (torch.sign(trimmed) == sign) & (trimmed != 0)
            count = agree.sum(0).clamp(min=1)
            out[key] = (trimmed * agree).sum(0) / count
        return task_vectors[0]._new(out)
    p = float(params.get("p", 0.9))
    if not 0 <= p < 1:
        raise ValueError(f"dare: the drop rate p must be in [0, 1); got {p}")
    gen = torch.Generator().manual_seed(int(params.get("seed", 0)))
    out = {key: torch.zeros_like(task_vectors[0].vector[key]) for key in keys}
    for tv in task_vectors:
        for key in keys:
            keep = torch.rand(tv.vector[key].shape, generator=gen) >= p
            out[key] += tv.vector[key] * keep / (1 - p)
    return task_vectors[0]._new(out)
