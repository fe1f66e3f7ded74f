"""Small pieces shared by pretraining and fine-tuning: learning-rate schedule, weight-decay groups, inputs."""
from __future__ import annotations

import math
from typing import Sequence

import torch


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
