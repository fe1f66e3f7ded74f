"""An opened run directory: the zero-shot model and both endpoints, loaded, checked and then read-only.

The run directory's files are ``io/run_dir``'s; this is the model side of them, below the studies and the live
sessions that both work on an opened ``Run`` (the sessions must not reach up into the studies for it).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..core.interpolation import FlatEndpoints, flatten_endpoints
from ..core.state_dicts import StateDict, cast_like, state_digest
from ..core.task_vectors import TaskVector
from ..io.checkpoints import CheckpointError, load_checkpoint
from ..io.paths import REPO_DIR
from ..io.run_dir import read_run_meta
from .clip import load_model


@dataclass
class Run:
    """A loaded run: the zero-shot model plus both endpoints (read-only) and its tables."""
    path: Path
    meta: dict
    model: torch.nn.Module
    preprocess: Callable
    tokenizer: Callable
    theta_zs: StateDict
    theta_ft: StateDict
    weights_sha256: str = ""  # of finetuned.safetensors: identifies the run in a study's inputs
    flat: FlatEndpoints | None = field(default=None, repr=False)  # see shared_endpoints


_FLAT_LOCK = threading.Lock()


def shared_endpoints(run: Run) -> FlatEndpoints:
    """The run's endpoints flattened once, for every Interpolator of this run (each session then holds only
    its own live weights)."""
    with _FLAT_LOCK:
        if run.flat is None:
            run.flat = flatten_endpoints(run.theta_zs, run.theta_ft, run.model)
        return run.flat

def _repo_file(pretrained: str | None) -> str | None:
    """A relative weights path recorded by a run made in the repository (``portable_path``'s form, e.g. the
    shipped reading model) is read from the repository when the current folder does not have it."""
    if pretrained and not Path(pretrained).is_absolute() and not Path(pretrained).exists() \
            and (REPO_DIR / pretrained).is_file():
        return str(REPO_DIR / pretrained)
    return pretrained

def run_model_name(path: Path, name: str) -> str:
    """The model name a run records, with a relative ``local-dir:`` (a folder inside the run) made absolute."""
    if name.startswith("local-dir:") and not Path(name[len("local-dir:"):]).is_absolute():
        return f"local-dir:{(path / name[len('local-dir:'):]).resolve()}"
    return name


def load_run(path: str | Path) -> Run:
    """Load a run directory's model and endpoints; refuses if the zero-shot weights are not the ones patched."""
    path = Path(path)
    meta = read_run_meta(path)
    zeroshot = str(path / meta["zeroshot_file"]) if meta.get("zeroshot_file") else _repo_file(meta["pretrained"])
    meta = {**meta, "model": run_model_name(path, meta["model"])}
    model, preprocess, tokenizer = load_model(meta["model"], zeroshot)
    theta_zs = {k: v.clone() for k, v in model.state_dict().items()}
    expected = meta["provenance"].get("zeroshot_digest")
    if expected and state_digest(theta_zs) != expected:
        raise CheckpointError(f"the zero-shot weights of {meta['model']} ({meta['pretrained']}) are not the ones "
                              f"run {path} was fine-tuned from; re-run the fine-tune")
    ft_part, side = load_checkpoint(path / "finetuned.safetensors", require_sidecar=True)
    if meta.get("finetuned_sha256") and side["sha256"] != meta["finetuned_sha256"]:
        raise CheckpointError(f"{path}/finetuned.safetensors is not the file {path}/run.json describes (another "
                              "fine-tune's weights, or a half-written run); re-run the fine-tune")
    ft_part = cast_like(ft_part, theta_zs)
    unknown = [k for k in ft_part if k not in theta_zs]
    if unknown:
        raise CheckpointError(f"{path}/finetuned.safetensors has key {unknown[0]!r} that the model does not have")
    theta_ft = {**theta_zs, **ft_part}
    return Run(path, meta, model, preprocess, tokenizer, theta_zs, theta_ft, side["sha256"])

def run_task_vector(run: Run) -> TaskVector:
    """The run's task vector over the image encoder (the only part fine-tuning changes)."""
    base = f"{run.meta['model']}@{run.meta['provenance'].get('zeroshot_digest', '?')[:12]}"
    return TaskVector(vector={k: run.theta_ft[k] - v for k, v in run.theta_zs.items()
                              if k.startswith("visual.") and v.is_floating_point()}, base=base)
