"""The image tower cut into named blocks, read from the state dict's key names alone.

A per-block plan gives each block its own coefficient, so the cut must be the same wherever weights are named
the same: it depends on nothing but the keys. Every key is in exactly one block; keys outside the image tower
(the text tower, ``logit_scale``) form the block ``text``, which PAINT never changes.

    open_clip ModifiedResNet     stem (conv1-3, bn1-3), layer1 .. layer4, attnpool
    open_clip VisionTransformer  embeddings (conv1, class_embedding, positional_embedding, ln_pre),
                                 block0 .. blockN-1 (one per resblock), head (ln_post, proj, attn_pool, ...)
    timm ViT (closed vocabulary) embeddings (patch_embed, cls_token, pos_embed, ...), block0 .. blockN-1, head
    anything else                one block per top-level module of the image tower
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

TEXT_BLOCK = "text"

_RESNET_STEM = {"conv1", "conv2", "conv3", "bn1", "bn2", "bn3"}
_VIT_EMBEDDINGS = {"conv1", "class_embedding", "positional_embedding", "ln_pre", "patch_dropout",  # open_clip
                   "patch_embed", "cls_token", "pos_embed", "reg_token", "norm_pre"}                # timm
_VIT_BLOCK = re.compile(r"^(?:transformer\.resblocks|blocks)\.(\d+)\.")


@dataclass(frozen=True)
class Block:
    name: str
    keys: tuple[str, ...]


def _visual_prefix(keys: list[str]) -> str:
    """"visual." for a CLIP's state dict, "" for a bare image encoder (timm's keys, no text tower)."""
    return "visual." if any(k.startswith("visual.") for k in keys) else ""


def _family(tower: list[str]) -> str:
    top = {k.split(".", 1)[0] for k in tower}
    if any(_VIT_BLOCK.match(k) for k in tower):
        return "vit"
    if {"layer1", "attnpool"} <= top or ({"layer1", "layer4"} <= top and top & _RESNET_STEM):
        return "resnet"
    return "other"


def _block_of(key: str, family: str) -> str:
    top = key.split(".", 1)[0]
    if family == "resnet":
        return "stem" if top in _RESNET_STEM else top
    if family == "vit":
        match = _VIT_BLOCK.match(key)
        if match:
            return f"block{int(match.group(1))}"
        return "embeddings" if top in _VIT_EMBEDDINGS else "head"
    return top


def image_blocks(keys: Iterable[str]) -> tuple[Block, ...]:
    """The blocks of a state dict's keys in forward order: stem / embeddings, the numbered layers or blocks,
    the head, then ``text`` (when the state dict has a text tower). Unknown families keep the keys' order."""
    keys = list(keys)
    prefix = _visual_prefix(keys)
    family = _family([k.removeprefix(prefix) for k in keys if k.startswith(prefix)])
    named: dict[str, list[str]] = {}
    for key in keys:
        name = _block_of(key.removeprefix(prefix), family) if key.startswith(prefix) else TEXT_BLOCK
        named.setdefault(name, []).append(key)

    def rank(name: str) -> tuple[int, int]:
        if name == TEXT_BLOCK:
            return (3, 0)
        if family == "other":
            return (1, 0)  # sorted() is stable: first appearance
        if name in ("stem", "embeddings"):
            return (0, 0)
        numbered = re.fullmatch(r"(?:block|layer)(\d+)", name)
        return (1, int(numbered.group(1))) if numbered else (2, 0)

    return tuple(Block(name, tuple(named[name])) for name in sorted(named, key=rank))


def block_of_keys(keys: Iterable[str]) -> dict[str, str]:
    """key -> the name of its block."""
    return {k: b.name for b in image_blocks(keys) for k in b.keys}
