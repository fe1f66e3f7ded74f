"""Every recipe's settings as plain frozen dataclasses, importable without torch.

The CLI builds its options (and ``COMMAND --help``) from these fields and their defaults, so they live apart from
the torch code that uses them: ``paint-core finetune --help`` answers at once, even on a loaded machine. The engine
modules re-export them (``paint_core.engine.finetune.FinetuneConfig`` is this one).
"""
from __future__ import annotations

from dataclasses import dataclass

MAX_ALPHAS = 1001      # most alphas in one grid: 0:1:0.001; each costs one evaluation of every split

# open_clip's names: fp32, amp (float16 autocast with a gradient scaler), amp_bf16 (bfloat16 autocast, no scaler).
PRECISIONS = ("fp32", "amp", "amp_bf16")


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


@dataclass(frozen=True)
class PretrainConfig:
    steps: int = 2500             # the shipped micro CLIPs' recipe
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 150
    corpus_size: int = 200_000     # distinct (image, caption) pairs; steps * batch / corpus_size epochs
    seed: int = 0


@dataclass(frozen=True)
class PromptConfig:
    kind: str = "coop"
    n_ctx: int = 4
    steps: int = 200
    lr: float = 2e-3
    batch_size: int = 32
    distill: float = 1.0     # ContCoOp's weight of 1 - cos(prompted text feature, zero-shot text feature)
    heads: int = 4           # ContCoOp's attention heads
    seed: int = 0


@dataclass(frozen=True)
class EncoderPretrainConfig:
    steps: int = 2000
    batch_size: int = 128
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.05
    seed: int = 0


@dataclass(frozen=True)
class ClosedVocabConfig:
    probe_steps: int = 300
    probe_lr: float = 1e-2
    finetune: FinetuneConfig = FinetuneConfig(steps=300, lr=1e-4, warmup=30)
    lrs: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3)  # fine-tuning learning rates tried; the best on val is kept


@dataclass(frozen=True)
class SearchConfig:
    tolerance: float = 0.01        # PAINT's rule: mean supported val accuracy within 1 point of zero-shot
    budget: int = 60               # cma: plans evaluated on val; adamerging: gradient steps
    sigma: float = 0.15            # cma: initial step size around the best uniform alpha
    seed: int = 0
    unlabeled: int = 512           # adamerging: unlabeled train images of the patch task
    search_lr: float = 0.01        # adamerging: Adam's learning rate on the block coefficients
    search_batch: int = 32         # adamerging: images per gradient step
