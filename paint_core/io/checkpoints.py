"""Checkpoints: safetensors state dicts with a JSON sidecar (provenance and sha256), verified on load.

A sidecar ``weights.json`` beside ``weights.safetensors`` holds the provenance (model name, pretrained tag,
task, alpha, code version) and the sha256 of the weights file, so a checkpoint says what it is and
whether it was changed after it was written.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..core.state_dicts import StateDict
from ..version import code_version
from .atomic import atomic_path, atomic_write_text
from .paths import WEIGHTS_DIR
from .safe_pickle import Stub, UnsafePickleError, read_objects


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
    """A state dict from .safetensors, or from .pt/.pth/.bin read by ``safe_pickle`` (nothing in the file runs,
    and memory stays within a small multiple of its size; torch.load's weights_only reader allocates what a
    file's ``bytearray(N)`` asks for).

    Pickled whole modules are refused here: convert them with ``python -m paint_core convert``.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        return load_checkpoint(path)[0]
    try:
        obj = read_objects(path)
    except UnsafePickleError as e:
        raise CheckpointError(f"{path}: {e}") from None
    except OSError as e:
        raise CheckpointError(f"{path} cannot be read: {e}") from e
    module = obj.get("state_dict") if isinstance(obj, dict) else obj
    if isinstance(module, Stub):
        raise CheckpointError(f"{path} is a pickled whole module ({type(module).__name__}), not a state dict, so it "
                              f"was not loaded. Convert it (nothing in it runs): python -m paint_core convert {path} "
                              "--model NAME --out weights.safetensors")
    return _unwrap_state_dict(obj, path)


def _unwrap_state_dict(obj: Any, path: Path) -> StateDict:
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # open_clip training checkpoints
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    odd = next((k for k in obj if not isinstance(k, str)), None)
    if odd is not None:
        raise CheckpointError(f"{path} does not hold a state dict: its keys must be parameter names (text), but "
                              f"one is {str(odd)[:40]} ({type(odd).__name__})")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj
