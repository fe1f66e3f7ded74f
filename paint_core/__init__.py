"""PAINT Explorer's engine: patch open-vocabulary models by interpolating weights.

    model, preprocess, tokenizer = paint_core.load_model("micro-rn-l")
    head = paint_core.zero_shot_head(model, tokenizer, task.classnames, task.templates)
    paint_core.Interpolator(model, theta_zs, theta_ft).set_alpha(0.4)

The public names are imported on first use (PEP 562): ``import paint_core`` and the CLI's ``--help`` do not pay
for torch and open_clip (tens of seconds on a loaded machine) before anything needs them.
"""
from __future__ import annotations

import importlib
from typing import Any

# public name -> the module that defines it (relative to this package)
_PUBLIC = {
    "Interpolator": ".core.interpolation", "interpolate": ".core.interpolation",
    "select_alpha": ".core.selection",
    "TaskVector": ".core.task_vectors", "merge": ".core.methods", "regmean_layer": ".core.methods",
    "Task": ".data.tasks", "get_task": ".data.tasks", "list_tasks": ".data.tasks",
    "evaluate": ".engine.evaluation", "predict": ".engine.evaluation", "sweep": ".engine.evaluation",
    "zero_shot_head": ".engine.evaluation",
    "FinetuneConfig": ".configs", "finetune": ".engine.finetune",
    "CheckpointError": ".io.checkpoints", "load_checkpoint": ".io.checkpoints", "save_checkpoint": ".io.checkpoints",
    "list_models": ".models.registry", "load_model": ".models.clip",
    "Run": ".models.run", "load_run": ".models.run",
    "__version__": ".version",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'paint_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
    globals()[name] = value  # once imported, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
