"""theta(alpha) = (1 - alpha) * theta_zeroshot + alpha * theta_finetuned, pure and live.

Every floating-point tensor is interpolated (BatchNorm running statistics included); integer buffers
(e.g. ``num_batches_tracked``) are copied from the zero-shot side, never averaged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .state_dicts import StateDict, check_compatible


class AlphaOutOfRange(ValueError):
    """An alpha outside [0, 1] where extrapolation was not asked for. The message names no way to ask for it:
    only the caller knows whether it has one (the CLI's ``export --extrapolate``; ``sweep`` and the dashboard
    have none), and adds it."""


def check_alpha(alpha: float, allow_extrapolation: bool = False) -> float:
    """alpha in [0, 1] (0 is zero-shot, 1 is fine-tuned); outside only if extrapolation is asked for."""
    alpha = float(alpha)
    if not math.isfinite(alpha):
        raise ValueError(f"alpha must be a finite number, got {alpha}")
    if not allow_extrapolation and not 0.0 <= alpha <= 1.0:
        raise AlphaOutOfRange(f"alpha must be in [0, 1] (0 = zero-shot, 1 = fine-tuned), got {alpha:g}")
    return alpha


def interpolate(theta_zs: StateDict, theta_ft: StateDict, alpha: float,
                allow_extrapolation: bool = False) -> StateDict:
    """A new state dict at ``alpha``; the inputs are not modified."""
    alpha = check_alpha(alpha, allow_extrapolation)
    check_compatible(theta_zs, theta_ft, "zero-shot and fine-tuned state dicts")
    return {k: torch.lerp(z, theta_ft[k], alpha) if z.is_floating_point() else z.clone()
            for k, z in theta_zs.items()}


@dataclass(frozen=True)
class FlatEndpoints:
    """Both endpoints flattened once, one buffer pair per dtype: read-only and shareable, so every Interpolator
    of a run (one per dashboard session) holds only its own live weights, not three copies of the model."""
    groups: tuple[tuple[torch.dtype, tuple[str, ...], torch.Tensor, torch.Tensor], ...]
    fixed: dict  # non-floating tensors (e.g. num_batches_tracked) and floating ones equal at both ends (a frozen
                 # text tower): the zero-shot value at every alpha, never part of the live buffer


def flatten_endpoints(theta_zs: StateDict, theta_ft: StateDict, model: torch.nn.Module) -> FlatEndpoints:
    """``FlatEndpoints`` laid out like ``model``'s floating-point parameters and buffers (dtype and device);
    tensors equal at both ends (PAINT's frozen text tower) are fixed, not interpolated."""
    check_compatible(theta_zs, theta_ft, "zero-shot and fine-tuned state dicts")
    check_compatible(theta_zs, model.state_dict(), "endpoints and model")
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    by_dtype: dict[torch.dtype, list[str]] = {}
    fixed = {}
    for key, t in tensors.items():
        if key not in theta_zs:  # non-persistent buffers are not in the state dict
            continue
        if t.is_floating_point() and not torch.equal(theta_zs[key], theta_ft[key]):
            by_dtype.setdefault(t.dtype, []).append(key)
        else:
            fixed[key] = theta_zs[key]
    groups = []
    with torch.no_grad():
        for dtype, keys in by_dtype.items():
            device = tensors[keys[0]].device
            zs = torch.cat([theta_zs[k].reshape(-1).to(device=device, dtype=dtype) for k in keys])
            ft = torch.cat([theta_ft[k].reshape(-1).to(device=device, dtype=dtype) for k in keys])
            groups.append((dtype, tuple(keys), zs, ft))
    return FlatEndpoints(tuple(groups), fixed)


class Interpolator:
    """Re-interpolates ``model``'s own weights in place: no rebuild, no ``load_state_dict``.

    The endpoints are flattened into one buffer pair per dtype (``FlatEndpoints``, shareable between
    interpolators of the same run), and every floating-point parameter and buffer of the model becomes a view
    into a third flat buffer of its own, so ``set_alpha`` is a single ``torch.lerp(..., out=...)`` per dtype:
    memory-bandwidth bound. The endpoints given are never modified.
    """

    def __init__(self, model: torch.nn.Module, theta_zs: StateDict | None = None, theta_ft: StateDict | None = None,
                 allow_extrapolation: bool = False, endpoints: FlatEndpoints | None = None):
        if endpoints is None:
            if theta_zs is None or theta_ft is None:
                raise ValueError("give the two endpoints (theta_zs, theta_ft) or their FlatEndpoints")
            endpoints = flatten_endpoints(theta_zs, theta_ft, model)
        self.model = model
        self.allow_extrapolation = allow_extrapolation
        self.alpha: float | None = None
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

    def set_alpha(self, alpha: float) -> None:
        """Set every floating-point weight to (1 - alpha) * zero-shot + alpha * fine-tuned."""
        alpha = check_alpha(alpha, self.allow_extrapolation)
        with torch.no_grad():
            for zs, ft, live in self._groups:
                torch.lerp(zs, ft, alpha, out=live)
        self.alpha = alpha
