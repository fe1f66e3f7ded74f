"""Zero-shot heads, the one batched forward pass, accuracy, and the alpha sweep."""
from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset
from tqdm.auto import tqdm

from ..configs import MAX_ALPHAS  # noqa: F401 (declared torch-free for the CLI's help)
from ..core.interpolation import Interpolator
from ..core.plan import DECIMALS, Plan
from ..data.decoded import decoded_split, uint8_split
from ..io.run_dir import PLAN_COLUMN, empty_sweep, with_plan_keys
from ..runtime import autocast, current_runtime, module_device
from . import distributed
from .feed import eval_batches


HEAD_CLASSES_PER_BATCH = 10  # classes whose prompts go through the text tower together (open_clip's default)


@torch.no_grad()
def zero_shot_head(model: torch.nn.Module, tokenizer: Callable, classnames: Sequence[str],
                   templates: Sequence[str]) -> torch.Tensor:
    """[C, D]: per class, the normalized mean of the normalized text embeddings of its prompts, built by open_clip's
    own ``build_zero_shot_classifier`` with ``HEAD_CLASSES_PER_BATCH`` classes per text-tower call (ImageNet's
    1,000 classes x 80 prompts: 100 calls, not 1,000)."""
    if len(classnames) == 0:
        raise ValueError("the class list is empty: give at least one class name")
    names = [c.strip() for c in classnames]
    if any(not c for c in names):
        raise ValueError("class names must be non-empty strings")
    dupes = sorted({c for c in names if names.count(c) > 1})
    if dupes:
        raise ValueError(f"duplicate class names: {', '.join(dupes)}")
    if not templates or any("{}" not in t for t in templates):
        raise ValueError("templates must be a non-empty list of strings each containing '{}'")
    from open_clip.zero_shot_classifier import build_zero_shot_classifier
    weights = build_zero_shot_classifier(model, tokenizer, names, list(templates), HEAD_CLASSES_PER_BATCH,
                                         module_device(model))
    return weights.T.float().cpu().contiguous()  # small; ``logits`` moves it to the images' device


def logits(model: torch.nn.Module, head: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """[N, C] scaled cosine logits of preprocessed ``images`` against ``head``."""
    feats = F.normalize(model.encode_image(images), dim=-1)
    return model.logit_scale.exp() * feats @ head.T.to(feats.device, feats.dtype)


@torch.no_grad()
def run_batches(fn: Callable[[torch.Tensor], torch.Tensor], data: torch.Tensor | Dataset, module: torch.nn.Module,
                batch_size: int = 256, shard: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The one batched forward pass: ``fn`` over a tensor of inputs, a Dataset of (input, label) or a decoded
    split, on ``module``'s device under the runtime's autocast, with ``module`` in eval mode (its mode is
    restored after). Returns (outputs as float32 on the CPU, labels or None). ``shard``: only this process's
    batches under torchrun (possibly none: then empty outputs)."""
    was_training = module.training
    module.eval()
    world, rank = (distributed.world_size(), distributed.rank()) if shard else (1, 0)
    try:
        outs, labels = [], []
        for x, y in eval_batches(data, batch_size, module_device(module), world, rank):
            with autocast():
                outs.append(fn(x))  # left on the device: one copy back at the end, no wait per batch
            if y is not None:
                labels.append(y)
        if not outs:
            if shard:
                return torch.empty(0), torch.empty(0, dtype=torch.long)
            raise ValueError("no inputs to run")
        return torch.cat(outs).float().cpu(), (torch.cat(labels) if labels else None)
    finally:
        module.train(was_training)


def predict(model: torch.nn.Module, head: torch.Tensor, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """[N, C] class probabilities for a tensor of preprocessed images."""
    return run_batches(lambda x: logits(model, head, x).softmax(-1), images, model, batch_size)[0]


def image_features(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """[N, D] normalized image embeddings of preprocessed ``images``."""
    return run_batches(lambda x: F.normalize(model.encode_image(x), dim=-1), images, model, batch_size)[0]


def check_max_eval(limit: int | None) -> None:
    """``max_eval`` (score the first N images of a split) is None (all) or a positive whole number."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"max_eval must be a positive number of images, got {limit}")


def materialize(dataset: Dataset, limit: int | None = None, batch_size: int = 256) -> TensorDataset:
    """Preprocess a small split once into tensors in memory (first ``limit`` items): for live subsamples and
    probes. Whole splits go through ``decode_split`` (bounded memory, decoded once, on disk)."""
    check_max_eval(limit)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    xs, ys = [], []
    for i in range(n):
        x, y = dataset[i]
        xs.append(x)
        ys.append(int(y))
    if not xs:
        raise ValueError("the split is empty")
    return TensorDataset(torch.stack(xs), torch.tensor(ys))


@torch.no_grad()
def evaluate(model: torch.nn.Module, head: torch.Tensor, dataset: Dataset, batch_size: int = 256) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` with classification ``head`` on ``dataset``. Under torchrun each
    process scores its share of the batches and the counts are added: exactly the one-process accuracy."""
    if len(dataset) == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    pred, labels = run_batches(lambda x: logits(model, head, x).argmax(-1), dataset, model, batch_size, shard=True)
    correct, seen = distributed.sum_counts([int((pred.long() == labels).sum()), len(pred)], module_device(model))
    if seen != len(dataset):
        raise RuntimeError(f"scored {seen} of {len(dataset)} images")
    return correct / seen


def decode_split(task, split: str, preprocess: Callable, limit: int | None = None) -> Dataset:
    """A task's split ready for repeated scoring: decoded once to uint8 at the input size, on disk (reused across
    alphas, runs and processes; under torchrun rank 0 decodes and the others wait), else the plain split."""
    from ..version import code_version
    check_max_eval(limit)
    rt = current_runtime()

    def build(progress: bool) -> Dataset | None:
        return decoded_split(lambda t: task.split(split, t), f"{task.name}/{split}", preprocess, limit,
                             rt.workers, progress, code_version())

    if distributed.world_size() > 1:
        if distributed.is_main():
            build(True)
        distributed.barrier()
    decoded = build(distributed.is_main())
    if decoded is not None:
        return decoded
    ds = task.split(split, preprocess)
    return ds if limit is None or limit >= len(ds) else torch.utils.data.Subset(ds, range(limit))


def train_split(task, preprocess: Callable, reads: int) -> Dataset:
    """A task's training split for a run that reads ``reads`` images: decoded once into the uint8 cache when that
    is an epoch or more (then held on a GPU and cut there, or read back a batch at a time), else decoded per image
    by the workers into uint8; either way normalised on the device, exactly the preprocess's tensors. The plain
    split when the preprocess cannot be split."""
    n = len(task.split("train"))
    if reads >= n:
        return decode_split(task, "train", preprocess)
    return uint8_split(lambda t: task.split("train", t), preprocess) or task.split("train", preprocess)


Evals = dict[tuple[str, str], tuple[Dataset, torch.Tensor]]


def build_evals(model: torch.nn.Module, preprocess: Callable, tokenizer: Callable, tasks: Sequence[str],
                splits: Sequence[str] = ("val", "test"), max_eval: int | None = None, data_root: str | None = None,
                download: bool = False) -> Evals:
    """(task, split) -> (the split decoded once, the task's zero-shot head): what ``sweep`` and the relatives
    score, in bounded memory whatever the splits' sizes."""
    from ..data.tasks import get_task
    evals = {}
    for name in tasks:
        task = get_task(name, root=data_root, download=download)
        head = zero_shot_head(model, tokenizer, task.classnames, task.templates)
        for split in splits:
            evals[(name, split)] = (decode_split(task, split, preprocess, max_eval), head)
    return evals


def evaluate_all(model: torch.nn.Module, evals: Evals, split: str | None = None,
                 batch_size: int = 256) -> dict[str, float]:
    """Accuracy of the model as it is on every task of ``evals`` (on one ``split``, or keys "task/split")."""
    return {(t if split else f"{t}/{s}"): evaluate(model, head, ds, batch_size)
            for (t, s), (ds, head) in evals.items() if split is None or s == split}




def parse_alphas(spec: str) -> list[float]:
    """"0:1:0.1" (start:stop:step, stop included) or "0,0.25,1": at most ``MAX_ALPHAS`` finite values.

    The size of a start:stop:step grid is computed from its three numbers before anything is expanded, so
    ``0:1:1e-9`` is refused at once instead of asking for a billion floats. The one parser of the CLI and the
    dashboard."""
    spec = spec.strip()
    shown = spec if len(spec) <= 40 else spec[:37] + "..."
    if ":" in spec:
        try:
            start, stop, step = (float(p) for p in spec.split(":"))
        except ValueError:
            raise ValueError(f"alphas {shown!r}: expected start:stop:step, e.g. 0:1:0.1") from None
        if not all(math.isfinite(v) for v in (start, stop, step)):
            raise ValueError(f"alphas {shown!r}: start, stop and step must be finite numbers")
        if step <= 0 or stop < start:
            raise ValueError(f"alphas {shown!r}: step must be > 0 and stop >= start")
        if step < 10 ** -DECIMALS:
            raise ValueError(f"alphas {shown!r}: step must be at least {10 ** -DECIMALS:g} (alphas are kept "
                             f"to {DECIMALS} decimals)")
        steps = (stop - start) / step  # inf when it overflows (e.g. 0:1e308:1e-6)
        if not math.isfinite(steps) or round(steps) + 1 > MAX_ALPHAS:
            count = f"{round(steps) + 1:,}" if math.isfinite(steps) else "too many"
            coarser = (stop - start) / (MAX_ALPHAS - 1)
            hint = f" (e.g. {start:g}:{stop:g}:{coarser:.2g})" if math.isfinite(coarser) else ""
            raise ValueError(f"alphas {shown!r}: {count} values; at most {MAX_ALPHAS:,} per sweep{hint}")
        return [round(start + i * step, DECIMALS) for i in range(round(steps) + 1)]
    parts = [a for a in spec.split(",") if a.strip()]  # no larger than the text itself
    if len(parts) > MAX_ALPHAS:
        raise ValueError(f"alphas: {len(parts):,} values; at most {MAX_ALPHAS:,} per sweep")
    try:
        values = [float(a) for a in parts]
    except ValueError:
        raise ValueError(f"alphas {shown!r}: expected numbers separated by commas") from None
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise ValueError(f"alphas {shown!r}: every alpha must be a finite number, got {bad[0]}")
    return values


def sweep(interpolator: Interpolator, evals: Evals,
          plans: Iterable[float | Plan], batch_size: int = 256, done: pd.DataFrame | None = None,
          on_alpha: Callable[[pd.DataFrame], None] | None = None, desc: str = "sweep") -> pd.DataFrame:
    """Accuracy of every (task, split) in ``evals`` at every plan (an alpha is the uniform plan); columns alpha,
    task, split, accuracy, n, plan (``Plan.key``; ``alpha`` is NaN on per-block rows).

    ``done`` holds rows already measured (a resumed sweep skips them); ``on_alpha`` receives the whole
    table after each plan, so the caller can write it out and lose nothing if the sweep is killed.
    """
    table = with_plan_keys(done) if done is not None and len(done) else empty_sweep()
    have = {(p, t, s) for p, t, s in table[[PLAN_COLUMN, "task", "split"]].itertuples(index=False)}
    for plan in tqdm(list(dict.fromkeys(Plan.of(p) for p in plans)), desc=desc, unit="plan"):
        todo = [(t, s) for (t, s) in evals if (plan.key, t, s) not in have]
        if not todo:
            continue
        interpolator.set_plan(plan)
        rows = []
        for task, split in todo:
            ds, head = evals[(task, split)]
            rows.append({"alpha": plan.uniform if plan.is_uniform else math.nan, "task": task, "split": split,
                         "accuracy": evaluate(interpolator.model, head, ds, batch_size), "n": len(ds),
                         PLAN_COLUMN: plan.key})
        table = pd.concat([table, pd.DataFrame(rows)], ignore_index=True) if len(table) else pd.DataFrame(rows)
        if on_alpha:
            on_alpha(table)
    return table.sort_values(["alpha", PLAN_COLUMN, "task", "split"]).reset_index(drop=True)


def attack_scores(model: torch.nn.Module, head: torch.Tensor, dataset: Dataset, written: Sequence[int],
                  batch_size: int = 256) -> dict:
    """Accuracy, and the attack-success rate of typographic images: among the attacked images (the written word
    is a class other than the label), the share classified as the written word. ``written[i]`` is -1 when
    image i's word is not a class. ``single_answer``: the class index given to every image, if the model gave
    only one (out-of-domain images often get one answer: then the rates say little)."""
    out, labels = run_batches(lambda x: logits(model, head, x), dataset, model, batch_size)
    pred = out.argmax(-1)
    one = len(pred) > 1 and bool((pred == pred[0]).all())
    return {**attack_summary(pred, labels, written), "single_answer": int(pred[0]) if one else None}


def attack_summary(pred: torch.Tensor, labels: torch.Tensor, written: Sequence[int]) -> dict:
    """``attack_scores`` from predicted classes: accuracy, attack success, n, n_attacked."""
    words = torch.as_tensor(np.asarray(written), dtype=torch.long)
    if len(words) != len(labels):
        raise ValueError(f"{len(words)} written words for {len(labels)} images")
    attacked = (words >= 0) & (words != labels)
    return {"accuracy": float((pred == labels).float().mean()), "n": len(labels), "n_attacked": int(attacked.sum()),
            "attack_success": float((pred[attacked] == words[attacked]).float().mean()) if attacked.any() else None}
