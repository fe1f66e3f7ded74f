"""What the merges that learn from data need to know of a model on a task's images, gathered through the one
batched forward pass (``run_batches``): the diagonal Fisher (Fisher merging, WiSE-FT's Fisher-weighted
interpolation) and RegMean's input Gram matrices.

- ``fisher_diagonal``: E_x E_{y ~ p(y|x)} [(d log p(y|x) / d theta)^2] for every float parameter of the image
  tower, p the zero-shot head's softmax; one seeded sample of y per image (an unbiased estimate that costs one
  backward pass per image, where the exact expectation costs one per class: 1,000 for ImageNet).
- ``input_grams``: X^T X / N of the input X of every linear map of the image tower whose input the pass sees
  (nn.Linear called as a module; open_clip's attention pool's q/k/v and output projection; nn.MultiheadAttention's
  in- and out-projections), keyed by the weight's state-dict key. Only rows that reach the output count: the
  attention pool returns its first token, so its query and output projections see that token alone.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..core.state_dicts import StateDict
from .evaluation import logits, run_batches


def fisher_diagonal(model: torch.nn.Module, head: torch.Tensor, images: torch.Tensor, seed: int = 0,
                    batch_size: int = 64) -> StateDict:
    """{``visual.*`` key: the diagonal Fisher of that parameter} on ``images`` (preprocessed), see above."""
    params = {f"visual.{k}": p for k, p in model.visual.named_parameters() if p.is_floating_point()}
    total = {k: torch.zeros_like(p, dtype=torch.float32) for k, p in params.items()}
    generator = torch.Generator().manual_seed(seed)
    tensors = list(params.values())

    def per_image(x: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            for i in range(len(x)):
                logp = F.log_softmax(logits(model, head, x[i:i + 1]).float(), dim=-1)[0]
                y = torch.multinomial(logp.detach().exp().cpu(), 1, generator=generator).item()
                grads = torch.autograd.grad(logp[y], tensors, allow_unused=True)
                for k, g in zip(params, grads):
                    if g is not None:
                        total[k] += g.float() ** 2
        return torch.zeros(len(x), device=x.device)

    run_batches(per_image, images, model, batch_size)
    return {k: (v / len(images)).cpu() for k, v in total.items()}


def input_grams(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 256) -> StateDict:
    """{state-dict key of a linear map's weight: X^T X / N of its input} on ``images`` (preprocessed)."""
    from open_clip.modified_resnet import AttentionPool2d
    grams: dict[str, torch.Tensor] = {}

    def add(key: str, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).float()
        g = x.T @ x
        grams[key] = grams[key] + g if key in grams else g

    handles = []
    for name, module in model.visual.named_modules():
        prefix = f"visual.{name}." if name else "visual."
        if isinstance(module, AttentionPool2d):
            handles.append(module.register_forward_pre_hook(_attention_pool_hook(prefix, add)))
        elif isinstance(module, torch.nn.MultiheadAttention):
            handles.append(module.register_forward_pre_hook(_multihead_hook(module, prefix, add), with_kwargs=True))
        elif isinstance(module, torch.nn.Linear):
            handles.append(module.register_forward_pre_hook(
                lambda m, args, key=f"{prefix}weight": add(key, args[0])))
    try:
        run_batches(lambda x: model.encode_image(x)[:, :1], images, model, batch_size)
    finally:
        for h in handles:
            h.remove()
    return {k: (g / len(images)).cpu() for k, g in grams.items()}


def _attention_pool_hook(prefix: str, add: Callable[[str, torch.Tensor], None]):
    """open_clip's ModifiedResNet attention pool calls its projections functionally; its tokens are rebuilt here as
    its forward builds them, and the attention's output before ``c_proj`` by running it with an identity one."""
    def hook(module, args):
        x = args[0]
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(2, 0, 1)
        x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0) + module.positional_embedding[:, None, :].to(x.dtype)
        add(f"{prefix}k_proj.weight", x)
        add(f"{prefix}v_proj.weight", x)
        add(f"{prefix}q_proj.weight", x[:1])  # only the first token's query reaches the output
        width = x.shape[-1]
        context, _ = F.multi_head_attention_forward(
            query=x[:1], key=x, value=x, embed_dim_to_check=width, num_heads=module.num_heads,
            q_proj_weight=module.q_proj.weight, k_proj_weight=module.k_proj.weight,
            v_proj_weight=module.v_proj.weight, in_proj_weight=None,
            in_proj_bias=torch.cat([module.q_proj.bias, module.k_proj.bias, module.v_proj.bias]),
            bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
            out_proj_weight=torch.eye(width, dtype=x.dtype, device=x.device),
            out_proj_bias=torch.zeros(width, dtype=x.dtype, device=x.device),
            use_separate_proj_weight=True, training=False, need_weights=False)
        add(f"{prefix}c_proj.weight", context)
    return hook


def _multihead_hook(module: torch.nn.MultiheadAttention, prefix: str, add: Callable[[str, torch.Tensor], None]):
    """Self-attention's input feeds ``in_proj_weight``; its output before ``out_proj`` comes from running the
    attention with an identity output projection."""
    def hook(m, args, kwargs):
        query = args[0] if args else kwargs["query"]
        key = args[1] if len(args) > 1 else kwargs.get("key", query)
        if key is not query:
            return  # cross-attention: its inputs differ per projection; left to the plain mean
        add(f"{prefix}in_proj_weight", query)
        width = module.embed_dim
        saved = module.out_proj.weight.data, module.out_proj.bias.data
        module.out_proj.weight.data = torch.eye(width, dtype=query.dtype, device=query.device)
        module.out_proj.bias.data = torch.zeros(width, dtype=query.dtype, device=query.device)
        try:
            context = torch.nn.MultiheadAttention.forward(m, *args, **{**kwargs, "need_weights": False})[0]
        finally:
            module.out_proj.weight.data, module.out_proj.bias.data = saved
        add(f"{prefix}out_proj.weight", context)
    return hook
