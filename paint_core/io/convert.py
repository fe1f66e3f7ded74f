"""Converting research-code checkpoints (pickled whole modules) to state dicts, without running any
code: a restricted unpickler that imports nothing it does not know and turns module classes into inert stubs."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from ..core.state_dicts import StateDict
from .checkpoints import CheckpointError, _unwrap_state_dict


# ------------------------------------------------------------------------- converting pickled modules
_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"), ("torch", "Size"), ("torch", "device"),
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "slice"), ("builtins", "object"),
    ("copyreg", "_reconstructor"), ("torch.nn.parameter", "Parameter"),
}


# Globals that exist to run code: a pickle naming one is refused outright. Any other unknown global is
# never imported either: it becomes an inert stub (a module class keeps its state, a callable does nothing).
_REFUSED_MODULES = {"os", "posix", "nt", "subprocess", "sys", "builtins", "__builtin__", "shutil", "socket",
                    "importlib", "pickle", "_pickle", "marshal", "types", "runpy", "codecs", "ctypes", "pty",
                    "webbrowser", "urllib", "http", "requests", "multiprocessing", "threading", "signal",
                    "functools", "operator", "code", "pdb", "tempfile", "io", "pathlib", "glob", "platform"}


class _Stub:
    """Stands in for any pickled module class: keeps its state, runs nothing."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)


def _is_safe_torch_global(module: str, name: str) -> bool:
    return module == "torch" and (name.endswith("Storage") or name in {
        "float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool"})


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        module = "builtins" if module == "__builtin__" else module  # protocol-2 pickles use the Python 2 name
        if (module, name) in _ALLOWED_GLOBALS or _is_safe_torch_global(module, name):
            return super().find_class(module, name)
        if module.split(".")[0] in _REFUSED_MODULES or (module == "torch" and not name[0].isupper()):
            raise pickle.UnpicklingError(f"refused to load global {module}.{name}: it is not a tensor or a "
                                         "module class, and calling it could run code; nothing was run")
        return type(name, (_Stub,), {"__module__": "paint_core.stub." + module})


class _RestrictedPickleModule:
    """Passed to ``torch.load(pickle_module=...)``: torch's storage handling, our find_class."""
    Unpickler = _RestrictedUnpickler
    UnpicklingError = pickle.UnpicklingError
    load = staticmethod(lambda f, **kw: _RestrictedUnpickler(f, **kw).load())
    __name__ = "paint_core_restricted_pickle"


def _flatten_stub(obj: Any, prefix: str = "") -> StateDict:
    out: StateDict = {}
    d = getattr(obj, "__dict__", {})
    skip = set(d.get("_non_persistent_buffers_set", ()) or ())
    for k, v in (d.get("_parameters") or {}).items():
        if v is not None:
            out[prefix + k] = v.detach() if isinstance(v, torch.Tensor) else v
    for k, v in (d.get("_buffers") or {}).items():
        if v is not None and k not in skip:
            out[prefix + k] = v
    for k, v in (d.get("_modules") or {}).items():
        if v is not None:
            out.update(_flatten_stub(v, f"{prefix}{k}."))
    return out


def read_pickled_module(path: str | Path) -> StateDict:
    """The tensors of a pickled whole module (research-code checkpoints), without running any code."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_RestrictedPickleModule)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: {e}") from e
    if isinstance(obj, dict):
        return _unwrap_state_dict(obj, Path(path))
    state = _flatten_stub(obj)
    if not state:
        raise CheckpointError(f"{path} holds no module parameters")
    return {k: torch.as_tensor(v) for k, v in state.items()}


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
