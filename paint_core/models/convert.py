"""A research checkpoint as the weights of an open_clip model: keys mapped, shapes and activation checked.

The file is read by ``io.convert`` (nothing in it runs). OpenAI's CLIPs use QuickGELU; read as a GELU model
they load without a word but their features are off by ~4e-2, so a mismatch is an error naming the right model.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.state_dicts import StateDict
from ..io.convert import map_to_model_keys, read_checkpoint
from .clip import check_activation, create_architecture, load_model


@dataclass(frozen=True)
class Converted:
    state: StateDict             # the model's full state dict
    converted: int               # tensors taken from the checkpoint
    keys_from_base: list[str]    # keys the checkpoint lacks, taken from --base
    unmatched_keys: list[str]    # checkpoint tensors that are not the model's (e.g. a classification head)
    activation: str | None       # what the checkpoint's module classes say: quick_gelu, gelu, or None


def convert_checkpoint(path: str | Path, model_name: str, base: str | None = None) -> Converted:
    """The weights in research checkpoint ``path`` as ``model_name``'s state dict (missing keys from ``base``)."""
    model = load_model(model_name, base)[0] if base else create_architecture(model_name)
    source, activation = read_checkpoint(path)
    if activation is not None:
        check_activation(model, model_name, activation == "quick_gelu", str(path))
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
