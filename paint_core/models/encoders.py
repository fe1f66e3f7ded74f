"""Closed-vocabulary image encoders: the embedded micro-vit (a timm ViT) or any timm model, and the linear
heads put on them (saved as safetensors with sidecars)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
from torchvision import transforms

from ..core.names import unknown_name
from ..core.state_dicts import cast_like, check_compatible
from ..io.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from .clip import HUB_PREFIX, embedded_weights, hub_unavailable
from .registry import EMBEDDED_ENCODERS


def _micro_preprocess() -> Callable:
    return transforms.Compose([transforms.Resize(48, interpolation=transforms.InterpolationMode.BICUBIC),
                               transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)])


def create_encoder(name: str = "micro-vit", pretrained: str | None = None) -> tuple[nn.Module, Callable]:
    """An image encoder without a head (``num_classes=0``) and its preprocess.

    ``pretrained``: None = the shipped weights (embedded), the repository's weights (a timm ``hf-hub:ORG/REPO``
    name) or random (other timm names), "timm" = timm's own pretrained weights (needs internet), "random" = random
    init, or a path to a local checkpoint.
    """
    import timm
    with torch.random.fork_rng():
        torch.manual_seed(0)  # a random init is the same at every call: task vectors must share their base
        return _create_encoder(timm, name, pretrained)


def _create_encoder(timm, name: str, pretrained: str | None) -> tuple[nn.Module, Callable]:
    if name in EMBEDDED_ENCODERS:
        from timm.models.vision_transformer import VisionTransformer
        encoder, preprocess = VisionTransformer(**EMBEDDED_ENCODERS[name], num_classes=0), _micro_preprocess()
        if pretrained is None:
            shipped = embedded_weights(name)
            if not shipped.is_file():
                raise CheckpointError(f"{shipped} is missing: python -m paint_core pretrain-classifier --model {name}")
            pretrained = str(shipped)
    elif name.startswith(HUB_PREFIX):  # timm's own hub names: config.json + weights of a hub repository
        if pretrained == "timm":
            raise ValueError(f"{name} carries its own weights; leave --pretrained empty (or give a local file)")
        hub_weights = pretrained is None
        try:
            encoder = timm.create_model(name, pretrained=hub_weights, num_classes=0)
        except Exception as e:  # noqa: BLE001 -- hub errors come in many types; one message for all
            raise hub_unavailable(name, "its config and weights", e) from None
        cfg = timm.data.resolve_data_config({}, model=encoder)
        preprocess = timm.data.create_transform(**cfg)
    else:
        known = timm.list_models()
        if name not in known:
            raise unknown_name("timm model", name, known, listed=EMBEDDED_ENCODERS,
                               more=", or any name from timm.list_models()")
        encoder = timm.create_model(name, pretrained=pretrained == "timm", num_classes=0)
        cfg = timm.data.resolve_data_config({}, model=encoder)
        preprocess = timm.data.create_transform(**cfg)
    if pretrained not in (None, "timm", "random"):
        state, _ = load_checkpoint(pretrained)  # .pt too: read safely, memory bounded
        expected = encoder.state_dict()
        state = cast_like({k.removeprefix("visual."): v for k, v in state.items()}, expected)
        try:
            check_compatible(expected, state, f"encoder {name} and checkpoint {Path(pretrained).name}")
        except ValueError as e:
            raise CheckpointError(str(e)) from e
        encoder.load_state_dict(state)
    return encoder.eval(), preprocess


class Classifier(nn.Module):
    """Encoder (as ``visual``, so the fine-tuning loop of open_clip models applies unchanged) + linear head."""

    def __init__(self, encoder: nn.Module, head: nn.Linear):
        super().__init__()
        self.visual = encoder
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.visual(x))

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """As open_clip's CLIP has it, so ``--grad-checkpointing`` reaches a timm encoder."""
        self.visual.set_grad_checkpointing(enable)


def save_head(path: str | Path, head: nn.Linear, meta: dict) -> dict:
    return save_checkpoint(path, {k: v.detach() for k, v in head.state_dict().items()}, meta)


def load_head(path: str | Path) -> nn.Linear:
    state, _ = load_checkpoint(path)
    out_f, in_f = state["weight"].shape
    head = nn.Linear(in_f, out_f)
    head.load_state_dict(state)
    for p in head.parameters():
        p.requires_grad_(False)
    return head
