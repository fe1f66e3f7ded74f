"""The one training loop, and what every trainer shares: progress reports, the schedule, weight-decay groups.

Fine-tuning, multi-task fine-tuning, closed-vocabulary fine-tuning, CLIP pretraining, encoder pretraining,
prompt learning and linear probes all run through ``train_loop``; they differ only in their batches, loss,
optimizer, schedule and what happens after a step.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch
from tqdm.auto import tqdm

from ..runtime import autocast, current_runtime, grad_scaler, to_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """A long job's report after each unit of work (a step, an alpha, a study row). ``loss`` when training."""
    done: int
    total: int
    what: str
    loss: float | None = None


# The one progress callback: the CLI draws tqdm bars, the dashboard st.progress. Raising from it cancels the job.
ProgressFn = Callable[[Progress], None]


class TrainingDiverged(RuntimeError):
    """The loss or the weights stopped being numbers (or exploded): what training produced is garbage."""


# Weights whose norm grew this many times in one fine-tune have exploded (fine-tuning moves them by a fraction).
DIVERGED_GROWTH = 100.0


def weights_norm(params: Sequence[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of all ``params`` together, on their device (read it once: one host sync)."""
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.detach().float()) for p in params]))


def check_not_diverged(named: dict[str, torch.Tensor], norm_before: torch.Tensor, what: str) -> None:
    """Raise ``TrainingDiverged`` if a tensor of ``named`` holds NaN or inf, or their norm grew more than
    ``DIVERGED_GROWTH``-fold from ``norm_before``. One host sync when all is well."""
    tensors = [v for v in named.values() if v.is_floating_point()]
    finite = torch.stack([torch.isfinite(v).all() for v in tensors])
    if not bool(finite.all()):
        names = [k for k, v in named.items() if v.is_floating_point()]
        bad = [n for n, ok in zip(names, finite.tolist()) if not ok]
        raise TrainingDiverged(f"{what} diverged: {len(bad)} of {len(names)} weight tensors hold NaN or inf "
                               f"(first: {bad[0]!r}); lower the learning rate")
    growth = float(weights_norm(tensors) / norm_before.clamp_min(1e-12))
    if growth > DIVERGED_GROWTH:
        raise TrainingDiverged(f"{what} diverged: the weights' norm grew {growth:.3g}-fold (more than "
                               f"{DIVERGED_GROWTH:g}); lower the learning rate")


# Steps between two reads of the loss on the host. Each read waits for the device to finish the steps queued so
# far; reading every step kept a GPU idle while the host prepared the next step (issue 28).
LOSS_EVERY = 10


def train_loop(batches: Iterable[Any], loss_fn: Callable[[Any], torch.Tensor], optimizer: torch.optim.Optimizer,
               steps: int, lr_at: Callable[[int], float], clip: Sequence[torch.nn.Parameter] | None = None,
               grad_clip: float | None = None, after_step: Callable[[int, torch.Tensor], None] | None = None,
               start: int = 0, on_progress: ProgressFn | None = None, what: str = "train",
               progress: bool = True, micro_batches: int = 1, loss_every: int | None = None) -> list[float]:
    """Steps ``start`` .. ``steps - 1``: set the learning rate, loss on the next batch, backward, clip, step.

    ``batches`` yields one batch per step (it may be endless); each batch is moved to the current runtime's
    device and the loss runs under its autocast (float16 "amp" with a gradient scaler, bfloat16 without);
    ``micro_batches`` > 1 splits every tensor of a batch into that many chunks whose gradients accumulate
    before the step (the same update for a loss that is a mean over independent examples, in less memory).
    ``clip`` are the parameters whose gradient norm is clipped to ``grad_clip``; ``after_step(step, loss)``
    runs after the optimizer with the step's loss as a 0-d tensor on the device (e.g. clamp a temperature, save
    a resumable state). The losses are read on the host every ``loss_every`` steps (default ``LOSS_EVERY``) and
    after the last one (``_read_losses``); progress reports every step, with the latest loss read. Returns the
    losses run.
    """
    if micro_batches < 1:
        raise ValueError(f"accumulation steps must be >= 1, got {micro_batches}")
    loss_every = loss_every or LOSS_EVERY
    runtime = current_runtime()
    device = runtime.torch_device
    scaler = grad_scaler(runtime)
    losses: list[float] = []
    pending: list[torch.Tensor] = []  # losses of the steps since the last read, still on the device
    bar = tqdm(total=steps, initial=start, desc=what, disable=not progress)
    it = iter(batches)
    try:
        for step in range(start, steps):
            for g in optimizer.param_groups:
                g["lr"] = lr_at(step)
            batch = to_device(next(it), device)
            optimizer.zero_grad(set_to_none=True)
            parts = []
            for part, weight in _chunks(batch, micro_batches):
                with autocast(runtime):
                    loss = loss_fn(part) * weight
                (scaler.scale(loss) if scaler is not None else loss).backward()
                parts.append(loss.detach().float())
            if scaler is not None:
                scaler.unscale_(optimizer)
            if grad_clip is not None and clip is not None:
                torch.nn.utils.clip_grad_norm_(clip, grad_clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            pending.append(torch.stack(parts))
            if after_step is not None:
                after_step(step, pending[-1].sum())
            if len(pending) == loss_every or step + 1 == steps:
                read, first = _read_losses(pending), step + 1 - len(pending)
                pending = []
                bad = next((i for i, v in enumerate(read) if not math.isfinite(v)), None)
                if scaler is None and bad is not None:  # (a gradient scaler skips such steps itself)
                    raise TrainingDiverged(f"training diverged: the loss is {read[bad]} at step {first + bad + 1} of "
                                           f"{steps} (learning rate {lr_at(first + bad):.3g}); lower the learning rate")
                losses += read
                bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.3f}")
            bar.update(1)
            if on_progress is not None:
                on_progress(Progress(step + 1, steps, what, losses[-1] if losses else None))
    finally:
        bar.close()
    return losses


def _read_losses(pending: list[torch.Tensor]) -> list[float]:
    """Each pending step's loss as a float (its micro-batches' losses added on the host, in order): one wait
    for the device for all of them."""
    return [sum(parts) for parts in torch.stack(pending).tolist()]


def _chunks(batch: Any, n: int) -> list[tuple[Any, float]]:
    """(micro-batch, its share of the batch): the batch itself for n == 1, else every tensor cut along dim 0."""
    if n == 1:
        return [(batch, 1.0)]
    tensors = [t for t in batch if isinstance(t, torch.Tensor)]
    total = len(tensors[0])
    if n > total:
        raise ValueError(f"{n} accumulation steps for a batch of {total}: use at most one per example")
    parts = [t.tensor_split(n) for t in batch]
    return [(type(batch)(p[i] for p in parts), len(parts[0][i]) / total) for i in range(n)]


def epochs(loader: Iterable[Any]) -> Iterable[Any]:
    """The batches of ``loader`` epoch after epoch (a shuffling loader draws a new order each epoch)."""
    while True:
        yield from loader


def cosine_lr(step: int, total: int, base_lr: float, warmup: int) -> float:
    """Linear warm-up for ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * base_lr * (1 + math.cos(math.pi * min(1.0, progress)))


def adamw(groups: Any, **kwargs) -> torch.optim.AdamW:
    """AdamW, fused into one kernel per step when every parameter is on a CUDA device (else PyTorch's default,
    so CPU runs keep their numbers); a build without the fused kernel falls back to the default, and says so."""
    params = [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]
    if params and all(p.device.type == "cuda" for p in params):
        try:
            return torch.optim.AdamW(groups, fused=True, **kwargs)
        except (RuntimeError, ValueError, TypeError) as e:
            log.warning("fused AdamW unavailable (%s); using the default AdamW", e)
    return torch.optim.AdamW(groups, **kwargs)


def param_groups(model: torch.nn.Module, weight_decay: float, only: Sequence[torch.nn.Parameter] | None = None):
    """Weight decay on matrices and kernels only, never on biases, norms, embeddings' scales or logit_scale."""
    params = [p for p in (only if only is not None else model.parameters()) if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
