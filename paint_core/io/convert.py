"""Converting research-code checkpoints (pickled whole modules) to state dicts, without running any code:
the file is read by ``safe_pickle`` (never torch.load), module objects arrive as inert stand-ins whose
parameters and buffers are collected here, and their keys are mapped onto a model's."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..core.state_dicts import StateDict
from .checkpoints import CheckpointError, _unwrap_state_dict
from .safe_pickle import UnsafePickleError, read_objects


def _flatten_stub(obj: Any, prefix: str = "") -> StateDict:
    """The parameters and persistent buffers of a stand-in module and its children, by their dotted names."""
    out: StateDict = {}
    d = getattr(obj, "__dict__", {})
    skip = set(d.get("_non_persistent_buffers_set", ()) or ())
    tensors = [*(d.get("_parameters") or {}).items(), *((k, v) for k, v in (d.get("_buffers") or {}).items()
                                                         if k not in skip)]
    for k, v in tensors:
        if not isinstance(k, str):
            raise CheckpointError(f"a module of the checkpoint names a tensor by {str(k)[:40]} "
                                  f"({type(k).__name__}), not by a name")
        if v is None:
            continue
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{prefix}{k} is a {type(v).__name__}, not a tensor")
        out[prefix + k] = v.detach()
    for k, v in (d.get("_modules") or {}).items():
        if not isinstance(k, str):
            raise CheckpointError(f"a module of the checkpoint names a submodule by {str(k)[:40]} "
                                  f"({type(k).__name__}), not by a name")
        if v is not None:
            out.update(_flatten_stub(v, f"{prefix}{k}."))
    return out


def activation_of(obj: Any) -> str | None:
    """"quick_gelu" if the pickled module tree holds a QuickGELU (OpenAI CLIP), "gelu" if it holds only GELU,
    None if it names neither (a state dict carries no classes)."""
    names, stack, seen = set(), [obj], set()
    while stack:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        names.add(type(o).__name__)
        stack.extend(v for v in (getattr(o, "__dict__", {}).get("_modules") or {}).values() if v is not None)
    return "quick_gelu" if "QuickGELU" in names else "gelu" if "GELU" in names else None


def read_checkpoint(path: str | Path) -> tuple[StateDict, str | None]:
    """(tensors, activation) of a research-code checkpoint; see ``read_pickled_module`` and ``activation_of``."""
    obj = _read(path)
    return _tensors(obj, path), None if isinstance(obj, dict) else activation_of(obj)


def _read(path: str | Path) -> Any:
    try:
        return read_objects(path)
    except UnsafePickleError as e:
        raise CheckpointError(f"{path}: {e}") from e
    except OSError as e:
        raise CheckpointError(f"{path} cannot be read: {e}") from e


def read_pickled_module(path: str | Path) -> StateDict:
    """The tensors of a research-code checkpoint (a pickled whole module or a state dict; torch's zip or
    legacy format, or a plain pickle.dump), read by ``safe_pickle``: torch.load never sees the file."""
    return _tensors(_read(path), path)


def _tensors(obj: Any, path: str | Path) -> StateDict:
    if isinstance(obj, dict):
        return _unwrap_state_dict(obj, Path(path))
    try:
        state = _flatten_stub(obj)
    except RecursionError:
        raise CheckpointError(f"{path} nests modules too deeply to be a model") from None
    if not state:
        raise CheckpointError(f"{path} holds no module parameters")
    return state


def map_to_model_keys(source: StateDict, target_keys: set[str]) -> tuple[StateDict, list[str]]:
    """Strip the wrapper prefix (e.g. ``image_encoder.model.``) that maps most keys onto ``target_keys``.

    Returns the mapped state dict and the source keys that match nothing (e.g. a classification head).
    """
    candidates = {""}
    for key in source:
        parts = key.split(".")
        candidates.update(".".join(parts[:i]) + "." for i in range(1, len(parts)))
    best = max(candidates, key=lambda p: (sum(k.startswith(p) and k[len(p):] in target_keys for k in source), -len(p)))
    mapped, unmatched = {}, []
    for k, v in source.items():
        if k.startswith(best) and k[len(best):] in target_keys:
            mapped[k[len(best):]] = v
        else:
            unmatched.append(k)
    return mapped, unmatched
