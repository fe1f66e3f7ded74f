"""Inspecting a typographic attack on one image: a sweep of written words, the margin along alpha, saliency.

Pure engine functions (the dashboard only draws their tables): each takes a model, a zero-shot head and
PIL images, and returns numbers a test can recompute another way.
"""
from __future__ import annotations

import copy
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

from ..core.interpolation import Interpolator
from ..core.state_dicts import StateDict
from ..data import world
from ..runtime import module_device
from .evaluation import attack_summary, logits, predict, run_batches

SWEEP_SIZES = (0.12, 0.2, 0.3)
CONTROL_WORDS = ("cat", "book", "tree")


def word_sweep(model: torch.nn.Module, head: torch.Tensor, preprocess: Callable, image: Image.Image,
               classnames: Sequence[str], true_class: int, words: Sequence[str],
               positions: Sequence[str] = world.WORD_POSITIONS, sizes: Sequence[float] = SWEEP_SIZES
               ) -> pd.DataFrame:
    """Every (word, position, size) written on ``image`` (``world.write_word``), scored in one batch: the
    predicted class, its probability, and the true class's probability. Columns word, position, size,
    predicted, p_predicted, p_true."""
    if not words:
        raise ValueError("give at least one word to write")
    if not 0 <= true_class < len(classnames):
        raise ValueError(f"true class {true_class} is not one of the {len(classnames)} classes")
    cells = [(wd, pos, size) for wd in words for pos in positions for size in sizes]
    batch = torch.stack([preprocess(world.write_word(image, wd, pos, size)) for wd, pos, size in cells])
    probs = predict(model, head, batch)
    top = probs.argmax(-1)
    return pd.DataFrame([{"word": wd, "position": pos, "size": size, "predicted": classnames[int(top[i])],
                          "p_predicted": float(probs[i, top[i]]), "p_true": float(probs[i, true_class])}
                         for i, (wd, pos, size) in enumerate(cells)])


def margin_along_alpha(model: torch.nn.Module, theta_zs: StateDict, theta_ft: StateDict, head: torch.Tensor,
                       images: dict[str, torch.Tensor], true_class: int, written_class: int | None,
                       alphas: Sequence[float]) -> pd.DataFrame:
    """For each preprocessed image (e.g. "clean", "attacked") at each alpha: the true class's probability, the
    written class's, and the logit margin true - written (positive: the patch resists the word). A copy of
    ``model`` is interpolated in place; ``model`` is not touched. Columns image, alpha, p_true, p_written,
    margin, predicted (class index)."""
    work = copy.deepcopy(model)
    interp = Interpolator(work, theta_zs, theta_ft)
    names = list(images)
    batch = torch.stack([images[n] for n in names])
    rows = []
    with torch.no_grad():
        for alpha in alphas:
            interp.set_alpha(alpha)
            z = logits(work, head, batch.to(module_device(work))).float().cpu()
            p = z.softmax(-1)
            for i, name in enumerate(names):
                row = {"image": name, "alpha": float(alpha), "p_true": float(p[i, true_class]),
                       "predicted": int(z[i].argmax())}
                if written_class is not None:
                    row["p_written"] = float(p[i, written_class])
                    row["margin"] = float(z[i, true_class] - z[i, written_class])
                rows.append(row)
    return pd.DataFrame(rows)


GRAD_CAM_MIN_SIDE = 6  # a stage whose map is smaller than this cannot say where (48 px micro towers: layer4 is 2x2)


def grad_cam(model: torch.nn.Module, head: torch.Tensor, image: torch.Tensor, class_index: int,
             layer: str | None = None) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al., 2017) of a ResNet image tower for one class's logit: a residual stage's
    activations weighted by their spatially averaged gradients, ReLU, upsampled to the input size and scaled to
    [0, 1]. ``layer``: "layer1".."layer4"; by default the deepest stage whose map is at least 6 x 6 (layer4 at
    224 px; layer2 on the 48 px micro towers, whose layer4 is 2 x 2). ``image`` is one preprocessed image
    [3, H, W]; returns [H, W]."""
    visual = model.visual
    if not hasattr(visual, "layer4"):
        raise ValueError("Grad-CAM needs a ResNet image tower; use attention_rollout for a ViT")
    stages = ("layer1", "layer2", "layer3", "layer4")
    if layer is not None and layer not in stages:
        raise ValueError(f"unknown ResNet stage {layer!r}; choose from {', '.join(stages)}")
    captured: dict[str, torch.Tensor] = {}
    hooks = [getattr(visual, name).register_forward_hook(lambda m, i, o, n=name: captured.__setitem__(n, o))
             for name in stages]
    was_training = model.training
    model.eval()
    try:
        x = image.unsqueeze(0).to(module_device(model))
        with torch.enable_grad():
            score = logits(model, head, x)[0, class_index]
            if layer is None:
                big = [n for n in stages if min(captured[n].shape[-2:]) >= GRAD_CAM_MIN_SIDE]
                layer = big[-1] if big else "layer1"
            grads = torch.autograd.grad(score, captured[layer])[0]
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    act = captured[layer].detach()
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * act).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=image.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    return (cam / cam.max()).cpu() if float(cam.max()) > 0 else cam.cpu()


def attention_rollout(model: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, 2020) of a ViT image tower: per block the head-averaged attention
    plus the identity (the residual), rows renormalized, multiplied through the blocks; the class token's row
    over the patches, reshaped to the patch grid, upsampled to the input size, scaled to [0, 1]. [H, W]."""
    visual = model.visual
    blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    if blocks is None:
        raise ValueError("attention rollout needs a ViT image tower; use grad_cam for a ResNet")
    maps: list[torch.Tensor] = []

    def capture(block):
        def hook(module, inputs, output):
            x = block.ln_1(inputs[0])
            attn = block.attn
            _, weights = attn(x, x, x, need_weights=True, average_attn_weights=True)
            maps.append(weights.detach())
        return hook

    handles = [b.register_forward_hook(capture(b)) for b in blocks]
    try:
        with torch.no_grad():
            visual(image.unsqueeze(0).to(module_device(model)))
    finally:
        for h in handles:
            h.remove()
    rollout = None
    for a in maps:
        a = a[0] if a.dim() == 3 else a
        a = a + torch.eye(a.shape[-1], device=a.device)
        a = a / a.sum(-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    cls = rollout[0, 1:]
    side = int(round(cls.numel() ** 0.5))
    grid = cls[: side * side].reshape(1, 1, side, side)
    up = F.interpolate(grid, size=image.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    return (up / up.max()).cpu()


def saliency(model: torch.nn.Module, head: torch.Tensor, image: torch.Tensor, class_index: int) -> torch.Tensor:
    """Where the model looks: Grad-CAM for a ResNet tower, attention rollout for a ViT."""
    if hasattr(model.visual, "layer4"):
        return grad_cam(model, head, image, class_index)
    return attention_rollout(model, image)


def find_fooling_example(zero_shot: torch.nn.Module, patched: torch.nn.Module, head: torch.Tensor,
                         preprocess: Callable, position: str = "center", size: float = 0.22,
                         seeds: Sequence[int] = (0, 1, 2), colours: Sequence[str] = ("red", "blue", "green")
                         ) -> dict | None:
    """A composed object with another shape's name on it that the zero-shot model gets wrong and the patched
    model right: first choice, one where the zero-shot model names the written word, the most confident such;
    else the most confidently wrong. {shape, colour, seed, word, zero_shot, patched, reads}; None if no
    candidate is fooled and fixed (then there is no attack to show on this model)."""
    cands = [(s, c, seed, wd) for s in world.SHAPES for c in colours for seed in seeds for wd in world.SHAPES if wd != s]
    images = torch.stack([preprocess(world.write_word(
        world.render_object(np.random.default_rng(seed), s, c, radius=(0.3, 0.34)), wd, position, size))
        for s, c, seed, wd in cands])
    p0, p1 = predict(zero_shot, head, images), predict(patched, head, images)
    best, best_key = None, (False, 0.0)
    for i, (s, c, seed, wd) in enumerate(cands):
        true = world.SHAPES.index(s)
        z, p = int(p0[i].argmax()), int(p1[i].argmax())
        key = (world.SHAPES[z] == wd, float(p0[i, z]))
        if z != true and p == true and key > best_key:
            best, best_key = {"shape": s, "colour": c, "seed": seed, "word": wd, "zero_shot": world.SHAPES[z],
                              "patched": s, "reads": key[0]}, key
    return best


def batch_attack(models: dict[str, torch.nn.Module], head: torch.Tensor, dataset, written: Sequence[int],
                 batch_size: int = 256) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every model on a typographic set: (summary: model, accuracy, attack_success, n, n_attacked;
    per image: index, label, written, and per model its prediction, p_true and p_written)."""
    written = np.asarray(written)
    summary, per_image = [], None
    for name, model in models.items():
        probs, labels = run_batches(lambda x, m=model: logits(m, head, x).softmax(-1), dataset, model, batch_size)
        pred = probs.argmax(-1)
        summary.append({"model": name, **attack_summary(pred, labels, written)})
        if per_image is None:
            per_image = pd.DataFrame({"index": np.arange(len(labels)), "label": labels.numpy(), "written": written})
        idx = torch.arange(len(labels))
        per_image[f"{name} predicted"] = pred.numpy()
        per_image[f"{name} p_true"] = probs[idx, labels].numpy()
        per_image[f"{name} p_written"] = np.where(written >= 0, probs[idx, torch.as_tensor(np.maximum(written, 0))].numpy(),
                                                  np.nan)
    return pd.DataFrame(summary), per_image
