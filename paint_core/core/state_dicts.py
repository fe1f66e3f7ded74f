"""State-dict algebra, written once: compatibility, casting, digests, averages and scaled sums.

``interpolate``, ``TaskVector``, ``merge``, parallel patching and closed-vocabulary task addition all use
these. Pure functions: inputs are never modified.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

import torch


StateDict = dict[str, torch.Tensor]


def check_compatible(reference: StateDict, other: StateDict, what: str = "state dicts") -> None:
    """Raise ``ValueError`` naming the first key whose presence, shape or dtype differs."""
    for key in sorted(set(reference) | set(other)):
        if key not in other:
            raise ValueError(f"{what} differ: key {key!r} is missing from the second one")
        if key not in reference:
            raise ValueError(f"{what} differ: key {key!r} is missing from the first one")
        a, b = reference[key], other[key]
        if a.shape != b.shape:
            raise ValueError(f"{what} differ at {key!r}: shape {tuple(a.shape)} vs {tuple(b.shape)}")
        if a.dtype != b.dtype:
            raise ValueError(f"{what} differ at {key!r}: dtype {a.dtype} vs {b.dtype}")


def cast_like(state: StateDict, reference: StateDict) -> StateDict:
    """Tensors of ``state`` on the device of the same key in ``reference``, floating-point ones also in its dtype
    (for checkpoints stored in float16, or read to the CPU for a model on a GPU); keys absent from
    ``reference`` are left as they are, integer tensors keep their dtype."""
    def like(v: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        if v.is_floating_point() and ref.is_floating_point():
            return v.to(device=ref.device, dtype=ref.dtype)
        return v.to(ref.device)
    return {k: like(v, reference[k]) if k in reference else v for k, v in state.items()}


def state_digest(state: StateDict) -> str:
    """sha256 over keys and tensor bytes: identifies a set of weights (e.g. the zero-shot model of a run)."""
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def difference(minuend: StateDict, subtrahend: StateDict) -> StateDict:
    """``minuend - subtrahend`` on floating-point tensors (integer buffers carry no direction: skipped)."""
    check_compatible(subtrahend, minuend, "state dicts")
    return {k: minuend[k] - s for k, s in subtrahend.items() if s.is_floating_point()}


def add_scaled(base: StateDict, deltas: Sequence[tuple[float, StateDict]]) -> StateDict:
    """base + sum_i c_i * delta_i, per key of ``base``; keys no delta has are copied unchanged.

    Every delta key must be in ``base`` with the same shape (the first offending key is named)."""
    for _, delta in deltas:
        for k, v in delta.items():
            if k not in base:
                raise ValueError(f"key {k!r} is not in the base state dict")
            if v.shape != base[k].shape:
                raise ValueError(f"shape mismatch at {k!r}: {tuple(v.shape)} vs {tuple(base[k].shape)}")
    out = {}
    for k, v in base.items():
        terms = [(float(c), d[k]) for c, d in deltas if k in d]
        out[k] = v + sum(c * t for c, t in terms) if terms else v.clone()
    return out


def average_states(states: Sequence[StateDict]) -> StateDict:
    """The element-wise mean of floating-point tensors (integer buffers must agree and are taken as is)."""
    if not states:
        raise ValueError("give at least one state")
    for s in states[1:]:
        check_compatible(states[0], s, "the averaged state dicts")
    out = {}
    for k, v in states[0].items():
        if v.is_floating_point():
            out[k] = torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype)
        else:
            if any(not torch.equal(s[k], v) for s in states[1:]):
                raise ValueError(f"integer buffer {k!r} differs between the averaged state dicts")
            out[k] = v.clone()
    return out
