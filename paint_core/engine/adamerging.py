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
    delta = {k: theta_ft[k] - z for k, z in theta_zs.items() if z.is_floating_point() and not torch.equal(z, theta_ft[k])}
    learned = learn_merge_coefficients(model, theta_zs, [delta], [(head, images)], blocks, init, config, on_progress)
    return learned[0]


def learn_merge_coefficients(model: torch.nn.Module, theta_zs: StateDict, vectors: Sequence[StateDict],
                             tasks: Sequence[tuple[torch.Tensor, torch.Tensor]], blocks: Sequence[str] | None,
                             init: float, config: SearchConfig = SearchConfig(),
                             on_progress: ProgressFn | None = None) -> list[dict[str, float]]:
    """AdaMerging: per task vector, one coefficient per block of ``blocks`` (layer-wise) or one in all (``blocks``
    None: task-wise, reported under the key "all"), minimising the sum over ``tasks`` ((head, unlabeled images)
    per task) of the entropy of that task's predictions for a minibatch of its images."""
    owner = block_of_keys(theta_zs)
    keys = sorted({k for v in vectors for k in v if k in theta_zs})
    outside = sorted({owner[k] for k in keys if not k.startswith("visual.")})
    if outside:
        raise ValueError(f"AdaMerging learns coefficients of the image tower; {', '.join(outside)} is not part of it")
    names = list(blocks) if blocks is not None else ["all"]
    index = {b: i for i, b in enumerate(names)}
    keys = [k for k in keys if blocks is None or owner[k] in index]
    device = module_device(model)
    zs = {k.removeprefix("visual."): theta_zs[k].to(device) for k in keys}
    deltas = [{k.removeprefix("visual."): v[k].to(device) for k in keys if k in v} for v in vectors]
    which = {k.removeprefix("visual."): 0 if blocks is None else index[owner[k]] for k in keys}
    coefficients = torch.nn.Parameter(torch.full((len(vectors), len(names)), float(init), device=device))
    optimizer = torch.optim.Adam([coefficients], lr=config.search_lr, betas=(0.9, 0.999))
    heads = [head.to(device) for head, _ in tasks]
    scale = model.logit_scale.detach().exp()
    visual = model.visual
    was_training = visual.training
    visual.eval()  # BatchNorm keeps its (interpolated) running statistics, as at evaluation

    parameters = {name for name, _ in model.visual.named_parameters()}

    def loss_fn(xs: list[torch.Tensor]) -> torch.Tensor:
        weights = dict(zs)
        for t, delta in enumerate(deltas):
            for k, d in delta.items():  # buffers (BatchNorm's running statistics) follow, without a gradient
                c = coefficients[t, which[k]]
                weights[k] = weights[k] + (c if k in parameters else c.detach()) * d
        total = 0.0
        for x, head in zip(xs, heads):
            feats = torch.func.functional_call(visual, weights, (x.to(device),), strict=False)
            total = total + entropy(scale * F.normalize(feats, dim=-1) @ head.T.to(feats.dtype))
        return total

    def clamp(step: int, loss: torch.Tensor) -> None:
        with torch.no_grad():
            coefficients.clamp_(0.0, 1.0)

    streams = [_minibatches(images, config.search_batch, config.seed + t) for t, (_, images) in enumerate(tasks)]
    try:
        train_loop(zip(*streams) if len(streams) > 1 else ([x] for x in streams[0]), loss_fn, optimizer,
                   config.budget, lambda step: config.search_lr, after_step=clamp, on_progress=on_progress,
                   what="adamerging")
    finally:
        visual.train(was_training)
    return [{b: float(coefficients[t, i].detach()) for b, i in index.items()} for t in range(len(vectors))]


def _minibatches(images: torch.Tensor, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless seeded random minibatches of ``images`` (without labels: the recipe is unlabeled)."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(images), generator=generator)
        for i in range(0, len(order) - batch_size + 1 if len(order) >= batch_size else 1, batch_size):
            yield images[order[i:i + batch_size]]
