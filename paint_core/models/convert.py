"""A research checkpoint as the weights of an open_clip model: keys mapped, shapes and activation checked.

The file is read by ``io.convert`` (nothing in it runs). OpenAI's CLIPs use QuickGELU; read as a GELU model
they load without a word but their features are off by ~4e-2, so a mismatch is an error naming the right model.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch

from ..core.state_dicts import StateDict
from ..io.convert import map_to_model_keys, read_checkpoint
from .clip import create_architecture, load_model


@dataclass(frozen=True)
class Converted:
    state: StateDict             # the model's full state dict
    converted: int               # tensors taken from the checkpoint
    keys_from_base: list[str]    # keys the checkpoint lacks, taken from --base
    unmatched_keys: list[str]    # checkpoint tensors that are not the model's (e.g. a classification head)
    activation: str | None       # what the checkpoint's module classes say: quick_gelu, gelu, or None


def uses_quick_gelu(model: torch.nn.Module) -> bool:
    return any(type(m).__name__ == "QuickGELU" for m in model.modules())


def _variant(name: str, quick_gelu: bool) -> str | None:
    """The open_clip name of ``name``'s other activation variant, if open_clip has one."""
    other = f"{name}-quickgelu" if quick_gelu else name.removesuffix("-quickgelu")
    return other if other != name and other in open_clip.list_models() else None


def convert_checkpoint(path: str | Path, model_name: str, base: str | None = None) -> Converted:
    """The weights in research checkpoint ``path`` as ``model_name``'s state dict (missing keys from ``base``)."""
    model = load_model(model_name, base)[0] if base else create_architecture(model_name)
    source, activation = read_checkpoint(path)
    if activation is not None and (activation == "quick_gelu") != uses_quick_gelu(model):
        wanted = activation == "quick_gelu"
        right = _variant(model_name, wanted)
        raise ValueError(f"{path} was trained with {'QuickGELU' if wanted else 'GELU'} activations but "
                         f"{model_name} uses {'GELU' if wanted else 'QuickGELU'}: its features would be wrong. "
                         + (f"Use --model {right}." if right else
                            f"open_clip has no {'QuickGELU' if wanted else 'GELU'} variant of {model_name}."))
    target = model.state_dict()
    mapped, unmatched = map_to_model_keys(source, set(target))
    if not mapped:
        raise ValueError(f"no tensor of {path} maps onto {model_name}'s keys")
    missing = sorted(set(target) - set(mapped))
    if missing and not base:
        raise ValueError(f"{len(missing)} keys of {model_name} are not in the checkpoint (first: {missing[0]!r}); "
                         "pass --base TAG_OR_FILE to take them from that model")
    for k in mapped:
        if mapped[k].shape != target[k].shape:
            raise ValueError(f"shape mismatch at {k!r}: {tuple(mapped[k].shape)} vs {tuple(target[k].shape)}")
    state = {**target, **{k: v.to(target[k].dtype) for k, v in mapped.items()}}
    return Converted(state, len(mapped), missing, unmatched, activation)
