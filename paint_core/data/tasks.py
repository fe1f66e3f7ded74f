"""The task registry: a task by name, dispatched by its prefix to the source that makes it.

- the embedded world's tasks (``list_tasks()``, ``embedded``), generated deterministically from a seed per split
  and index;
- ``torchvision:<DatasetName>`` (``root=`` and, for users with internet, ``download=True``; ``torchvision_tasks``);
- ``imagefolder:<path>`` (``path/{train,val,test}/<class>/*`` or one folder split 70/10/20 by a seed; ``folders``);
- ``typographic:<path>``, ``typographic-split:<path>``, ``rta100:<path>``, ``scam:<path>`` (``typographic``).
Validation splits are carved from training data, never from test data. Every source builds on ``task_types``
and none imports this module: the registry sits on top of them.
"""
from __future__ import annotations

from pathlib import Path

from ..core.names import unknown_name
from .embedded import EMBEDDED_TASKS
from .folders import imagefolder_task
from .task_types import SPLITS, Task, Transform
from .torchvision_tasks import torchvision_task
from .typographic import rta100_task, scam_task, typographic_task

__all__ = ["SPLITS", "Task", "Transform", "export_imagefolder", "get_task", "list_tasks"]


def list_tasks() -> dict[str, str]:
    """The embedded world's tasks (name -> description); ``torchvision:NAME`` and ``imagefolder:PATH`` work too."""
    return {n: f"[{t.kind}] {t.description}" for n, t in EMBEDDED_TASKS.items()}


def get_task(name: str, root: str | None = None, download: bool = False) -> Task:
    """A task by name; ``root``/``download`` are for torchvision datasets."""
    if name in EMBEDDED_TASKS:
        return EMBEDDED_TASKS[name]
    if name.startswith("imagefolder:"):
        return imagefolder_task(name[len("imagefolder:"):])
    if name.startswith("torchvision:"):
        return torchvision_task(name[len("torchvision:"):], root, download)
    for prefix, carve in (("typographic:", False), ("typographic-split:", True)):
        if name.startswith(prefix):
            return typographic_task(name[len(prefix):], carve=carve)
    if name.startswith(("rta100:", "scam:")):
        kind, _, spec = name.partition(":")
        return (rta100_task if kind == "rta100" else scam_task)(spec)
    raise unknown_name("task", name, EMBEDDED_TASKS,
                       more=", torchvision:<DatasetName>, imagefolder:<path>, typographic:<path>, rta100:<path> "
                            "or scam:<path>")


def export_imagefolder(task_name: str, out: str | Path, limit: int | None = None) -> dict[str, int]:
    """Write an embedded task as ``out/{train,val,test}/<class>/<i>.png``: try the real ImageFolder path on it.

    ``out`` must be new or empty: nothing already there is overwritten."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} already exists and is not an empty folder; choose a new folder")
    task = get_task(task_name)
    counts = {}
    for split in SPLITS:
        ds = task.split(split)
        n = len(ds) if limit is None else min(limit, len(ds))
        for i in range(n):
            img, label = ds[i]
            folder = Path(out) / split / task.classnames[label].replace(" ", "_")
            folder.mkdir(parents=True, exist_ok=True)
            img.save(folder / f"{i:05d}.png")
        counts[split] = n
    return counts
