"""Every recipe's settings as plain frozen dataclasses, importable without torch.

The CLI builds its options (and ``COMMAND --help``) from these fields and their defaults, so they live apart from
the torch code that uses them: ``paint-core finetune --help`` answers at once, even on a loaded machine. The engine
modules re-export them (``paint_core.engine.finetune.FinetuneConfig`` is this one).

A field's ``#:`` comment, on its line or on the lines just above it, is its ``--help`` text (``field_docs``), so the
meaning of a setting is written once, beside it; a plain ``#`` comment is a note for readers of the code only.
tests/test_cli.py fails for a field without one.
"""
from __future__ import annotations

import ast
import functools
import inspect
import textwrap
import tokenize
from dataclasses import dataclass, fields
from io import StringIO

MAX_ALPHAS = 1001      # most alphas in one grid: 0:1:0.001; each costs one evaluation of every split

# open_clip's names: fp32, amp (float16 autocast with a gradient scaler), amp_bf16 (bfloat16 autocast, no scaler).
PRECISIONS = ("fp32", "amp", "amp_bf16")


@dataclass(frozen=True)
class FinetuneConfig:
    steps: int = 300              #: optimizer steps
    batch_size: int = 64          #: images per step
    # micro models; the paper used 1e-5 for ViT-L/14
    lr: float = 3e-4              #: peak learning rate (cosine schedule)
    weight_decay: float = 0.1     #: AdamW weight decay on matrices and kernels
    warmup: int = 30              #: linear warm-up steps
    grad_clip: float = 1.0        #: gradient-norm clip
    seed: int = 0                 #: random seed (data order, initialisation)
    # off: BatchNorm keeps its running statistics (measured: 3x less damage)
    batchnorm_train: bool = False  #: let BatchNorm update its running statistics while fine-tuning


@dataclass(frozen=True)
class PretrainConfig:
    steps: int = 2500             #: optimizer steps
    batch_size: int = 128         #: images per step
    lr: float = 1e-3              #: peak learning rate (cosine schedule)
    weight_decay: float = 0.1     #: AdamW weight decay on matrices and kernels
    warmup: int = 150             #: linear warm-up steps
    # steps * batch / corpus_size epochs; the defaults are the shipped micro CLIPs' recipe
    corpus_size: int = 200_000    #: distinct (image, caption) pairs drawn from the procedural world
    seed: int = 0                 #: random seed (data order, initialisation)
    # 0: the CLIP loss alone (every shipped model)
    #: weight of a loss holding each neutral twin's image embedding to that of its object drawn without the word
    #: (1 - cosine; issue 32: ink that names no class should leave the image where it was); needs --word-pairs and
    #: --neutral-twins
    neutral_hold: float = 0.0


@dataclass(frozen=True)
class PromptConfig:
    kind: str = "coop"       #: coop (learned context tokens) or contcoop (CoOp kept near the zero-shot text features)
    n_ctx: int = 4           #: learned context tokens in the prompt
    steps: int = 200         #: optimizer steps
    lr: float = 2e-3         #: peak learning rate (cosine schedule)
    batch_size: int = 32     #: images per step
    # ContCoOp's loss adds distill * (1 - cos(prompted text feature, zero-shot text feature))
    distill: float = 1.0     #: ContCoOp: weight of the pull towards the zero-shot text features
    heads: int = 4           #: ContCoOp: attention heads
    seed: int = 0            #: random seed (data order, initialisation)


@dataclass(frozen=True)
class EncoderPretrainConfig:
    steps: int = 2000             #: optimizer steps
    batch_size: int = 128         #: images per step
    lr: float = 1e-3              #: peak learning rate (cosine schedule)
    warmup: int = 100             #: linear warm-up steps
    weight_decay: float = 0.05    #: AdamW weight decay on matrices and kernels
    seed: int = 0                 #: random seed (data order, initialisation)


@dataclass(frozen=True)
class ClosedVocabConfig:
    probe_steps: int = 300        #: optimizer steps of each linear probe
    probe_lr: float = 1e-2        #: learning rate of the linear probes
    #: the fine-tuning recipe of each task's encoder (its lr: the first of ``lrs``)
    finetune: FinetuneConfig = FinetuneConfig(steps=300, lr=1e-4, warmup=30)
    lrs: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3)  #: fine-tuning learning rates tried; the best on val is kept


@dataclass(frozen=True)
class SearchConfig:
    # PAINT's rule: the mean supported val accuracy stays within 1 point of zero-shot
    tolerance: float = 0.01        #: largest drop of the mean supported val accuracy from zero-shot (0.01 = 1 point)
    budget: int = 60               #: cma: plans evaluated on val; adamerging: gradient steps
    sigma: float = 0.15            #: cma: initial step size of the coefficients around the best uniform alpha
    seed: int = 0                  #: random seed (data order, initialisation)
    unlabeled: int = 512           #: adamerging: unlabeled train images of the patch task
    search_lr: float = 0.01        #: adamerging: Adam's learning rate on the block coefficients
    search_batch: int = 32         #: adamerging: images per gradient step


@functools.lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """Each field of the dataclass ``cls`` that has a ``#:`` comment: its text (the comment on the field's line, else
    the ``#:`` lines just above it, joined). Read from the source, so the help cannot drift from the field; without
    source (a frozen build) {}: the options then have no help, and nothing fails."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    trailing = {tok.start[0]: tok.string for tok in tokenize.generate_tokens(StringIO(source).readline)
                if tok.type == tokenize.COMMENT and lines[tok.start[0] - 1][:tok.start[1]].strip()}
    body = ast.parse(source).body[0].body
    field_lines = {node.target.id: node.lineno for node in body
                   if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)}
    docs = {}
    for f in fields(cls):
        row = field_lines.get(f.name)
        if row is None:
            continue
        if trailing.get(row, "").startswith("#:"):
            docs[f.name] = trailing[row][2:].strip()
            continue
        above = []
        while row > 1 and lines[row - 2].strip().startswith("#:"):
            row -= 1
            above.insert(0, lines[row - 1].strip()[2:].strip())
        if above:
            docs[f.name] = " ".join(above)
    return docs
