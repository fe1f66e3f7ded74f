"""Contrastive pretraining of an embedded micro CLIP on the world's corpus (CLIP loss, AdamW, cosine).

Resumable: a training state is written atomically every ``save_every`` steps and picked up on re-run.
"""
from __future__ import annotations

import logging
import math
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from ..data import corpus as corpus_mod
from ..data.decoded import normalize_uint8
from ..io.atomic import atomic_path
from ..io.checkpoints import read_sidecar, save_checkpoint
from ..models.clip import register_embedded_configs
from ..runtime import current_runtime
from .training import ProgressFn, adamw, cosine_lr, param_groups, train_loop
from ..configs import PretrainConfig  # noqa: F401 (declared there, torch-free for the CLI)


log = logging.getLogger(__name__)


def _resized(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 [n, s, s, 3] images at ``size`` x ``size`` (bicubic, as the corpus has always been resized)."""
    if size == images.shape[1]:
        return images
    if not len(images):
        return np.empty((0, size, size, 3), np.uint8)
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BICUBIC)) for im in images])


def _corpus_chunk(args: tuple[int, int, int, corpus_mod.CorpusConfig, bool]
                  ) -> tuple[np.ndarray, list[str], corpus_mod.CleanTwins]:
    n, seed, size, cfg, keep_clean = args
    if keep_clean:
        images, captions, clean = corpus_mod.make_corpus_with_clean(n, seed, cfg)
    else:
        (images, captions), clean = corpus_mod.make_corpus(n, seed, cfg), corpus_mod.CleanTwins.none(size)
    return _resized(images, size), captions, corpus_mod.CleanTwins(clean.index, _resized(clean.images, size))


def build_corpus(n: int, seed: int, image_size: int, workers: int = 2, chunk: int = 5000,
                 cfg: corpus_mod.CorpusConfig = corpus_mod.CorpusConfig(), keep_clean: bool = False
                 ) -> tuple[np.ndarray, list[str], corpus_mod.CleanTwins]:
    """The corpus at the model's resolution, generated in ``workers`` processes (deterministic per chunk), and
    with ``keep_clean`` each neutral twin's object without its word (positions in the whole corpus)."""
    jobs = [(min(chunk, n - i), seed * 1_000_003 + i // chunk, image_size, cfg, keep_clean) for i in range(0, n, chunk)]
    images, captions, index, clean = [], [], [], []
    with ProcessPoolExecutor(workers) as pool, tqdm(total=n, desc="corpus", unit="img") as bar:
        for ims, caps, twins in pool.map(_corpus_chunk, jobs):
            index.append(twins.index + len(captions))
            clean.append(twins.images)
            images.append(ims)
            captions.extend(caps)
            bar.update(len(caps))
    return np.concatenate(images), captions, corpus_mod.CleanTwins(np.concatenate(index), np.concatenate(clean))


def clip_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over a batch whose i-th image and i-th caption belong together."""
    logits = logit_scale * image_features @ text_features.T
    labels = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def hold_loss(word_features: torch.Tensor, clean_features: torch.Tensor) -> torch.Tensor:
    """Mean 1 - cosine between each neutral twin's (normalised) embedding and its object's without the word."""
    return (1 - (word_features * clean_features).sum(-1)).mean()


def _check_hold(cfg: PretrainConfig, corpus: corpus_mod.CorpusConfig) -> None:
    if cfg.neutral_hold < 0:
        raise ValueError(f"neutral_hold is a loss weight: it must be >= 0, got {cfg.neutral_hold}")
    if cfg.neutral_hold > 0 and not corpus_mod.has_neutral_twins(corpus):
        raise ValueError("neutral_hold holds neutral twins to their object: it needs word_pairs and neutral_twins > 0")


def pretrain(model_name: str, out: str | Path, cfg: PretrainConfig = PretrainConfig(), save_every: int = 250,
             command: str | None = None, on_progress: ProgressFn | None = None,
             storage_dtype: torch.dtype | None = torch.float16, init_from: str | Path | None = None,
             out_name: str | None = None, corpus: corpus_mod.CorpusConfig = corpus_mod.CorpusConfig()) -> Path:
    """Train ``model_name`` from scratch (or continue from the weights file ``init_from``); writes
    ``out/<out_name or model_name>.safetensors`` and returns its path.

    The weights are stored in ``storage_dtype`` (float16 by default: the shipped models are half the size;
    loading casts them back to float32, and every result is computed from the stored weights)."""
    register_embedded_configs()
    torch.manual_seed(cfg.seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=None)
    if init_from is not None:
        from ..models.clip import load_weights_file
        load_weights_file(model, init_from, model_name)
    model.to(current_runtime().torch_device)
    out_name = out_name or model_name
    tokenizer = open_clip.get_tokenizer(model_name)
    image_size = model.visual.image_size if isinstance(model.visual.image_size, int) else model.visual.image_size[0]
    corpus_mod.corpus_mix(corpus)  # a bad share fails before the corpus is built
    _check_hold(cfg, corpus)
    images, captions, clean = build_corpus(cfg.corpus_size, cfg.seed, image_size, cfg=corpus,
                                           keep_clean=cfg.neutral_hold > 0)
    clean_of = np.full(len(images), -1, dtype=np.int64)  # each image's row in clean.images, -1 for none
    clean_of[clean.index] = np.arange(len(clean.index))
    tokens = tokenizer(captions)
    mean, std = preprocess.transforms[-1].mean, preprocess.transforms[-1].std
    opt = adamw(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    state_path = out / f"{out_name}.train_state.pt"
    start, losses = 0, []
    if state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        recipe = {"config": asdict(cfg), "corpus": asdict(corpus)}
        if _with_defaults(state.get("recipe", recipe)) != recipe:
            raise ValueError(f"{state_path} is a pretraining with another recipe ({state['recipe']}); "
                             "delete it or use another --name")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, losses = int(state["step"]), list(state["losses"])
        log.info("resuming %s pretraining at step %d", model_name, start)
    rng = np.random.default_rng(cfg.seed)
    rounds = math.ceil(cfg.steps * cfg.batch_size / len(images)) + 1
    if corpus.word_pairs:  # shuffle twins as blocks, so both halves of a pair land in the same batch
        blocks = len(images) // 2
        order = np.concatenate([(2 * rng.permutation(blocks))[:, None] + np.arange(2) for _ in range(rounds)]).ravel()
    else:
        order = np.concatenate([rng.permutation(len(images)) for _ in range(rounds)])
    model.train()

    def batches():
        for step in range(start, cfg.steps):
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            batch = normalize_uint8(torch.from_numpy(images[idx]), mean, std), tokens[idx]
            if cfg.neutral_hold > 0:
                held = np.flatnonzero(clean_of[idx] >= 0)
                batch += (torch.from_numpy(held),
                          normalize_uint8(torch.from_numpy(clean.images[clean_of[idx[held]]]), mean, std))
            yield batch

    def loss_fn(batch) -> torch.Tensor:
        # open_clip's forward, written out so that the clean objects share the image pass (and its BatchNorm
        # statistics: a separate pass would compare features normalised two ways)
        batch_images, batch_tokens, *hold = batch
        held, clean_images = hold or (None, batch_images[:0])
        features = model.encode_image(torch.cat([batch_images, clean_images]), normalize=True)
        image_features = features[:len(batch_images)]
        loss = clip_loss(image_features, model.encode_text(batch_tokens, normalize=True), model.logit_scale.exp())
        if held is not None and len(held):
            loss = loss + cfg.neutral_hold * hold_loss(image_features[held], features[len(batch_images):].detach())
        return loss

    so_far: list = list(losses)  # resumed losses, then this run's as tensors on the device until a save reads them

    def after_step(step: int, loss: torch.Tensor) -> None:
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        so_far.append(loss)
        if (step + 1) % save_every == 0 and step + 1 < cfg.steps:
            _save_state(state_path, model, opt, step + 1, [float(v) for v in so_far],
                        {"config": asdict(cfg), "corpus": asdict(corpus)})

    losses += train_loop(batches(), loss_fn, opt, cfg.steps, lambda step: cosine_lr(step, cfg.steps, cfg.lr, cfg.warmup),
                         clip=list(model.parameters()), grad_clip=1.0, after_step=after_step, start=start,
                         on_progress=on_progress, what=f"pretrain {model_name}")
    model.eval()
    weights = out / f"{out_name}.safetensors"
    save_checkpoint(weights, model.state_dict(), {
        "model": model_name, "pretrained": None, "init_from": Path(init_from).name if init_from else None,
        "start_recipe": start_recipe(init_from) if init_from else None, "kind": "embedded-pretrain", "config": asdict(cfg),
        "corpus": asdict(corpus), "final_loss_mean50": float(np.mean(losses[-50:])),
        "loss_curve_every_100": [float(np.mean(losses[i:i + 100])) for i in range(0, len(losses), 100)],
        "command": command or " ".join(sys.argv)}, storage_dtype=storage_dtype)
    state_path.unlink(missing_ok=True)
    return weights


def start_recipe(init_from: str | Path) -> dict | None:
    """How the weights ``init_from`` were made, from their sidecar (None if they have none): recorded in the
    sidecar of a pretraining that continues from them, so that a curriculum's every stage can be rerun from the
    final weights' sidecar alone, not only its last command."""
    meta = read_sidecar(init_from)
    if not meta:
        return None
    return {key: meta.get(key) for key in ("model", "command", "config", "corpus", "sha256", "init_from", "start_recipe")}


def _save_state(path: Path, model, opt, step: int, losses: list[float], recipe: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "losses": losses,
                    "recipe": recipe}, tmp)


def _with_defaults(recipe: dict) -> dict:
    """A saved recipe with the fields added since it was written set to their defaults (a state saved before a
    corpus option existed was trained with it off, e.g. ``neutral_lengths``), so that it still resumes."""
    return {"config": {**asdict(PretrainConfig()), **recipe.get("config", {})},
            "corpus": {**asdict(corpus_mod.CorpusConfig()), **recipe.get("corpus", {})}}
