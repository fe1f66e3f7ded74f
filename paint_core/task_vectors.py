"""Task vectors (Ilharco et al. 2023): tau = theta_finetuned - theta_pretrained, with +, unary -, and * scalar."""
from __future__ import annotations

import torch

from .checkpoints import StateDict, check_compatible


class TaskVector:
    """Per-key differences of floating-point tensors (integer buffers carry no direction and are skipped)."""

    def __init__(self, pretrained: StateDict | None = None, finetuned: StateDict | None = None,
                 vector: StateDict | None = None):
        if vector is not None:
            self.vector = dict(vector)
            return
        if pretrained is None or finetuned is None:
            raise ValueError("TaskVector needs pretrained and finetuned state dicts, or vector=")
        check_compatible(pretrained, finetuned, "pretrained and finetuned state dicts")
        self.vector = {k: finetuned[k] - p for k, p in pretrained.items() if p.is_floating_point()}

    def _check(self, other: "TaskVector") -> None:
        check_compatible(self.vector, other.vector, "task vectors")

    def __add__(self, other: "TaskVector") -> "TaskVector":
        if not isinstance(other, TaskVector):
            return NotImplemented
        self._check(other)
        return TaskVector(vector={k: v + other.vector[k] for k, v in self.vector.items()})

    def __radd__(self, other):  # lets sum([tv1, tv2]) work
        return self if other == 0 else self.__add__(other)

    def __neg__(self) -> "TaskVector":
        return TaskVector(vector={k: -v for k, v in self.vector.items()})

    def __sub__(self, other: "TaskVector") -> "TaskVector":
        return self + (-other)

    def __mul__(self, scale: float) -> "TaskVector":
        if not isinstance(scale, (int, float)):
            return NotImplemented
        return TaskVector(vector={k: v * float(scale) for k, v in self.vector.items()})

    __rmul__ = __mul__

    def apply_to(self, pretrained: StateDict, scale: float = 1.0) -> StateDict:
        """pretrained + scale * tau for every key of the vector; other tensors are copied unchanged."""
        missing = [k for k in self.vector if k not in pretrained]
        if missing:
            raise ValueError(f"task vector key {missing[0]!r} is not in the pretrained state dict")
        out = {}
        for k, p in pretrained.items():
            if k in self.vector:
                if self.vector[k].shape != p.shape:
                    raise ValueError(f"shape mismatch at {k!r}: {tuple(self.vector[k].shape)} vs {tuple(p.shape)}")
                out[k] = p + scale * self.vector[k]
            else:
                out[k] = p.clone()
        return out

    def norm(self) -> float:
        return float(torch.sqrt(sum((v.double() ** 2).sum() for v in self.vector.values())))
