"""The run directory: the unit the CLI, the dashboard and cached_results/ share.

    run.json                 what was done: model, pretrained, task, supported tasks, hyper-parameters,
                             seed, code version, command (config and provenance as separate fields)
    finetuned.safetensors    the fine-tuned image encoder (``visual.*``; the rest equals zero-shot) + sidecar
    sweep.csv                alpha, task, split, accuracy, n (rewritten atomically after every alpha)
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch

from .checkpoints import (CheckpointError, StateDict, atomic_write_text, cast_like, load_checkpoint,
                          save_checkpoint)
from .evaluation import SWEEP_COLUMNS, build_evals, select_alpha, sweep, zero_shot_head
from .finetune import FinetuneConfig, finetune
from .interpolation import Interpolator, interpolate
from .models import load_model
from .task_vectors import TaskVector
from .tasks import get_task
from .version import code_version

log = logging.getLogger(__name__)
RUN_SCHEMA = 1
RUN_FILES = ("run.json", "finetuned.safetensors", "finetuned.json")


def state_digest(state: StateDict) -> str:
    """sha256 over keys and tensor bytes: identifies the zero-shot weights a run was patched from."""
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


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

    def sweep_table(self) -> pd.DataFrame:
        return read_sweep(self.path)


def read_run_meta(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"run directory not found: {path}")
    missing = [f for f in RUN_FILES if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"run directory {path} is missing: {', '.join(missing)} "
                                "(a run is made by: python -m paint_core finetune ... --out DIR)")
    meta = json.loads((path / "run.json").read_text())
    if meta.get("schema") != RUN_SCHEMA:
        raise ValueError(f"{path}/run.json has schema {meta.get('schema')}, this code reads schema {RUN_SCHEMA}")
    return meta


def write_run_meta(path: Path, meta: dict) -> None:
    atomic_write_text(path / "run.json", json.dumps(meta, indent=2, sort_keys=True))


def read_sweep(path: str | Path) -> pd.DataFrame:
    f = Path(path) / "sweep.csv"
    if not f.is_file():
        return pd.DataFrame(columns=SWEEP_COLUMNS)
    df = pd.read_csv(f)
    if list(df.columns) != SWEEP_COLUMNS:
        raise ValueError(f"{f} has columns {list(df.columns)}, expected {SWEEP_COLUMNS}")
    return df


def run_finetune(out: str | Path, model_name: str, pretrained: str | None, task_name: str,
                 cfg: FinetuneConfig = FinetuneConfig(), command: str = "", data_root: str | None = None,
                 on_step: Callable[[int, float], None] | None = None,
                 should_stop: Callable[[], bool] | None = None, storage_dtype: torch.dtype | None = None,
                 download: bool = False) -> Path:
    """Fine-tune ``model_name`` on ``task_name`` and write a run directory at ``out``.

    ``storage_dtype`` (e.g. float16, used for the runs shipped in cached_results/) stores the fine-tuned
    encoder at that precision; every sweep and the dashboard read the stored weights, so they agree.
    """
    out = Path(out)
    task = get_task(task_name, root=data_root, download=download)
    model, preprocess, tokenizer = load_model(model_name, pretrained)
    theta_zs = {k: v.clone() for k, v in model.state_dict().items()}
    zs_digest = state_digest(theta_zs)
    head = zero_shot_head(model, tokenizer, task.classnames, task.templates)
    theta_ft = finetune(model, head, task.split("train", preprocess), cfg, on_step=on_step, should_stop=should_stop)
    visual = {k: v for k, v in theta_ft.items() if k.startswith("visual.")}
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "finetuned.safetensors", visual, {
        "model": model_name, "pretrained": pretrained, "task": task_name, "alpha": 1.0, "contains": "visual",
        "zeroshot_digest": zs_digest}, storage_dtype=storage_dtype)
    write_run_meta(out, {
        "schema": RUN_SCHEMA, "model": model_name, "pretrained": pretrained, "task": task_name,
        "data_root": data_root, "download": download, "supported": [], "config": asdict(cfg),
        "provenance": {"code_version": code_version(), "command": command, "seed": cfg.seed,
                       "zeroshot_digest": zs_digest}})
    (out / "sweep.csv").unlink(missing_ok=True)  # a new fine-tune invalidates any old sweep
    return out


def load_run(path: str | Path) -> Run:
    """Load a run directory's model and endpoints; refuses if the zero-shot weights are not the ones patched."""
    path = Path(path)
    meta = read_run_meta(path)
    model, preprocess, tokenizer = load_model(meta["model"], meta["pretrained"])
    theta_zs = {k: v.clone() for k, v in model.state_dict().items()}
    expected = meta["provenance"].get("zeroshot_digest")
    if expected and state_digest(theta_zs) != expected:
        raise CheckpointError(f"the zero-shot weights of {meta['model']} ({meta['pretrained']}) are not the ones "
                              f"run {path} was fine-tuned from; re-run the fine-tune")
    ft_part, _ = load_checkpoint(path / "finetuned.safetensors")
    ft_part = cast_like(ft_part, theta_zs)
    unknown = [k for k in ft_part if k not in theta_zs]
    if unknown:
        raise CheckpointError(f"{path}/finetuned.safetensors has key {unknown[0]!r} that the model does not have")
    theta_ft = {**theta_zs, **ft_part}
    return Run(path, meta, model, preprocess, tokenizer, theta_zs, theta_ft)


def run_task_vector(run: Run) -> TaskVector:
    """The run's task vector over the image encoder (the only part fine-tuning changes)."""
    base = f"{run.meta['model']}@{run.meta['provenance'].get('zeroshot_digest', '?')[:12]}"
    return TaskVector(vector={k: run.theta_ft[k] - v for k, v in run.theta_zs.items()
                              if k.startswith("visual.") and v.is_floating_point()}, base=base)


def run_sweep(path: str | Path, supported: Sequence[str], alphas: Sequence[float],
              splits: Sequence[str] = ("val", "test"), max_eval: int | None = None, batch_size: int = 256,
              on_alpha: Callable[[pd.DataFrame], None] | None = None) -> pd.DataFrame:
    """Sweep a run over ``alphas`` on the patch task and ``supported`` tasks; resumes from sweep.csv."""
    run = load_run(path)
    meta = run.meta
    tasks = [meta["task"], *[s for s in supported if s != meta["task"]]]
    if not supported:
        raise ValueError("give at least one supported task (e.g. --supported shapes,colours)")
    previous = read_sweep(path)
    if len(previous) and (meta.get("supported") != list(supported) or meta.get("max_eval") != max_eval):
        log.info("sweep settings changed: starting sweep.csv afresh")
        previous = previous.iloc[0:0]
    meta.update(supported=list(supported), max_eval=max_eval)
    write_run_meta(Path(path), meta)
    evals = build_evals(run.model, run.preprocess, run.tokenizer, tasks, splits, max_eval, meta.get("data_root"),
                        meta.get("download", False))
    interp = Interpolator(run.model, run.theta_zs, run.theta_ft)

    def save(table: pd.DataFrame) -> None:
        atomic_write_text(Path(path) / "sweep.csv", table[SWEEP_COLUMNS].to_csv(index=False))
        if on_alpha:
            on_alpha(table)

    table = sweep(interp, evals, alphas, batch_size, done=previous, on_alpha=save)
    save(table)
    return table


def select_run(path: str | Path) -> dict:
    meta = read_run_meta(path)
    if not meta.get("supported"):
        raise ValueError(f"run {path} has no sweep yet: python -m paint_core sweep --run {path} --supported ...")
    df = read_sweep(path)
    choice = select_alpha(df, meta["task"], meta["supported"], split="val")
    test = df[(df["split"] == "test") & (df["alpha"] == choice["alpha"])]
    choice["test"] = {r.task: float(r.accuracy) for r in test.itertuples()}
    zs = df[(df["split"] == "test") & (df["alpha"] == df["alpha"].min())]
    choice["test_zeroshot"] = {r.task: float(r.accuracy) for r in zs.itertuples()}
    return choice


def export_run(path: str | Path, alpha: float, out: str | Path, allow_extrapolation: bool = False) -> dict:
    """Write the full model state at ``alpha`` as safetensors with a sidecar; returns the sidecar."""
    run = load_run(path)
    state = interpolate(run.theta_zs, run.theta_ft, alpha, allow_extrapolation)
    return save_checkpoint(out, state, {"model": run.meta["model"], "pretrained": run.meta["pretrained"],
                                        "task": run.meta["task"], "alpha": float(alpha), "run": str(path)})
