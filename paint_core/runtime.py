"""Where and how the engine computes: the device, the precision (open_clip's names) and the data-loading workers.

One ``Runtime`` is current at a time (``use_runtime``); every forward pass, training loop and decode reads it,
so a command sets it once instead of threading a device through every study. ``auto`` picks CUDA when
present and says so; asking for a device that is not there is an error, never a fallback to the CPU.
"""
from __future__ import annotations

import contextlib
import logging
import os
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Iterator

import torch

from .configs import PRECISIONS


log = logging.getLogger(__name__)
PRECISION_WORDS = {"fp32": "float32", "amp": "float16 autocast", "amp_bf16": "bfloat16 autocast"}


@dataclass(frozen=True)
class Runtime:
    """How to compute, never what: a resolved device ("cpu", "cuda:0"), a precision, DataLoader workers for
    image decoding, and for big towers gradient accumulation (micro-batches per step: the same update in less
    memory) and gradient checkpointing; ``compile``: fine-tune through torch.compile. None of these is part of a
    result's inputs."""
    device: str = "cpu"
    precision: str = "fp32"
    workers: int = 0
    accum_steps: int = 1
    grad_checkpointing: bool = False
    compile: bool = False

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)


def resolve_device(spec: str = "auto") -> str:
    """"auto" -> the CUDA device of this process (``LOCAL_RANK`` under torchrun) if there is one, else "cpu";
    "cuda" / "cuda:N" / "mps" / "cpu" are checked and refused with a clear error when absent."""
    spec = (spec or "auto").strip().lower()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if spec == "auto":
        if torch.cuda.is_available():
            return f"cuda:{local % torch.cuda.device_count()}"
        return "cpu"
    if spec == "cpu":
        return "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {spec}: this machine has no CUDA device (torch {torch.__version__}, "
                             f"CUDA build {torch.version.cuda or 'none'}); use --device cpu or auto")
        index = local if spec == "cuda" else _device_index(spec)
        if index >= torch.cuda.device_count():
            raise ValueError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) are visible")
        return f"cuda:{index}"
    if spec == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ValueError("--device mps: Apple's Metal backend is not available here")
        return "mps"
    raise ValueError(f"unknown device {spec!r}; choose auto, cpu, cuda, cuda:N or mps")


def _device_index(spec: str) -> int:
    try:
        return int(spec.split(":", 1)[1])
    except (IndexError, ValueError):
        raise ValueError(f"unknown device {spec!r}; choose auto, cpu, cuda, cuda:N or mps") from None


def make_runtime(device: str = "auto", precision: str = "fp32", workers: int = 0, accum_steps: int = 1,
                 grad_checkpointing: bool = False, compile: bool = False) -> Runtime:
    """A checked ``Runtime``; logs the device chosen, so "auto" never hides where the work runs."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from: {', '.join(PRECISIONS)}")
    if isinstance(workers, bool) or int(workers) < 0:
        raise ValueError(f"workers must be a number >= 0, got {workers}")
    if isinstance(accum_steps, bool) or int(accum_steps) < 1:
        raise ValueError(f"accum_steps must be a number >= 1, got {accum_steps}")
    resolved = resolve_device(device)
    if precision == "amp_bf16" and resolved.startswith("cuda") and not torch.cuda.is_bf16_supported():
        raise ValueError("--precision amp_bf16: this GPU has no bfloat16 support; use amp")
    where = f"{resolved} ({torch.cuda.get_device_name(torch.device(resolved))})" if resolved.startswith("cuda") else resolved
    log.info("computing on %s, precision %s, %d data workers", where, precision, int(workers))
    return Runtime(resolved, precision, int(workers), int(accum_steps), bool(grad_checkpointing), bool(compile))


_CURRENT: ContextVar[Runtime | None] = ContextVar("paint_runtime", default=None)
_default = Runtime()


def current_runtime() -> Runtime:
    """The runtime of this context (``use_runtime``), else the process default (the CPU in fp32)."""
    return _CURRENT.get() or _default


def set_default_runtime(runtime: Runtime) -> None:
    """The runtime of every thread that did not enter ``use_runtime`` (a server's worker threads)."""
    global _default
    _default = runtime


@contextlib.contextmanager
def use_runtime(runtime: Runtime) -> Iterator[Runtime]:
    token = _CURRENT.set(runtime)
    try:
        yield runtime
    finally:
        _CURRENT.reset(token)


def autocast(runtime: Runtime | None = None) -> contextlib.AbstractContextManager:
    """The autocast context of the precision (nothing for fp32), on the runtime's device type."""
    rt = runtime or current_runtime()
    if rt.precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if rt.precision == "amp" else torch.bfloat16
    return torch.autocast(device_type=rt.torch_device.type, dtype=dtype)


def grad_scaler(runtime: Runtime | None = None) -> torch.amp.GradScaler | None:
    """A gradient scaler for float16 autocast ("amp"); bfloat16 and fp32 need none."""
    rt = runtime or current_runtime()
    return torch.amp.GradScaler(rt.torch_device.type) if rt.precision == "amp" else None


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter (the CPU for a module without any)."""
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


def to_device(batch, device: torch.device):
    """Tensors of a (nested) list or tuple moved to ``device``; anything else left as it is."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    return batch
