"""theta(alpha) = (1 - alpha) * theta_zeroshot + alpha * theta_finetuned, pure and live.

Every floating-point tensor is interpolated (BatchNorm running statistics included); integer buffers
(e.g. ``num_batches_tracked``) are copied from the zero-shot side, never averaged.
"""
from __future__ import annotations

import math

import torch

from .state_dicts import StateDict, check_compatible


def check_alpha(alpha: float, allow_extrapolation: bool = False) -> float:
    """alpha in [0, 1] (0 is zero-shot, 1 is fine-tuned); outside only if extrapolation is asked for."""
    alpha = float(alpha)
    if not math.isfinite(alpha):
        raise ValueError(f"alpha must be a finite number, got {alpha}")
    if not allow_extrapolation and not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1] (0 = zero-shot, 1 = fine-tuned), got {alpha}; "
                         "pass allow_extrapolation=True (CLI: --extrapolate) to go beyond the endpoints")
    return alpha


def interpolate(theta_zs: StateDict, theta_ft: StateDict, alpha: float,
                allow_extrapolation: bool = False) -> StateDict:
    """A new state dict at ``alpha``; the inputs are not modified."""
    alpha = check_alpha(alpha, allow_extrapolation)
    check_compatible(theta_zs, theta_ft, "zero-shot and fine-tuned state dicts")
    return {k: torch.lerp(z, theta_ft[k], alpha) if z.is_floating_point() else z.clone()
            for k, z in theta_zs.items()}


class Interpolator:
    """Re-interpolates ``model``'s own weights in place: no rebuild, no ``load_state_dict``.

    The endpoints are copied once into one flat buffer per dtype, and every floating-point parameter and
    buffer of the model becomes a view into a third flat buffer, so ``set_alpha`` is a single
    ``torch.lerp(..., out=...)`` per dtype: memory-bandwidth bound. The endpoints given are never modified.
    """

    def __init__(self, model: torch.nn.Module, theta_zs: StateDict, theta_ft: StateDict,
                 allow_extrapolation: bool = False):
        check_compatible(theta_zs, theta_ft, "zero-shot and fine-tuned state dicts")
        check_compatible(theta_zs, model.state_dict(), "endpoints and model")
        self.model = model
        self.allow_extrapolation = allow_extrapolation
        self.alpha: float | None = None
        tensors = dict(model.named_parameters())
        tensors.update(dict(model.named_buffers()))
        by_dtype: dict[torch.dtype, list[str]] = {}
        with torch.no_grad():
            for key, t in tensors.items():
                if key not in theta_zs:  # non-persistent buffers are not in the state dict
                    continue
                if t.is_floating_point():
                    by_dtype.setdefault(t.dtype, []).append(key)
                else:
                    t.copy_(theta_zs[key])
        self._groups = []
        with torch.no_grad():
            for dtype, keys in by_dtype.items():
                zs = torch.cat([theta_zs[k].reshape(-1).to(dtype) for k in keys])
                ft = torch.cat([theta_ft[k].reshape(-1).to(dtype) for k in keys])
                live = torch.empty_like(zs)
                offset = 0
                for k in keys:
                    t = tensors[k]
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
