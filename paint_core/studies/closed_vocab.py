"""Task addition for closed-vocabulary models (Hazimeh, Favero, Frossard): an image encoder and linear heads.

Per task: align a new head first (linear probe, encoder frozen), freeze it, then fine-tune the encoder.
The task vector is over encoder weights only; every task keeps its own head. Task addition is
theta = theta_pre + lambda * sum(tau_t) with lambda chosen on validation data.

Embedded default: ``micro-vit``, a timm VisionTransformer the project pretrains with supervised labels
(shape x colour of single objects) on the embedded world. Real path: any timm model name.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..core.state_dicts import StateDict, cast_like
from ..core.task_vectors import TaskVector, apply_vectors
from ..engine.finetune import FinetuneConfig, finetune_visual
from ..engine.probes import encode, head_accuracy, head_predictions, linear_probe_head
from ..io.checkpoints import load_checkpoint, save_checkpoint
from ..io.results import Fields, document, finished, resume, write_results
from ..models.encoders import Classifier, create_encoder, load_head, save_head
from ..runtime import current_runtime, module_device
from ..configs import ClosedVocabConfig  # noqa: F401 (declared there, torch-free for the CLI)


def finetune_encoder(encoder: nn.Module, head: nn.Linear, train_set: Dataset,
                     cfg: FinetuneConfig = ClosedVocabConfig().finetune, **kwargs) -> StateDict:
    """Fine-tune the encoder with the head frozen; returns the encoder's state (the head never changes)."""
    model = Classifier(encoder, head)
    for p in head.parameters():
        p.requires_grad_(False)
    state = finetune_visual(model, train_set, lambda batch: F.cross_entropy(model(batch[0]), batch[1]), cfg, **kwargs)
    return {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}


def encoder_task_vectors(study_dir: str | Path, tasks: Sequence[str], theta_pre: StateDict) -> list[TaskVector]:
    """Each task's fine-tuned encoder (``study_dir``/<task>/encoder.safetensors) minus ``theta_pre``."""
    return [TaskVector(theta_pre, cast_like(load_checkpoint(Path(study_dir) / t / "encoder.safetensors")[0],
                                            theta_pre)) for t in tasks]


def disentanglement_error(predict: Callable[[StateDict, str], torch.Tensor], theta_pre: StateDict,
                          taus: tuple[TaskVector, TaskVector], tasks: tuple[str, str],
                          grid: Sequence[float]) -> np.ndarray:
    """xi(l1, l2) = sum over the two tasks t of the fraction of t's inputs whose prediction under the combined
    edit theta_pre + l1 tau_1 + l2 tau_2 differs from that under t's edit alone (theta_pre + l_t tau_t).

    ``predict(state, task)`` returns the predicted classes of ``task``'s evaluation inputs. Returns a
    [len(grid), len(grid)] array, rows l1, columns l2.
    """
    single = {}
    for i, task in enumerate(tasks):
        for lam in grid:
            coef = [lam if j == i else 0.0 for j in range(2)]
            single[(task, lam)] = predict(apply_vectors(theta_pre, taus, coef), task)
    out = np.zeros((len(grid), len(grid)))
    for a, l1 in enumerate(grid):
        for b, l2 in enumerate(grid):
            state = apply_vectors(theta_pre, taus, [l1, l2])
            out[a, b] = sum(float((predict(state, t) != single[(t, lam)]).float().mean())
                            for t, lam in zip(tasks, (l1, l2)))
    return out


def _encoder_on_device(name: str, pretrained: str | None) -> tuple[nn.Module, Callable]:
    """``create_encoder`` on the current runtime's device (``paint_core.runtime``)."""
    encoder, preprocess = create_encoder(name, pretrained)
    return encoder.to(current_runtime().torch_device), preprocess


# ------------------------------------------------------------------------------ the study
LAMBDAS = [round(0.1 * i, 1) for i in range(16)]
GRID = [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0]


def _config_inputs(cfg: ClosedVocabConfig) -> dict:
    return {"probe_steps": cfg.probe_steps, "probe_lr": cfg.probe_lr, "finetune": asdict(cfg.finetune),
            "lrs": list(cfg.lrs)}


def task_run(out: Path, name: str, task_name: str, cfg: ClosedVocabConfig, probe_n: int = 2000,
             pretrained: str | None = None, max_eval: int | None = None) -> dict:
    """Probe a head, then fine-tune the encoder under it; writes head/encoder safetensors + metrics.json, and is
    redone unless metrics.json was computed from the same inputs (every setting, not just the learning rates)."""
    from ..engine.evaluation import materialize
    from ..data.tasks import get_task

    d = out / task_name
    inputs = {"model": name, "pretrained": pretrained, "task": task_name, "config": _config_inputs(cfg),
              "probe_n": probe_n, "max_eval": max_eval}
    done = resume(d / "metrics.json", "closed-vocab-task", inputs)
    if done:
        return done
    encoder, preprocess = _encoder_on_device(name, pretrained)
    task = get_task(task_name)
    probe = materialize(task.split("train", preprocess), probe_n)
    head = linear_probe_head(encode(encoder, probe.tensors[0]), probe.tensors[1], len(task.classnames),
                             cfg.probe_steps, cfg.probe_lr, cfg.finetune.seed)
    head_before = {k: v.clone() for k, v in head.state_dict().items()}
    split = {s: materialize(task.split(s, preprocess), max_eval) for s in ("val", "test")}
    metrics = {"task": task_name, "lrs": list(cfg.lrs),
               "probe": {s: head_accuracy(encoder, head, *ds.tensors) for s, ds in split.items()}}
    theta_pre = {k: v.detach().cpu().clone() for k, v in encoder.state_dict().items()}
    search, best = {}, None
    for lr in cfg.lrs:  # choose the fine-tuning learning rate on val (ties: the smaller lr)
        encoder.load_state_dict(theta_pre)
        state = finetune_encoder(encoder, head, task.split("train", preprocess), replace(cfg.finetune, lr=lr))
        search[str(lr)] = head_accuracy(encoder, head, *split["val"].tensors)
        if best is None or search[str(lr)] > search[str(best[0])]:
            best = (lr, state)
    if any(not torch.equal(v, head.state_dict()[k]) for k, v in head_before.items()):
        raise RuntimeError("the head changed during encoder fine-tuning")
    metrics["lr_search_val"], metrics["lr"] = search, best[0]
    state = best[1]
    save_head(d / "head.safetensors", head, {"task": task_name, "model": name})
    save_checkpoint(d / "encoder.safetensors", state, {"task": task_name, "model": name}, storage_dtype=torch.float16)
    stored, _ = load_checkpoint(d / "encoder.safetensors")  # measure the weights as stored
    encoder.load_state_dict(cast_like(stored, encoder.state_dict()))
    metrics["finetuned"] = {s: head_accuracy(encoder, head, *ds.tensors) for s, ds in split.items()}
    return write_results(d / "metrics.json", "closed-vocab-task", inputs, metrics)["results"]


def closed_vocab_study(out: str | Path, name: str = "micro-vit", tasks: Sequence[str] = ("digits", "counting", "typographic"),
                       cfg: ClosedVocabConfig = ClosedVocabConfig(), lambdas: Sequence[float] = LAMBDAS,
                       grid: Sequence[float] = GRID, grid_n: int = 200, pretrained: str | None = None,
                       probe_n: int = 2000, max_eval: int | None = None) -> dict:
    """Per-task probes and fine-tunes, task addition with lambda on val, linear-probe baseline, and the
    disentanglement error of the first two tasks over ``grid`` x ``grid``. Writes ``out``/study.json."""
    from ..engine.evaluation import materialize
    from ..data.tasks import get_task


    out = Path(out)
    if len(tasks) < 2:
        raise ValueError("task addition needs at least two tasks")
    inputs = {"model": name, "pretrained": pretrained, "tasks": list(tasks), "config": _config_inputs(cfg),
              "lambdas": [float(v) for v in lambdas], "grid": [float(v) for v in grid], "grid_n": grid_n,
              "probe_n": probe_n, "max_eval": max_eval}
    done = finished(out / "study.json", "closed-vocab", inputs)
    if done:
        return done  # computed before from the same inputs
    metrics = {t: task_run(out, name, t, cfg, probe_n, pretrained, max_eval) for t in tasks}
    encoder, preprocess = _encoder_on_device(name, pretrained)
    theta_pre = {k: v.detach().cpu().clone() for k, v in encoder.state_dict().items()}  # task algebra on the CPU
    heads = {t: load_head(out / t / "head.safetensors").to(module_device(encoder)) for t in tasks}
    taus = encoder_task_vectors(out, tasks, theta_pre)
    data = {(t, s): materialize(get_task(t).split(s, preprocess), max_eval).tensors for t in tasks for s in ("val", "test")}

    def accuracies(state: StateDict, split: str) -> dict[str, float]:
        encoder.load_state_dict(state)
        return {t: head_accuracy(encoder, heads[t], *data[(t, split)]) for t in tasks}

    sweep = []
    for lam in lambdas:
        acc = accuracies(apply_vectors(theta_pre, taus, [lam] * len(tasks)), "val")
        sweep.append({"lambda": lam, **acc,
                      "mean_normalized": float(np.mean([acc[t] / metrics[t]["finetuned"]["val"] for t in tasks]))})
    best = max(sweep, key=lambda r: (r["mean_normalized"], -r["lambda"]))["lambda"]
    test = accuracies(apply_vectors(theta_pre, taus, [best] * len(tasks)), "test")
    ft_test = {t: metrics[t]["finetuned"]["test"] for t in tasks}
    probe_test = {t: metrics[t]["probe"]["test"] for t in tasks}

    def predict(state: StateDict, t: str) -> torch.Tensor:
        encoder.load_state_dict(state)
        return head_predictions(encoder, heads[t], data[(t, "test")][0][:grid_n])

    xi = disentanglement_error(predict, theta_pre, (taus[0], taus[1]), (tasks[0], tasks[1]), grid)
    result = {
        "model": name, "tasks": list(tasks), "per_task": metrics, "lambda_sweep_val": sweep, "lambda": best,
        "addition_test": test, "finetuned_test": ft_test, "probe_test": probe_test,
        "addition_mean_absolute": float(np.mean(list(test.values()))),
        "addition_mean_normalized": float(np.mean([test[t] / ft_test[t] for t in tasks])),
        "probe_mean_absolute": float(np.mean(list(probe_test.values()))),
        "probe_mean_normalized": float(np.mean([probe_test[t] / ft_test[t] for t in tasks])),
        "disentanglement": {"tasks": list(tasks[:2]), "grid": list(grid), "n_per_task": grid_n, "error": xi.tolist()},
    }
    return write_results(out / "study.json", "closed-vocab", inputs, result)


def clip_disentanglement(run_paths: tuple[str | Path, str | Path], out: str | Path, grid: Sequence[float] = GRID,
                         grid_n: int = 200) -> dict:
    """The same disentanglement error for an open-vocabulary model, from two run directories; writes ``out``."""
    from ..engine.evaluation import materialize, zero_shot_head
    from .relatives import load_runs
    from .patch import run_inputs
    from ..data.tasks import get_task

    runs = load_runs(list(run_paths))
    inputs = {"runs": [run_inputs(r) for r in runs], "grid": [float(v) for v in grid], "grid_n": grid_n}
    done = finished(out, "disentanglement", inputs)
    if done:
        return done  # computed before from the same inputs
    model = runs[0].model
    theta_pre = runs[0].theta_zs
    tasks = tuple(r.meta["task"] for r in runs)
    taus = tuple(TaskVector(theta_pre, r.theta_ft) for r in runs)
    data, heads = {}, {}
    for t in tasks:
        task = get_task(t)
        data[t] = materialize(task.split("test", runs[0].preprocess), grid_n).tensors[0]
        heads[t] = zero_shot_head(model, runs[0].tokenizer, task.classnames, task.templates)

    def predict(state: StateDict, t: str) -> torch.Tensor:
        from ..engine.evaluation import predict as probs
        model.load_state_dict(state)
        return probs(model, heads[t], data[t]).argmax(-1)

    xi = disentanglement_error(predict, theta_pre, taus, tasks, grid)
    model.load_state_dict(theta_pre)
    return write_results(out, "disentanglement", inputs, {
        "model": runs[0].meta["model"], "tasks": list(tasks), "grid": list(grid), "n_per_task": grid_n,
        "error": xi.tolist()})


@dataclass(frozen=True)
class ClosedVocabTask:
    """One task's probe and fine-tune (``task_run``, kind "closed-vocab-task", <study>/<task>/metrics.json)."""
    KIND: ClassVar[str] = "closed-vocab-task"
    task: str
    lr: float                  # the fine-tuning learning rate chosen on val
    probe: dict[str, float]    # "val", "test": accuracy of the probed head on the pretrained encoder
    finetuned: dict[str, float]

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], source: str | Path = "a results document") -> ClosedVocabTask:
        _, r = document(doc, cls.KIND, source)
        return cls(r["task"], float(r["lr"]), r.floats("probe", ("val", "test")), r.floats("finetuned", ("val", "test")))


@dataclass(frozen=True)
class Disentanglement:
    """The disentanglement error xi over a lambda grid for two tasks (kind "disentanglement", or a closed-vocab
    study's own): ``error[i][j]`` at lambda ``grid[i]`` of the first task and ``grid[j]`` of the second."""
    KIND: ClassVar[str] = "disentanglement"
    model: str
    tasks: tuple[str, str]
    grid: tuple[float, ...]
    error: tuple[tuple[float, ...], ...]

    @classmethod
    def from_fields(cls, f: Fields, model: str) -> Disentanglement:
        return cls(model, tuple(f["tasks"]), tuple(float(g) for g in f["grid"]),
                   tuple(tuple(float(v) for v in row) for row in f["error"]))

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], source: str | Path = "a results document") -> Disentanglement:
        _, r = document(doc, cls.KIND, source)
        return cls.from_fields(r, r["model"])


@dataclass(frozen=True)
class ClosedVocabResults:
    """The closed-vocabulary study (``closed_vocab_study``, kind "closed-vocab", study.json) as its readers use it;
    accuracies 0-1 on the test split, normalized = accuracy / the task's own fine-tuned accuracy."""
    KIND: ClassVar[str] = "closed-vocab"
    model: str
    tasks: tuple[str, ...]
    lam: float                       # chosen on val
    addition_test: dict[str, float]
    finetuned_test: dict[str, float]
    probe_test: dict[str, float]
    addition_mean_absolute: float
    addition_mean_normalized: float
    probe_mean_absolute: float
    probe_mean_normalized: float
    disentanglement: Disentanglement  # of the first two tasks

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], source: str | Path = "a results document") -> ClosedVocabResults:
        _, r = document(doc, cls.KIND, source)
        tasks = tuple(r["tasks"])
        return cls(r["model"], tasks, float(r["lambda"]), r.floats("addition_test", tasks),
                   r.floats("finetuned_test", tasks), r.floats("probe_test", tasks), float(r["addition_mean_absolute"]),
                   float(r["addition_mean_normalized"]), float(r["probe_mean_absolute"]),
                   float(r["probe_mean_normalized"]), Disentanglement.from_fields(r.part("disentanglement"), r["model"]))
