"""AdaMerging's unlabeled recipe on block coefficients (Yang et al., ICLR 2024, layer-wise variant).

theta(c) = theta_zs + c_b * (theta_ft - theta_zs) per block b; the coefficients c are learned by Adam on the
Shannon entropy of the zero-shot head's predictions for unlabeled images, clamped to [0, 1] after every step
(the paper's code clamps in the forward pass; clamping the parameter is the same map, kept visible). The weights
are built functionally (``torch.func.functional_call``), so the model itself is never written.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import torch
import torch.nn.functional as F

from ..configs import SearchConfig
from ..core.blocks import block_of_keys
from ..core.state_dicts import StateDict
from ..runtime import module_device
from .training import ProgressFn, train_loop


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean Shannon entropy (nats) of softmax(``logits``) over the batch."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1).mean()


def learn_block_coefficients(model: torch.nn.Module, head: torch.Tensor, images: torch.Tensor, theta_zs: StateDict,
                             theta_ft: StateDict, blocks: Sequence[str], init: float,
                             config: SearchConfig = SearchConfig(), on_progress: ProgressFn | None = None
                             ) -> dict[str, float]:
    """{block: coefficient} minimising the prediction entropy of ``images`` (preprocessed, unlabeled) under
    ``head``, starting from ``init`` in every block of ``blocks`` (blocks of the image tower, ``visual.*``)."""
    owner = block_of_keys(theta_zs)
    keys = [k for k, z in theta_zs.items() if owner[k] in blocks and z.is_floating_point()
            and not torch.equal(z, theta_ft[k])]
    outside = sorted({owner[k] for k in keys if not k.startswith("visual.")})
    if outside:
        raise ValueError(f"AdaMerging learns coefficients of the image tower; {', '.join(outside)} is not part of it")
    device = module_device(model)
    index = {b: i for i, b in enumerate(blocks)}
    zs = {k.removeprefix("visual."): theta_zs[k].to(device) for k in keys}
    delta = {k.removeprefix("visual."): (theta_ft[k] - theta_zs[k]).to(device) for k in keys}
    which = {k.removeprefix("visual."): index[owner[k]] for k in keys}
    coefficients = torch.nn.Parameter(torch.full((len(blocks),), float(init), device=device))
    optimizer = torch.optim.Adam([coefficients], lr=config.search_lr, betas=(0.9, 0.999))
    head = head.to(device)
    scale = model.logit_scale.detach().exp()
    visual = model.visual
    was_training = visual.training
    visual.eval()  # BatchNorm keeps its (interpolated) running statistics, as at evaluation

    def loss_fn(x: torch.Tensor) -> torch.Tensor:
        weights = {k: zs[k] + coefficients[which[k]] * d for k, d in delta.items()}
        feats = torch.func.functional_call(visual, weights, (x,), strict=False)
        return entropy(scale * F.normalize(feats, dim=-1) @ head.T.to(feats.dtype))

    def clamp(step: int, loss: torch.Tensor) -> None:
        with torch.no_grad():
            coefficients.clamp_(0.0, 1.0)

    try:
        train_loop(_minibatches(images, config.search_batch, config.seed), loss_fn, optimizer, config.budget,
                   lambda step: config.search_lr, after_step=clamp, on_progress=on_progress, what="adamerging")
    finally:
        visual.train(was_training)
    return {b: float(coefficients[i].detach()) for b, i in index.items()}


def _minibatches(images: torch.Tensor, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless seeded random minibatches of ``images`` (without labels: the recipe is unlabeled)."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(images), generator=generator)
        for i in range(0, len(order) - batch_size + 1 if len(order) >= batch_size else 1, batch_size):
            yield images[order[i:i + batch_size]]
