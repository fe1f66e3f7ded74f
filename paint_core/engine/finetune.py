"""Fine-tune the image encoder on a patch task with the zero-shot head frozen (PAINT's recipe)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ..core.state_dicts import StateDict
from .evaluation import logits
from .training import ProgressFn, cosine_lr, epochs, param_groups, train_loop


@dataclass(frozen=True)
class FinetuneConfig:
    steps: int = 300
    batch_size: int = 64
    lr: float = 3e-4              # micro models; the paper used 1e-5 for ViT-L/14
    weight_decay: float = 0.1
    warmup: int = 30              # the paper: 500 of ~2,000+ steps
    grad_clip: float = 1.0
    seed: int = 0
    batchnorm_train: bool = False  # False: BatchNorm keeps its running statistics (measured: 3x less damage)


def set_batchnorm_eval(module: torch.nn.Module) -> int:
    """Put every BatchNorm layer in eval mode (running statistics frozen); returns how many."""
    n = 0
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
            n += 1
    return n


def finetune(model: torch.nn.Module, head: torch.Tensor, train_set: Dataset, cfg: FinetuneConfig = FinetuneConfig(),
             on_progress: ProgressFn | None = None, progress: bool = True) -> StateDict:
    """Train ``model.visual`` in place on ``train_set`` and return the model's full state dict (a copy).

    The head and the text tower never change: only image-encoder parameters reach the optimizer.
    ``on_progress`` hears of every step; raising from it cancels (nothing is returned).
    """
    head = head.detach()
    return finetune_visual(model, train_set, lambda batch: F.cross_entropy(logits(model, head, batch[0]), batch[1]),
                           cfg, on_progress, progress)


def finetune_visual(model: torch.nn.Module, train_set: Dataset, loss_fn: Callable[[list], torch.Tensor],
                    cfg: FinetuneConfig = FinetuneConfig(), on_progress: ProgressFn | None = None,
                    progress: bool = True) -> StateDict:
    """``finetune`` for any batch layout (multi-task, an encoder under a linear head): ``loss_fn(batch)``."""
    if len(train_set) == 0:
        raise ValueError("the training split is empty")
    torch.manual_seed(cfg.seed)
    for p in model.parameters():
        p.requires_grad_(False)
    visual = list(model.visual.parameters())
    for p in visual:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay, only=visual), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, generator=gen, drop_last=True)
    if len(loader) == 0:
        loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, generator=gen)
    model.eval()
    model.visual.train()
    if not cfg.batchnorm_train:
        set_batchnorm_eval(model.visual)
    try:
        train_loop(epochs(loader), loss_fn, opt, cfg.steps, lambda step: cosine_lr(step, cfg.steps, cfg.lr, cfg.warmup),
                   clip=visual, grad_clip=cfg.grad_clip, on_progress=on_progress, what="finetune", progress=progress)
    finally:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
