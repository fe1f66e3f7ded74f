"""Fine-tune the image encoder on a patch task with the zero-shot head frozen (PAINT's recipe)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..core.state_dicts import StateDict
from . import distributed
from .evaluation import logits
from ..runtime import current_runtime, module_device
from .feed import train_batches
from .training import ProgressFn, adamw, check_not_diverged, cosine_lr, param_groups, train_loop, weights_norm
from ..configs import FinetuneConfig  # noqa: F401 (declared there, torch-free for the CLI)


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
    head = head.detach().to(current_runtime().torch_device)
    return finetune_visual(model, train_set, lambda batch: F.cross_entropy(logits(model, head, batch[0]), batch[1]),
                           cfg, on_progress, progress)


def finetune_visual(model: torch.nn.Module, train_set: Dataset, loss_fn: Callable[[list], torch.Tensor],
                    cfg: FinetuneConfig = FinetuneConfig(), on_progress: ProgressFn | None = None,
                    progress: bool = True) -> StateDict:
    """``finetune`` for any batch layout (multi-task, an encoder under a linear head): ``loss_fn(batch)``."""
    if len(train_set) == 0:
        raise ValueError("the training split is empty")
    runtime = current_runtime()
    world, rank = distributed.world_size(), distributed.rank()
    if cfg.batch_size % world:
        raise ValueError(f"the batch of {cfg.batch_size} cannot be split evenly over {world} processes; "
                         "choose a batch size that is a multiple of the number of processes")
    if (cfg.batch_size // world) % runtime.accum_steps:
        raise ValueError(f"accum_steps must divide the batch of each process: {runtime.accum_steps} for "
                         f"{cfg.batch_size // world} images")
    device = runtime.torch_device
    if module_device(model) != device:
        model.to(device)
    torch.manual_seed(cfg.seed)
    for p in model.parameters():
        p.requires_grad_(False)
    visual = list(model.visual.parameters())
    for p in visual:
        p.requires_grad_(True)
    norm_before = weights_norm(visual)
    opt = adamw(param_groups(model, cfg.weight_decay, only=visual), lr=cfg.lr)
    batches = train_batches(train_set, cfg.batch_size, cfg.seed, rank, world)
    model.eval()
    model.visual.train()
    if not cfg.batchnorm_train:
        set_batchnorm_eval(model.visual)
    tower = model.visual
    if runtime.grad_checkpointing:
        _enable_grad_checkpointing(model)
    if world > 1:
        model.visual = torch.nn.parallel.DistributedDataParallel(
            tower, device_ids=[device.index] if device.type == "cuda" else None)
    if runtime.compile:
        model.visual = torch.compile(model.visual)
    try:
        train_loop(batches, loss_fn, opt, cfg.steps, lambda step: cosine_lr(step, cfg.steps, cfg.lr, cfg.warmup),
                   clip=visual, grad_clip=cfg.grad_clip, on_progress=on_progress, what="finetune",
                   progress=progress and distributed.is_main(), micro_batches=runtime.accum_steps)
    finally:
        model.visual = tower
        if runtime.grad_checkpointing:
            model.set_grad_checkpointing(False)
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    check_not_diverged({k: v for k, v in state.items() if k.startswith("visual.")}, norm_before, what="fine-tuning")
    distributed.check_agreement({k: v for k, v in state.items() if k.startswith("visual.")}, "the fine-tuned weights")
    return state


def _enable_grad_checkpointing(model: torch.nn.Module) -> None:
    from open_clip.modified_resnet import ModifiedResNet
    if isinstance(model.visual, ModifiedResNet):
        raise ValueError("gradient checkpointing is not supported for ResNet image towers (open_clip ignores it "
                         "there); use it with ViT models, or lower --batch-size / raise --accum-steps")
    model.set_grad_checkpointing(True)
