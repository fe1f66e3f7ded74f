"""The one training loop, and what every trainer shares: progress reports, the schedule, weight-decay groups.

Fine-tuning, multi-task fine-tuning, closed-vocabulary fine-tuning, CLIP pretraining, encoder pretraining,
prompt learning and linear probes all run through ``train_loop``; they differ only in their batches, loss,
optimizer, schedule and what happens after a step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch
from tqdm.auto import tqdm


@dataclass(frozen=True)
class Progress:
    """A long job's report after each unit of work (a step, an alpha, a study row). ``loss`` when training."""
    done: int
    total: int
    what: str
    loss: float | None = None


# The one progress callback: the CLI draws tqdm bars, the dashboard st.progress. Raising from it cancels the job.
ProgressFn = Callable[[Progress], None]


def train_loop(batches: Iterable[Any], loss_fn: Callable[[Any], torch.Tensor], optimizer: torch.optim.Optimizer,
               steps: int, lr_at: Callable[[int], float], clip: Sequence[torch.nn.Parameter] | None = None,
               grad_clip: float | None = None, after_step: Callable[[int, float], None] | None = None,
               start: int = 0, on_progress: ProgressFn | None = None, what: str = "train",
               progress: bool = True) -> list[float]:
    """Steps ``start`` .. ``steps - 1``: set the learning rate, loss on the next batch, backward, clip, step.

    ``batches`` yields one batch per step (it may be endless); ``clip`` are the parameters whose gradient norm
    is clipped to ``grad_clip``; ``after_step(step, loss)`` runs after the optimizer (e.g. clamp a
    temperature, save a resumable state). Returns the losses of the steps run.
    """
    losses: list[float] = []
    bar = tqdm(total=steps, initial=start, desc=what, disable=not progress)
    it = iter(batches)
    try:
        for step in range(start, steps):
            for g in optimizer.param_groups:
                g["lr"] = lr_at(step)
            loss = loss_fn(next(it))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None and clip is not None:
                torch.nn.utils.clip_grad_norm_(clip, grad_clip)
            optimizer.step()
            losses.append(loss.item())
            if after_step is not None:
                after_step(step, losses[-1])
            bar.update(1)
            bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.3f}")
            if on_progress is not None:
                on_progress(Progress(step + 1, steps, what, losses[-1]))
    finally:
        bar.close()
    return losses


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


def param_groups(model: torch.nn.Module, weight_decay: float, only: Sequence[torch.nn.Parameter] | None = None):
    """Weight decay on matrices and kernels only, never on biases, norms, embeddings' scales or logit_scale."""
    params = [p for p in (only if only is not None else model.parameters()) if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def normalize_uint8(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, H, W], exactly ToTensor + Normalize of open_clip's preprocess."""
    x = images.permute(0, 3, 1, 2).float().div_(255)
    m = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - m) / s
