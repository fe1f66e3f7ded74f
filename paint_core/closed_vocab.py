"""Task addition for closed-vocabulary models (Hazimeh, Favero, Frossard): an image encoder and linear heads.

Per task: align a new head first (linear probe, encoder frozen), freeze it, then fine-tune the encoder.
The task vector is over encoder weights only; every task keeps its own head. Task addition is
theta = theta_pre + lambda * sum(tau_t) with lambda chosen on validation data.

Embedded default: ``micro-vit``, a timm VisionTransformer the project pretrains with supervised labels
(shape x colour of single objects) on the embedded world. Real path: any timm model name.
"""
from __future__ import annotations

import difflib
import itertools
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision import transforms

from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from .state_dicts import StateDict, cast_like, check_compatible
from .finetune import FinetuneConfig, finetune_visual
from .models import embedded_weights
from .task_vectors import TaskVector, apply_vectors
from .training import cosine_lr, param_groups, train_loop

MICRO_VIT = {"img_size": 48, "patch_size": 8, "embed_dim": 128, "depth": 4, "num_heads": 4, "mlp_ratio": 2.0}
EMBEDDED_ENCODERS = {"micro-vit": MICRO_VIT}


def _micro_preprocess() -> Callable:
    return transforms.Compose([transforms.Resize(48, interpolation=transforms.InterpolationMode.BICUBIC),
                               transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)])


def create_encoder(name: str = "micro-vit", pretrained: str | None = None) -> tuple[nn.Module, Callable]:
    """An image encoder without a head (``num_classes=0``) and its preprocess.

    ``pretrained``: None = the shipped weights (embedded) or random (timm), "timm" = timm's own pretrained
    weights (needs internet), "random" = random init, or a path to a local checkpoint.
    """
    import timm
    with torch.random.fork_rng():
        torch.manual_seed(0)  # a random init is the same at every call: task vectors must share their base
        return _create_encoder(timm, name, pretrained)


def _create_encoder(timm, name: str, pretrained: str | None) -> tuple[nn.Module, Callable]:
    if name in EMBEDDED_ENCODERS:
        from timm.models.vision_transformer import VisionTransformer
        encoder, preprocess = VisionTransformer(**EMBEDDED_ENCODERS[name], num_classes=0), _micro_preprocess()
        if pretrained is None:
            shipped = embedded_weights(name)
            if not shipped.is_file():
                raise CheckpointError(f"{shipped} is missing: python -m paint_core pretrain-classifier --model {name}")
            pretrained = str(shipped)
    else:
        known = timm.list_models()
        if name not in known:
            close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
            hint = f" Close matches: {', '.join(close)}." if close else ""
            raise ValueError(f"Unknown timm model {name!r}.{hint} See timm.list_models() for every name.")
        encoder = timm.create_model(name, pretrained=pretrained == "timm", num_classes=0)
        cfg = timm.data.resolve_data_config({}, model=encoder)
        preprocess = timm.data.create_transform(**cfg)
    if pretrained not in (None, "timm", "random"):
        state, _ = load_checkpoint(pretrained) if str(pretrained).endswith(".safetensors") else (
            torch.load(pretrained, map_location="cpu", weights_only=True), None)
        expected = encoder.state_dict()
        state = cast_like({k.removeprefix("visual."): v for k, v in state.items()}, expected)
        try:
            check_compatible(expected, state, f"encoder {name} and checkpoint {Path(pretrained).name}")
        except ValueError as e:
            raise CheckpointError(str(e)) from e
        encoder.load_state_dict(state)
    return encoder.eval(), preprocess


class Classifier(nn.Module):
    """Encoder (as ``visual``, so the fine-tuning loop of open_clip models applies unchanged) + linear head."""

    def __init__(self, encoder: nn.Module, head: nn.Linear):
        super().__init__()
        self.visual = encoder
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.visual(x))


@dataclass(frozen=True)
class ClosedVocabConfig:
    probe_steps: int = 300
    probe_lr: float = 1e-2
    finetune: FinetuneConfig = FinetuneConfig(steps=300, lr=1e-4, warmup=30)
    lrs: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3)  # fine-tuning learning rates tried; the best on val is kept


def encode(encoder: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """[N, D] features of an encoder without a text tower (the one batched forward pass)."""
    from .evaluation import run_batches
    return run_batches(encoder, images, encoder, batch_size)[0]


def linear_probe_head(features: torch.Tensor, labels: torch.Tensor, n_classes: int, steps: int = 300,
                      lr: float = 1e-2, seed: int = 0) -> nn.Linear:
    """A linear head trained full-batch with Adam on frozen features (features standardised by the head's init)."""
    if len(labels) == 0:
        raise ValueError("no training examples for the linear probe")
    torch.manual_seed(seed)
    head = nn.Linear(features.shape[1], n_classes)
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=1e-4)
    train_loop(itertools.repeat((features, labels)), lambda b: F.cross_entropy(head(b[0]), b[1]), opt, steps,
               lambda step: lr, what="linear probe", progress=False)  # full batch, constant lr
    for p in head.parameters():
        p.requires_grad_(False)
    return head


def finetune_encoder(encoder: nn.Module, head: nn.Linear, train_set: Dataset,
                     cfg: FinetuneConfig = ClosedVocabConfig().finetune, **kwargs) -> StateDict:
    """Fine-tune the encoder with the head frozen; returns the encoder's state (the head never changes)."""
    model = Classifier(encoder, head)
    for p in head.parameters():
        p.requires_grad_(False)
    state = finetune_visual(model, train_set, lambda batch: F.cross_entropy(model(batch[0]), batch[1]), cfg, **kwargs)
    return {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}


@torch.no_grad()
def head_accuracy(encoder: nn.Module, head: nn.Linear, images: torch.Tensor, labels: torch.Tensor) -> float:
    return float((head(encode(encoder, images)).argmax(-1) == labels).float().mean())


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


def save_head(path: str | Path, head: nn.Linear, meta: dict) -> dict:
    return save_checkpoint(path, {k: v.detach() for k, v in head.state_dict().items()}, meta)


def load_head(path: str | Path) -> nn.Linear:
    state, _ = load_checkpoint(path)
    out_f, in_f = state["weight"].shape
    head = nn.Linear(in_f, out_f)
    head.load_state_dict(state)
    for p in head.parameters():
        p.requires_grad_(False)
    return head


# ------------------------------------------------------------------------------ pretraining
def _draw_shape_colour(rng: np.random.Generator):
    from . import world as w
    s, c = int(rng.integers(0, len(w.SHAPES))), int(rng.integers(0, len(w.COLOURS)))
    style = "outline" if rng.random() < 0.05 else "filled"  # the outline style stays rare, as in the CLIP corpus
    return w.render_object(rng, w.SHAPES[s], list(w.COLOURS)[c], style), s * len(w.COLOURS) + c


@dataclass(frozen=True)
class EncoderPretrainConfig:
    steps: int = 2000
    batch_size: int = 128
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.05
    seed: int = 0


def pretrain_encoder(name: str = "micro-vit", out: str | Path | None = None,
                     cfg: EncoderPretrainConfig = EncoderPretrainConfig(), command: str = "") -> Path:
    """Supervised pretraining of an embedded encoder on shape x colour labels (42 classes); writes float16."""
    from . import world as w
    from .tasks import GeneratedSplit

    steps, batch_size, lr, warmup, seed = cfg.steps, cfg.batch_size, cfg.lr, cfg.warmup, cfg.seed
    encoder, preprocess = create_encoder(name, "random")
    n_classes = len(w.SHAPES) * len(w.COLOURS)
    model = Classifier(encoder, nn.Linear(encoder.num_features, n_classes))
    data = GeneratedSplit(_draw_shape_colour, steps * batch_size, (4242, seed), preprocess)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=lr)
    model.train()
    train_loop(loader, lambda b: F.cross_entropy(model(b[0]), b[1]), opt, steps,
               lambda step: cosine_lr(step, steps, lr, warmup), what=f"pretrain {name}")
    path = Path(out) if out else embedded_weights(name)
    save_checkpoint(path, {k: v.detach() for k, v in encoder.state_dict().items()},
                    {"model": name, "pretrained_on": "embedded world, shape x colour (42 classes)", "steps": steps,
                     "batch_size": batch_size, "lr": lr, "seed": seed, "command": command}, storage_dtype=torch.float16)
    return path


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
    from .evaluation import materialize
    from .results import resume, write_results
    from .tasks import get_task

    d = out / task_name
    inputs = {"model": name, "pretrained": pretrained, "task": task_name, "config": _config_inputs(cfg),
              "probe_n": probe_n, "max_eval": max_eval}
    done = resume(d / "metrics.json", "closed-vocab-task", inputs)
    if done:
        return done
    encoder, preprocess = create_encoder(name, pretrained)
    task = get_task(task_name)
    probe = materialize(task.split("train", preprocess), probe_n)
    head = linear_probe_head(encode(encoder, probe.tensors[0]), probe.tensors[1], len(task.classnames),
                             cfg.probe_steps, cfg.probe_lr, cfg.finetune.seed)
    head_before = {k: v.clone() for k, v in head.state_dict().items()}
    split = {s: materialize(task.split(s, preprocess), max_eval) for s in ("val", "test")}
    metrics = {"task": task_name, "lrs": list(cfg.lrs),
               "probe": {s: head_accuracy(encoder, head, *ds.tensors) for s, ds in split.items()}}
    theta_pre = {k: v.clone() for k, v in encoder.state_dict().items()}
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
    from .evaluation import materialize
    from .tasks import get_task

    from .results import read_results, resume, write_results

    out = Path(out)
    if len(tasks) < 2:
        raise ValueError("task addition needs at least two tasks")
    inputs = {"model": name, "pretrained": pretrained, "tasks": list(tasks), "config": _config_inputs(cfg),
              "lambdas": [float(v) for v in lambdas], "grid": [float(v) for v in grid], "grid_n": grid_n,
              "probe_n": probe_n, "max_eval": max_eval}
    if resume(out / "study.json", "closed-vocab", inputs):
        return read_results(out / "study.json", "closed-vocab")  # finished before from the same inputs
    metrics = {t: task_run(out, name, t, cfg, probe_n, pretrained, max_eval) for t in tasks}
    encoder, preprocess = create_encoder(name, pretrained)
    theta_pre = {k: v.clone() for k, v in encoder.state_dict().items()}
    heads = {t: load_head(out / t / "head.safetensors") for t in tasks}
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
        return heads[t](encode(encoder, data[(t, "test")][0][:grid_n])).argmax(-1)

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
    from .evaluation import materialize, zero_shot_head
    from .relatives import load_runs
    from .results import read_results, resume, write_results
    from .runs import run_inputs
    from .tasks import get_task

    runs = load_runs(list(run_paths))
    inputs = {"runs": [run_inputs(r) for r in runs], "grid": [float(v) for v in grid], "grid_n": grid_n}
    if resume(out, "disentanglement", inputs):
        return read_results(out, "disentanglement")
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
        from .evaluation import predict as probs
        model.load_state_dict(state)
        return probs(model, heads[t], data[t]).argmax(-1)

    xi = disentanglement_error(predict, theta_pre, taus, tasks, grid)
    model.load_state_dict(theta_pre)
    return write_results(out, "disentanglement", inputs, {
        "model": runs[0].meta["model"], "tasks": list(tasks), "grid": list(grid), "n_per_task": grid_n,
        "error": xi.tolist()})
