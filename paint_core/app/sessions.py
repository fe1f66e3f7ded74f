"""Live sessions that need the studies: ``live/`` serves, this gives it the task vectors and merges.

The Task arithmetic page's session merges run task vectors (the merges that learn from data read the runs
behind them); the Closed vocabulary page's adds a study's encoder task vectors.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Sequence

from ..data.tasks import get_task
from ..engine.evaluation import materialize
from ..live.sessions import LIVE_EVAL_N, AdditionSession, EditSession, EvalSet
from ..models.encoders import create_encoder, load_head
from ..models.run import Run, run_task_vector
from ..runtime import Runtime
from ..studies.arithmetic import merged_vector
from ..studies.closed_vocab import encoder_task_vectors
from ..studies.merge_data import RunsData
from ..studies.relatives import check_same_zero_shot


def edit_session(runs: Sequence[Run], eval_sets: dict[str, EvalSet], runtime: Runtime | None = None) -> EditSession:
    """A task-arithmetic session over ``runs`` (one task vector each; they must share one zero-shot model)."""
    runs = check_same_zero_shot(list(runs))
    if not runs:
        raise ValueError("give at least one run (one task vector each)")
    data = RunsData(runs)  # for the merges that learn from data; statistics cached on disk
    return EditSession(runs[0], {r.meta["task"]: run_task_vector(r) for r in runs}, eval_sets,
                       partial(merged_vector, data=data), runtime)


def addition_session(study_dir: str | Path, tasks: Sequence[str], n: int = LIVE_EVAL_N, model: str = "micro-vit",
                     pretrained: str | None = None, runtime: Runtime | None = None) -> AdditionSession:
    """A closed-vocabulary addition session over a study directory written by ``closed_vocab_study`` (per task:
    head.safetensors, encoder.safetensors), scored on the first ``n`` test images of each task."""
    encoder, preprocess = create_encoder(model, pretrained)
    heads = {t: load_head(Path(study_dir) / t / "head.safetensors") for t in tasks}
    taus = encoder_task_vectors(study_dir, tasks, encoder.state_dict())
    data = {t: materialize(get_task(t).split("test", preprocess), n).tensors for t in tasks}
    return AdditionSession(encoder, heads, taus, data, runtime)
