"""Supervised pretraining of the embedded closed-vocabulary encoder (micro-vit) on shape x colour labels."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..io.checkpoints import save_checkpoint
from ..models.clip import embedded_weights
from ..models.encoders import Classifier, create_encoder
from ..runtime import current_runtime
from .training import adamw, cosine_lr, param_groups, train_loop
from ..configs import EncoderPretrainConfig  # noqa: F401 (declared there, torch-free for the CLI)


# ------------------------------------------------------------------------------ pretraining
def _draw_shape_colour(rng: np.random.Generator):
    from ..data import world as w
    s, c = int(rng.integers(0, len(w.SHAPES))), int(rng.integers(0, len(w.COLOURS)))
    style = "outline" if rng.random() < 0.05 else "filled"  # the outline style stays rare, as in the CLIP corpus
    return w.render_object(rng, w.SHAPES[s], list(w.COLOURS)[c], style), s * len(w.COLOURS) + c


def pretrain_encoder(name: str = "micro-vit", out: str | Path | None = None,
                     cfg: EncoderPretrainConfig = EncoderPretrainConfig(), command: str = "") -> Path:
    """Supervised pretraining of an embedded encoder on shape x colour labels (42 classes); writes float16."""
    from ..data import world as w
    from ..data.embedded import GeneratedSplit

    steps, batch_size, lr, warmup, seed = cfg.steps, cfg.batch_size, cfg.lr, cfg.warmup, cfg.seed
    encoder, preprocess = create_encoder(name, "random")
    n_classes = len(w.SHAPES) * len(w.COLOURS)
    model = Classifier(encoder, nn.Linear(encoder.num_features, n_classes))
    runtime = current_runtime()
    model.to(runtime.torch_device)  # train_loop puts each batch on the runtime's device
    data = GeneratedSplit(_draw_shape_colour, steps * batch_size, (4242, seed), preprocess)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=runtime.workers,
                                         pin_memory=runtime.device.startswith("cuda"))
    torch.manual_seed(seed)
    opt = adamw(param_groups(model, cfg.weight_decay), lr=lr)
    model.train()
    if runtime.grad_checkpointing:
        encoder.set_grad_checkpointing(True)
    train_loop(loader, lambda b: F.cross_entropy(model(b[0]), b[1]), opt, steps,
               lambda step: cosine_lr(step, steps, lr, warmup), what=f"pretrain {name}",
               micro_batches=runtime.accum_steps)
    if runtime.grad_checkpointing:
        encoder.set_grad_checkpointing(False)
    path = Path(out) if out else embedded_weights(name)
    save_checkpoint(path, {k: v.detach() for k, v in encoder.state_dict().items()},
                    {"model": name, "pretrained_on": "embedded world, shape x colour (42 classes)", "steps": steps,
                     "batch_size": batch_size, "lr": lr, "seed": seed, "command": command}, storage_dtype=torch.float16)
    return path
