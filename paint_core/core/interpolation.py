"""theta(alpha) = (1 - alpha) * theta_zeroshot + alpha * theta_finetuned, pure and live, with one alpha for the
whole model or one per block of the image tower (a ``Plan``).

Every floating-point tensor is interpolated (BatchNorm running statistics included); integer buffers
(e.g. ``num_batches_tracked``) are copied from the zero-shot side, never averaged.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .blocks import block_of_keys
from .plan import Plan, check_alpha
from .state_dicts import StateDict, check_compatible


def varying_blocks(theta_zs: StateDict, theta_ft: StateDict) -> list[str]:
    """The blocks with at least one floating-point tensor that differs between the endpoints."""
    blocks = block_of_keys(theta_zs)
    return list(dict.fromkeys(blocks[k] for k, z in theta_zs.items()
                              if z.is_floating_point() and not torch.equal(z, theta_ft[k])))


def interpolate(theta_zs: StateDict, theta_ft: StateDict, alpha: float | Plan,
                allow_extrapolation: bool = False) -> StateDict:
    """A new state dict at ``alpha`` (a number or a per-block ``Plan``); the inputs are not modified."""
    plan = Plan.of(alpha).check(allow_extrapolation)
    check_compatible(theta_zs, theta_ft, "zero-shot and fine-tuned state dicts")
    if plan.is_uniform:
        return {k: torch.lerp(z, theta_ft[k], plan.alpha) if z.is_floating_point() else z.clone()
                for k, z in theta_zs.items()}
    blocks = block_of_keys(theta_zs)
    plan.check_blocks(dict.fromkeys(blocks.values()), varying_blocks(theta_zs, theta_ft))
    out = {}
    for k, z in theta_zs.items():
        if not z.is_floating_point():
            out[k] = z.clone()
        elif torch.equal(z, theta_ft[k]):
            out[k] = z.clone()  # equal at both ends: the same at every coefficient, named in the plan or not
        else:
            out[k] = torch.lerp(z, theta_ft[k], plan.coefficient(blocks[k]))
    return out


@dataclass(frozen=True)
class FlatEndpoints:
    """Both endpoints flattened once, one buffer pair per dtype: read-only and shareable, so every Interpolator
    of a run (one per dashboard session) holds only its own live weights, not three copies of the model."""
    groups: tuple[tuple[torch.dtype, tuple[str, ...], torch.Tensor, torch.Tensor], ...]
    fixed: dict  # non-floating tensors (e.g. num_batches_tracked) and floating ones equal at both ends (a frozen
                 # text tower): the zero-shot value at every alpha, never part of the live buffer
    segments: tuple[tuple[tuple[str, int, int], ...], ...] = ()  # per group: (block, start, stop) of the flat
                                                                 # buffer; a group's keys are laid out by block
    block_names: tuple[str, ...] = ()  # every block of the model, in forward order

    @property
    def varying(self) -> tuple[str, ...]:
        """The blocks whose weights differ between the endpoints (the ones a plan moves)."""
        return tuple(dict.fromkeys(b for seg in self.segments for b, _, _ in seg))


def flatten_endpoints(theta_zs: StateDict, theta_ft: StateDict, model: torch.nn.Module) -> FlatEndpoints:
    """``FlatEndpoints`` laid out like ``model``'s floating-point parameters and buffers (dtype and device);
    tensors equal at both ends (PAINT's frozen text tower) are fixed, not interpolated."""
    check_compatible(theta_zs, theta_ft, "zero-shot and fine-tuned state dicts")
    check_compatible(theta_zs, model.state_dict(), "endpoints and model")
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    blocks = block_of_keys(theta_zs)
    names = tuple(dict.fromkeys(blocks.values()))
    rank = {name: i for i, name in enumerate(names)}
    by_dtype: dict[torch.dtype, list[str]] = {}
    fixed = {}
    for key, t in sorted(tensors.items(), key=lambda kv: rank.get(blocks.get(kv[0], ""), -1)):  # stable: by block
        if key not in theta_zs:  # non-persistent buffers are not in the state dict
            continue
        if t.is_floating_point() and not torch.equal(theta_zs[key], theta_ft[key]):
            by_dtype.setdefault(t.dtype, []).append(key)
        else:
            fixed[key] = theta_zs[key]
    groups, segments = [], []
    with torch.no_grad():
        for dtype, keys in by_dtype.items():
            device = tensors[keys[0]].device
            zs = torch.cat([theta_zs[k].reshape(-1).to(device=device, dtype=dtype) for k in keys])
            ft = torch.cat([theta_ft[k].reshape(-1).to(device=device, dtype=dtype) for k in keys])
            groups.append((dtype, tuple(keys), zs, ft))
            spans: dict[str, list[int]] = {}
            offset = 0
            for k in keys:
                span = spans.setdefault(blocks[k], [offset, offset])
                offset += tensors[k].numel()
                span[1] = offset
            segments.append(tuple((b, lo, hi) for b, (lo, hi) in spans.items()))
    return FlatEndpoints(tuple(groups), fixed, tuple(segments), names)


class Interpolator:
    """Re-interpolates ``model``'s own weights in place: no rebuild, no ``load_state_dict``.

    The endpoints are flattened into one buffer pair per dtype (``FlatEndpoints``, shareable between
    interpolators of the same run), and every floating-point parameter and buffer of the model becomes a view
    into a third flat buffer of its own, so ``set_alpha`` is a single ``torch.lerp(..., out=...)`` per dtype:
    memory-bandwidth bound. A per-block plan is one lerp per block on contiguous slices of the same buffers (the
    keys are laid out by block). The endpoints given are never modified.
    """

    def __init__(self, model: torch.nn.Module, theta_zs: StateDict | None = None, theta_ft: StateDict | None = None,
                 allow_extrapolation: bool = False, endpoints: FlatEndpoints | None = None):
        if endpoints is None:
            if theta_zs is None or theta_ft is None:
                raise ValueError("give the two endpoints (theta_zs, theta_ft) or their FlatEndpoints")
            endpoints = flatten_endpoints(theta_zs, theta_ft, model)
        self.model = model
        self.allow_extrapolation = allow_extrapolation
        self.plan: Plan | None = None
        self.endpoints = endpoints
        tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
        missing = [k for _, keys, _, _ in endpoints.groups for k in keys if k not in tensors]
        if missing:
            raise ValueError(f"the endpoints have {missing[0]!r}, which the model does not")
        self._groups = []
        with torch.no_grad():
            for key, value in endpoints.fixed.items():
                if not torch.equal(tensors[key], value.to(tensors[key].device)):  # a shared tensor is left unwritten
                    tensors[key].copy_(value)
            for dtype, keys, zs, ft in endpoints.groups:
                live = torch.empty_like(zs)
                offset = 0
                for k in keys:
                    t = tensors[k]
                    if t.dtype != dtype or t.device != zs.device:
                        raise ValueError(f"{k}: the model has {t.dtype} on {t.device}, the endpoints {dtype} on "
                                         f"{zs.device}; flatten them for this model")
                    n = t.numel()
                    view = live[offset:offset + n].view_as(t)
                    view.copy_(t)
                    t.data = view  # the module now reads its weights from the flat buffer
                    offset += n
                self._groups.append((zs, ft, live))

    @property
    def alpha(self) -> float | None:
        """The uniform alpha the weights hold (None before the first move, or under a per-block plan)."""
        return self.plan.uniform if self.plan is not None else None

    def set_alpha(self, alpha: float) -> None:
        """Set every floating-point weight to (1 - alpha) * zero-shot + alpha * fine-tuned."""
        self.set_plan(Plan.of(check_alpha(alpha, self.allow_extrapolation)))

    def set_plan(self, plan: Plan | float) -> None:
        """Set each block's weights to (1 - c_b) * zero-shot + c_b * fine-tuned; a number is the uniform plan."""
        plan = Plan.of(plan).check(self.allow_extrapolation)
        plan.check_blocks(self.endpoints.block_names, self.endpoints.varying)
        with torch.no_grad():
            for (zs, ft, live), segments in zip(self._groups, self.endpoints.segments or [()] * len(self._groups)):
                if plan.is_uniform:
                    torch.lerp(zs, ft, plan.alpha, out=live)
                    continue
                for block, lo, hi in segments:
                    torch.lerp(zs[lo:hi], ft[lo:hi], plan.coefficient(block), out=live[lo:hi])
        self.plan = plan


def fisher_interpolate(theta_0: StateDict, theta_1: StateDict, fisher_0: StateDict, fisher_1: StateDict,
                       alpha: float, floor: float = 1e-6) -> StateDict:
    """WiSE-FT's Fisher-weighted interpolation: per entry (c0 theta_0 + c1 theta_1) / (c0 + c1) with
    c0 = (1 - alpha) max(F0, floor), c1 = alpha max(F1, floor): an entry that matters more to one model (a larger
    Fisher) leans towards it. Entries without both Fishers (buffers, the text tower) are plainly interpolated;
    alpha 0 and 1 give the endpoints exactly, and equal Fishers give plain interpolation."""
    alpha = check_alpha(alpha)
    if floor <= 0:
        raise ValueError(f"the Fisher floor must be > 0 (it keeps c0 + c1 > 0); got {floor}")
    if alpha in (0.0, 1.0):  # the formula gives the endpoint up to rounding; give it exactly
        return {k: v.clone() for k, v in (theta_0 if alpha == 0.0 else theta_1).items()}
    out = {}
    for key, a in theta_0.items():
        b = theta_1[key]
        if not a.is_floating_point():
            out[key] = a
        elif key in fisher_0 and key in fisher_1:
            c0 = (1 - alpha) * fisher_0[key].to(a.device).float().clamp(min=floor)
            c1 = alpha * fisher_1[key].to(a.device).float().clamp(min=floor)
            out[key] = ((c0 * a.float() + c1 * b.float()) / (c0 + c1)).to(a.dtype)
        else:
            out[key] = torch.lerp(a.float(), b.float(), alpha).to(a.dtype)
    return out
