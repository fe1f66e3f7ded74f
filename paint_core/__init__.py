"""PAINT Explorer's engine: patch open-vocabulary models by interpolating weights.

    model, preprocess, tokenizer = paint_core.load_model("micro-rn-l")
    head = paint_core.zero_shot_head(model, tokenizer, task.classnames, task.templates)
    paint_core.Interpolator(model, theta_zs, theta_ft).set_alpha(0.4)
"""
from .core.interpolation import Interpolator, interpolate
from .core.selection import select_alpha
from .core.methods import merge, regmean_layer
from .core.task_vectors import TaskVector
from .data.tasks import Task, get_task, list_tasks
from .engine.evaluation import evaluate, predict, sweep, zero_shot_head
from .engine.finetune import FinetuneConfig, finetune
from .io.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from .models.clip import list_models, load_model
from .studies.patch import Run, load_run
from .version import __version__


__all__ = [
    "CheckpointError", "FinetuneConfig", "Interpolator", "Run", "Task", "TaskVector", "__version__", "evaluate",
    "finetune", "get_task", "interpolate", "merge", "list_models", "list_tasks", "load_checkpoint", "load_model", "load_run",
    "predict", "regmean_layer", "save_checkpoint", "select_alpha", "sweep", "zero_shot_head",
]
