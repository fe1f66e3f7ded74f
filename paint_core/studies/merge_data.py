"""The data behind task vectors, for the merges that learn from it (core.methods.MergeData): each run's Fisher
and input Grams on its own task's train images, computed once per (run weights, task, split, n, seed) and cached
on disk beside the decoded images; AdaMerging's coefficients learned on the tasks' unlabeled test images."""
from __future__ import annotations

import copy
import hashlib
import json
import logging
from pathlib import Path
from typing import Callable, Sequence

import torch
from safetensors.torch import load_file, save

from ..configs import SearchConfig
from ..core.blocks import block_of_keys
from ..core.state_dicts import StateDict
from ..core.task_vectors import TaskVector
from ..data.decoded import cache_dir
from ..data.tasks import get_task
from ..engine.adamerging import learn_merge_coefficients
from ..engine.evaluation import materialize, zero_shot_head
from ..engine.statistics import fisher_diagonal, input_grams
from ..io.atomic import atomic_write_bytes
from ..models.run import Run

log = logging.getLogger(__name__)
STATISTICS_VERSION = 1  # bumped when what a statistic means changes, so old cache files are not read
STATISTICS_SPLIT = "train"


def statistics_dir() -> Path:
    return cache_dir() / "statistics"


class RunsData:
    """``MergeData`` for ``runs`` (one task vector each, in this order)."""

    def __init__(self, runs: Sequence[Run], seed: int = 0):
        self.runs, self.seed = list(runs), seed

    def fishers(self, n: int, endpoint: str = "finetuned") -> list[StateDict]:
        """Each run's diagonal Fisher at its fine-tuned (or ``endpoint="zeroshot"``) weights."""
        return [self._cached(r, "fisher", n, lambda model, images, head: fisher_diagonal(model, head, images, self.seed),
                             endpoint) for r in self.runs]

    def grams(self, n: int) -> list[StateDict]:
        return [self._cached(r, "grams", n, lambda model, images, head: input_grams(model, images)) for r in self.runs]

    def learn_coefficients(self, vectors: list[TaskVector], layerwise: bool, n: int, init: float, steps: int,
                           lr: float) -> list[dict[str, float]]:
        base = self.runs[0]
        tasks = []
        for r in self.runs:
            task = get_task(r.meta["task"], root=r.meta.get("data_root"))
            images = materialize(task.split("test", base.preprocess), n).tensors[0]  # unlabeled: labels unused
            tasks.append((zero_shot_head(base.model, base.tokenizer, task.classnames, task.templates), images))
        owner = block_of_keys(base.theta_zs)
        blocks = sorted({owner[k] for v in vectors for k in v.vector}) if layerwise else None
        config = SearchConfig(budget=steps, search_lr=lr, seed=self.seed)
        return learn_merge_coefficients(base.model, base.theta_zs, [v.vector for v in vectors], tasks, blocks, init,
                                        config)

    def _cached(self, run: Run, kind: str, n: int,
                compute: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], StateDict],
                endpoint: str = "finetuned") -> StateDict:
        """``compute(model, images, head)`` with the run's model at ``endpoint`` (a copy: a run's model may be
        shared by pages), or the cached result of the same inputs."""
        if endpoint not in ("finetuned", "zeroshot"):
            raise ValueError(f"endpoint is finetuned or zeroshot, not {endpoint!r}")
        key = {"kind": kind, "version": STATISTICS_VERSION, "endpoint": endpoint, "weights": run.weights_sha256,
               "zeroshot": run.meta["provenance"].get("zeroshot_digest"), "task": run.meta["task"],
               "split": STATISTICS_SPLIT, "n": n, "seed": self.seed}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
        path = statistics_dir() / f"{kind}-{endpoint}-{digest}.safetensors"
        if path.is_file():
            try:
                return load_file(path)
            except Exception as e:  # noqa: BLE001 -- a damaged cache file is recomputed, never trusted
                log.warning("recomputing the %s of %s: the cache file %s is unreadable (%s)", kind, run.path, path, e)
        task = get_task(run.meta["task"], root=run.meta.get("data_root"))
        images = materialize(task.split(STATISTICS_SPLIT, run.preprocess), n).tensors[0]
        head = zero_shot_head(run.model, run.tokenizer, task.classnames, task.templates)
        model = copy.deepcopy(run.model)
        model.load_state_dict(run.theta_ft if endpoint == "finetuned" else run.theta_zs)
        log.info("computing the %s of %s on %d %s images of %s", kind, run.path, len(images), STATISTICS_SPLIT,
                 run.meta["task"])
        result = {k: v.contiguous() for k, v in compute(model, images, head).items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, save(result))
        return result
