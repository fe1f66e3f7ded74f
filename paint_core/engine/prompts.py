"""Prompt learning that survives a model update: CoOp vs ContCoOp.

- CoOp (Zhou et al.): ``n_ctx`` learnable vectors in the text encoder's token-embedding space, shared by
  all classes, replace the words of "X X X X {class}." Encoders frozen; cross-entropy on a few-shot split.
- ContCoOp (Wang et al.): the context first attends to the class name's own token embeddings (one
  attention layer, residual), so each class gets its own context computed from the current model's
  embeddings, and training adds a distillation term pulling the prompted text features toward the
  zero-shot ones. When the foundation model is upgraded, the attention layer re-reads the new model's
  embeddings instead of carrying vectors tied to the old space.

A learned prompt is a safetensors file (context, attention weights) with a JSON sidecar; it loads into any
open_clip model whose token width matches, and is refused with both widths named otherwise.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from open_clip.transformer import text_global_pool

from ..core.names import unknown_name
from ..io.checkpoints import load_checkpoint, save_checkpoint
from ..runtime import module_device
from .training import adamw, cosine_lr, train_loop
from ..configs import PromptConfig  # noqa: F401 (declared there, torch-free for the CLI)


KINDS = ("coop", "contcoop")
PLACEHOLDER = "X"


def token_width(model: nn.Module) -> int:
    return int(model.token_embedding.weight.shape[1])


class PromptLearner(nn.Module):
    """Learnable context for a text tower of token width ``width``; ``text_features`` needs the model."""

    def __init__(self, width: int, cfg: PromptConfig = PromptConfig()):
        super().__init__()
        if cfg.kind not in KINDS:
            raise unknown_name("prompt kind", cfg.kind, KINDS)
        self.cfg = cfg
        self.width = width
        g = torch.Generator().manual_seed(cfg.seed)
        self.ctx = nn.Parameter(0.02 * torch.randn(cfg.n_ctx, width, generator=g))
        self.attn = nn.MultiheadAttention(width, cfg.heads, batch_first=True) if cfg.kind == "contcoop" else None

    def check_model(self, model: nn.Module) -> None:
        if token_width(model) != self.width:
            raise ValueError(f"this prompt was learned for token width {self.width}, but the model's token "
                             f"embeddings are {token_width(model)} wide: prompts move only between text towers "
                             "of the same width")

    def _tokens(self, tokenizer: Callable, classnames: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids of "X X X X {name}." and a mask of the class name's own tokens."""
        if not classnames:
            raise ValueError("the class list is empty")
        prefix = " ".join([PLACEHOLDER] * self.cfg.n_ctx)
        ids = tokenizer([f"{prefix} {c}." for c in classnames])
        eot = ids.argmax(-1)
        pos = torch.arange(ids.shape[1])[None]
        name = (pos > self.cfg.n_ctx) & (pos < (eot[:, None] - 1))  # after the context, before "." and EOT
        return ids, name

    def context(self, name_embeddings: torch.Tensor, name_mask: torch.Tensor) -> torch.Tensor:
        """[C, n_ctx, width]: the shared context (CoOp) or the class-conditioned one (ContCoOp)."""
        ctx = self.ctx[None].expand(len(name_embeddings), -1, -1)
        if self.attn is None:
            return ctx
        attended, _ = self.attn(ctx, name_embeddings, name_embeddings, key_padding_mask=~name_mask,
                                need_weights=False)
        return ctx + attended

    def text_features(self, model: nn.Module, tokenizer: Callable, classnames: Sequence[str]) -> torch.Tensor:
        """[C, D] normalized text features of the prompted class names."""
        self.check_model(model)
        ids, name_mask = self._tokens(tokenizer, classnames)
        ids, name_mask = ids.to(self.ctx.device), name_mask.to(self.ctx.device)  # the learner sits by its model
        cast = model.transformer.get_cast_dtype()
        emb = model.token_embedding(ids).to(cast)
        ctx = self.context(emb, name_mask).to(cast)
        x = torch.cat([emb[:, :1], ctx, emb[:, 1 + self.cfg.n_ctx:]], dim=1)
        x = x + model.positional_embedding.to(cast)
        x = model.transformer(x, attn_mask=model.attn_mask)
        x = model.ln_final(x)
        x = text_global_pool(x, ids, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None))
        x = model.text_projection(x) if isinstance(model.text_projection, nn.Linear) else x @ model.text_projection
        return F.normalize(x, dim=-1)


def few_shot_indices(labels: Sequence[int], shots: int, seed: int = 0) -> np.ndarray:
    """``shots`` examples of every class (fewer if a class has fewer), drawn with ``seed``."""
    if shots < 1:
        raise ValueError(f"shots must be at least 1, got {shots}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(labels == c))[:shots] for c in np.unique(labels)]
    return np.sort(np.concatenate(picked))


def train_prompt(model: nn.Module, tokenizer: Callable, classnames: Sequence[str], image_features: torch.Tensor,
                 labels: torch.Tensor, zero_shot_head: torch.Tensor, cfg: PromptConfig = PromptConfig(),
                 progress: bool = True) -> PromptLearner:
    """Learn a prompt with both encoders frozen, from precomputed normalized image features."""
    if len(labels) == 0:
        raise ValueError("no training examples: give at least one shot per class")
    torch.manual_seed(cfg.seed)
    for p in model.parameters():
        p.requires_grad_(False)
    device = module_device(model)  # train_loop puts each batch on the runtime's device, where the model is
    learner = PromptLearner(token_width(model), cfg).to(device)
    opt = adamw(list(learner.parameters()), lr=cfg.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed)
    scale = model.logit_scale.exp().detach()
    target = zero_shot_head.detach().to(device)
    image_features, labels = image_features.to(device), labels.to(device)
    model.eval()

    def batches():
        while True:  # a random few-shot batch per step
            yield torch.randint(0, len(labels), (min(cfg.batch_size, len(labels)),), generator=gen)

    def loss_fn(idx: torch.Tensor) -> torch.Tensor:
        text = learner.text_features(model, tokenizer, classnames)
        loss = F.cross_entropy(scale * image_features[idx] @ text.T, labels[idx])
        if cfg.kind == "contcoop" and cfg.distill:
            loss = loss + cfg.distill * (1 - (text * target).sum(-1)).mean()
        return loss

    train_loop(batches(), loss_fn, opt, cfg.steps, lambda step: cosine_lr(step, cfg.steps, cfg.lr, warmup=0),
               what=f"{cfg.kind} prompt", progress=progress)
    learner.eval()
    return learner


def save_prompt(path: str | Path, learner: PromptLearner, meta: dict | None = None) -> dict:
    state = {k: v.detach() for k, v in learner.state_dict().items()}
    return save_checkpoint(path, state, {**(meta or {}), "prompt": asdict(learner.cfg), "token_width": learner.width})


def load_prompt(path: str | Path, model: nn.Module | None = None) -> PromptLearner:
    """Load a prompt; with ``model``, refuse it unless the model's token width matches."""
    state, sidecar = load_checkpoint(path)
    if "prompt" not in sidecar or "token_width" not in sidecar:
        raise ValueError(f"{path} is not a prompt file (its sidecar has no 'prompt' / 'token_width')")
    learner = PromptLearner(int(sidecar["token_width"]), PromptConfig(**sidecar["prompt"]))
    learner.load_state_dict(state)
    if model is not None:
        learner.check_model(model)
        learner.to(module_device(model))
    return learner.eval()


# ------------------------------------------------------------------------------ the update study
@torch.no_grad()
def prompt_accuracy(learner: PromptLearner | None, model: nn.Module, tokenizer: Callable, classnames: Sequence[str],
                    feats: torch.Tensor, labels: torch.Tensor, zero_shot_head: torch.Tensor | None = None) -> float:
    """Accuracy of the prompted text features (or of the zero-shot head when ``learner`` is None)."""
    text = zero_shot_head if learner is None else learner.text_features(model, tokenizer, classnames)
    return float(((feats.to(text.device) @ text.T).argmax(-1).cpu() == labels.cpu()).float().mean())
