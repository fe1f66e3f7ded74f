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

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from open_clip.transformer import text_global_pool
from tqdm.auto import tqdm

from .checkpoints import load_checkpoint, save_checkpoint
from .training import Progress, ProgressFn, cosine_lr, train_loop

KINDS = ("coop", "contcoop")
PLACEHOLDER = "X"


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


def token_width(model: nn.Module) -> int:
    return int(model.token_embedding.weight.shape[1])


class PromptLearner(nn.Module):
    """Learnable context for a text tower of token width ``width``; ``text_features`` needs the model."""

    def __init__(self, width: int, cfg: PromptConfig = PromptConfig()):
        super().__init__()
        if cfg.kind not in KINDS:
            raise ValueError(f"unknown prompt kind {cfg.kind!r}; choose from: {', '.join(KINDS)}")
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
    learner = PromptLearner(token_width(model), cfg)
    opt = torch.optim.AdamW(learner.parameters(), lr=cfg.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed)
    scale = model.logit_scale.exp().detach()
    target = zero_shot_head.detach()
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
    return learner.eval()


# ------------------------------------------------------------------------------ the update study
@torch.no_grad()
def prompt_accuracy(learner: PromptLearner | None, model: nn.Module, tokenizer: Callable, classnames: Sequence[str],
                    feats: torch.Tensor, labels: torch.Tensor, zero_shot_head: torch.Tensor | None = None) -> float:
    """Accuracy of the prompted text features (or of the zero-shot head when ``learner`` is None)."""
    text = zero_shot_head if learner is None else learner.text_features(model, tokenizer, classnames)
    return float(((feats @ text.T).argmax(-1) == labels).float().mean())


COMPARISON = ("upgraded zero-shot", "CoOp transferred", "ContCoOp transferred", "CoOp retrained",
              "ContCoOp retrained", "old zero-shot", "CoOp on old", "ContCoOp on old")


def update_study(old: str, new: str, tasks: Sequence[str], shots: Sequence[int] = (1, 4, 16),
                 seeds: Sequence[int] = (0, 1, 2), cfg: PromptConfig = PromptConfig(), pool: int = 600,
                 old_pretrained: str | None = None, new_pretrained: str | None = None, max_eval: int | None = None,
                 on_progress: ProgressFn | None = None) -> list[dict]:
    """Train CoOp and ContCoOp prompts on ``old``, plug them into ``new`` unchanged, and retrain on ``new``.

    Few-shot examples come from the first ``pool`` training images of each task; accuracy is on the test split.
    Returns rows: task, shots, seed, method (see COMPARISON), accuracy.
    """
    from .evaluation import image_features, materialize, zero_shot_head
    from .models import load_model
    from .tasks import get_task

    if not tasks:
        raise ValueError("give at least one task")
    if any(s < 1 for s in shots):
        raise ValueError(f"shots must be at least 1, got {list(shots)}")
    models = {"old": load_model(old, old_pretrained), "new": load_model(new, new_pretrained)}
    w_old, w_new = token_width(models["old"][0]), token_width(models["new"][0])
    if w_old != w_new:
        raise ValueError(f"{old} has token width {w_old} and {new} has {w_new}: prompts cannot move between them")
    rows: list[dict] = []
    bar = tqdm(total=len(tasks) * len(shots) * len(seeds), desc="prompts (task, shots, seed)")
    for task_name in tasks:
        task = get_task(task_name)
        data = {}
        for key, (model, preprocess, tokenizer) in models.items():
            train = materialize(task.split("train", preprocess), pool)
            test = materialize(task.split("test", preprocess), max_eval)
            head = zero_shot_head(model, tokenizer, task.classnames, task.templates)
            data[key] = (image_features(model, train.tensors[0]), train.tensors[1],
                         image_features(model, test.tensors[0]), test.tensors[1], head)
        acc = {}
        for key in ("old", "new"):
            model, _, tokenizer = models[key]
            _, _, fte, yte, head = data[key]
            acc[f"{key} zs"] = prompt_accuracy(None, model, tokenizer, task.classnames, fte, yte, head)
        for n_shots in shots:
            for seed in seeds:
                result = {"upgraded zero-shot": acc["new zs"], "old zero-shot": acc["old zs"]}
                for kind, label in (("coop", "CoOp"), ("contcoop", "ContCoOp")):
                    run_cfg = PromptConfig(**{**asdict(cfg), "kind": kind, "seed": seed})
                    learned = {}
                    for key in ("old", "new"):
                        model, _, tokenizer = models[key]
                        ftr, ytr, _, _, head = data[key]
                        idx = torch.as_tensor(few_shot_indices(ytr.numpy(), n_shots, seed))
                        learned[key] = train_prompt(model, tokenizer, task.classnames, ftr[idx], ytr[idx], head,
                                                    run_cfg, progress=False)
                    m_new, _, tok_new = models["new"]
                    m_old, _, tok_old = models["old"]
                    _, _, fte_new, yte_new, _ = data["new"]
                    _, _, fte_old, yte_old, _ = data["old"]
                    result[f"{label} transferred"] = prompt_accuracy(learned["old"], m_new, tok_new, task.classnames,
                                                                     fte_new, yte_new)
                    result[f"{label} retrained"] = prompt_accuracy(learned["new"], m_new, tok_new, task.classnames,
                                                                   fte_new, yte_new)
                    result[f"{label} on old"] = prompt_accuracy(learned["old"], m_old, tok_old, task.classnames,
                                                                fte_old, yte_old)
                rows += [{"task": task_name, "shots": n_shots, "seed": seed, "method": m, "accuracy": result[m]}
                         for m in COMPARISON]
                bar.update(1)
                if on_progress:
                    on_progress(Progress(bar.n, bar.total, "prompts (task, shots, seed)"))
    bar.close()
    return rows


def weights_input(name: str, pretrained: str | None) -> dict:
    """A model as a study's input: its name, and its weights file's sha256 when it is a local file."""
    from .checkpoints import sha256_file
    from .runs import portable_path
    if pretrained is not None and Path(pretrained).is_file():
        return {"model": name, "pretrained": portable_path(pretrained), "sha256": sha256_file(pretrained)}
    return {"model": name, "pretrained": pretrained}


def update_study_file(out: str | Path, old: str, new: str, tasks: Sequence[str], shots: Sequence[int] = (1, 4, 16),
                      seeds: Sequence[int] = (0, 1, 2), cfg: PromptConfig = PromptConfig(), pool: int = 600,
                      old_pretrained: str | None = None, new_pretrained: str | None = None,
                      max_eval: int | None = None, new_label: str | None = None) -> dict:
    """``update_study`` written to ``out`` as a results file; reused if it was computed from the same inputs."""
    from .results import read_results, resume, write_results
    inputs = {"old": weights_input(old, old_pretrained), "new": weights_input(new, new_pretrained),
              "tasks": list(tasks), "shots": list(shots), "seeds": list(seeds), "config": asdict(cfg),
              "pool": pool, "max_eval": max_eval}
    if resume(out, "prompt-update", inputs):
        return read_results(out, "prompt-update")
    rows = update_study(old, new, tasks, shots, seeds, cfg, pool, old_pretrained, new_pretrained, max_eval)
    return write_results(out, "prompt-update", inputs, {"old": old, "new": new_label or new, "rows": rows})
