"""Task vectors (Ilharco et al. 2023): tau = theta_finetuned - theta_pretrained, with +, unary -, and * scalar."""
from __future__ import annotations

from typing import Sequence

from .blocks import block_of_keys
from .plan import Plan
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

    def apply_to(self, pretrained: StateDict, scale: float | Plan = 1.0) -> StateDict:
        """pretrained + scale * tau for every key of the vector; other tensors are copied unchanged. ``scale`` may
        be a per-block ``Plan``: each key is scaled by its block's coefficient (blocks of ``pretrained``'s keys)."""
        if not isinstance(scale, Plan) or scale.is_uniform:
            return add_scaled(pretrained, [(Plan.of(scale).alpha if isinstance(scale, Plan) else scale, self.vector)])
        blocks = block_of_keys(pretrained)
        outside = [k for k in self.vector if k not in blocks]
        if outside:
            raise ValueError(f"key {outside[0]!r} is not in the base state dict")
        scale.check_blocks(dict.fromkeys(blocks.values()),
                           dict.fromkeys(blocks[k] for k, v in self.vector.items() if v.any()))
        named = dict(scale.blocks)  # blocks left out of the plan have a zero vector (checked above)
        return add_scaled(pretrained, [(1.0, {k: v * named[blocks[k]] for k, v in self.vector.items()
                                              if blocks[k] in named})])


def apply_vectors(pretrained: StateDict, vectors: Sequence[TaskVector], coefficients: Sequence[float]) -> StateDict:
    """pretrained + sum_i c_i * tau_i, each vector with its own coefficient (vectors of one base model)."""
    if len(vectors) != len(coefficients):
        raise ValueError(f"{len(coefficients)} coefficients for {len(vectors)} task vectors")
    for tv in vectors[1:]:
        vectors[0]._check(tv)
    return add_scaled(pretrained, [(float(c), tv.vector) for tv, c in zip(vectors, coefficients)])
