"""Checkpoints: safetensors state dicts with a JSON sidecar, safe loading, and the converter for pickled modules.

A sidecar ``weights.json`` beside ``weights.safetensors`` holds the provenance (model name, pretrained tag,
task, alpha, code version) and the sha256 of the weights file, so a checkpoint says what it is and
whether it was changed after it was written.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load_file, save_file

from .paths import WEIGHTS_DIR
from .state_dicts import StateDict
from .version import code_version

SIDECAR_SCHEMA = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: wrong format, corrupted, unsafe, or for another architecture."""


def sidecar_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


_HASHES: dict[tuple, str] = {}


def sha256_file(path: str | Path) -> str:
    """The file's sha256, remembered by (path, inode, size, mtime) so a file is hashed once per process."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def read_sidecar(path: str | Path, required: bool = False) -> dict:
    """The sidecar of checkpoint ``path`` ({} if there is none and none is required).

    A ``.json`` beside a checkpoint that is not valid JSON is an error naming it; one without a sha256 is
    not a sidecar of ours (e.g. a model config) and is ignored unless a sidecar is required.
    """
    side = sidecar_path(path)
    if not side.is_file():
        if required:
            raise CheckpointError(f"{path} has no sidecar {side.name} (it holds the sha256 that proves the "
                                  "weights are intact); the file cannot be verified")
        return {}
    try:
        meta = json.loads(side.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"the sidecar {side} of {Path(path).name} is not readable JSON ({e}); "
                              "restore it or remove it") from e
    if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str):
        if required:
            raise CheckpointError(f"the sidecar {side} of {Path(path).name} is malformed: it has no sha256")
        return {}
    return meta


@contextmanager
def atomic_path(path: str | Path) -> Iterator[str]:
    """A temporary file name in ``path``'s folder; renamed onto ``path`` only if the block succeeds, so
    readers never see half a file and an interrupted write leaves the old file as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_checkpoint(path: str | Path, state_dict: StateDict, meta: dict[str, Any] | None = None,
                    storage_dtype: torch.dtype | None = None) -> dict:
    """Save ``state_dict`` as safetensors plus a JSON sidecar; returns the sidecar written.

    ``storage_dtype`` (e.g. ``torch.float16``) stores floating-point tensors in that dtype: the shipped
    embedded weights use it to halve the repository's size; loaders cast back to the model's dtype.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"checkpoints are written as .safetensors, got {path.name}")
    # safetensors refuses shared or non-contiguous storage: give it plain copies.
    tensors = {k: v.detach().to("cpu", dtype=storage_dtype if storage_dtype and v.is_floating_point() else v.dtype)
               .contiguous().clone() for k, v in state_dict.items()}
    if storage_dtype is not None:
        meta = {**(meta or {}), "storage_dtype": str(storage_dtype).replace("torch.", "")}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp)
        digest = sha256_file(tmp)
    sidecar = {"schema": SIDECAR_SCHEMA, **(meta or {}), "code_version": code_version(),
               "sha256": digest, "num_tensors": len(tensors)}
    atomic_write_text(sidecar_path(path), json.dumps(sidecar, indent=2, sort_keys=True))
    return sidecar


def load_checkpoint(path: str | Path, require_sidecar: bool = False) -> tuple[StateDict, dict]:
    """Load a checkpoint and its sidecar (empty dict if none); a sidecar's sha256 is always checked.

    ``require_sidecar``: the file is one this tool wrote (shipped weights, run directories), so a missing or
    malformed sidecar is an error rather than an unverified load.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    shipped = WEIGHTS_DIR in path.resolve().parents
    meta = read_sidecar(path, required=require_sidecar or shipped)
    if meta and meta["sha256"] != sha256_file(path):
        raise CheckpointError(f"{path} does not match the sha256 in its sidecar: the file was changed or "
                              "corrupted after it was written")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path)), meta
        except Exception as e:  # safetensors raises its own error types for truncated headers
            raise CheckpointError(f"{path} is not a readable safetensors file: {e}") from e
    return load_state_dict_file(path), meta


def load_state_dict_file(path: str | Path) -> StateDict:
    """A state dict from .safetensors, or from .pt/.pth/.bin through ``torch.load(weights_only=True)``.

    Pickled whole modules are refused here, never unpickled: convert them with ``python -m paint_core convert``.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        return load_checkpoint(path)[0]
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path} is a pickle that holds more than tensors (a whole module, or code), so it was not loaded. "
            f"If you trust where it came from, convert it safely: python -m paint_core convert {path} "
            f"--model NAME --out weights.safetensors\n(detail: {str(e).splitlines()[0]})") from e
    except (RuntimeError, zipfile.BadZipFile, EOFError, OSError) as e:
        raise CheckpointError(f"{path} is not a readable torch checkpoint: {e}") from e
    return _unwrap_state_dict(obj, path)


def _unwrap_state_dict(obj: Any, path: Path) -> StateDict:
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # open_clip training checkpoints
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


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
