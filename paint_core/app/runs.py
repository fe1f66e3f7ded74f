"""Finding runs and studies: the one discovery of run directories and relatives/ study folders under roots.

A run directory is a folder holding run.json (``io/run_dir``); one being built (``.NAME.partial-*``, inside a
hidden folder) is not offered. Labels are the run's path under its root, after the root's prefix, so
``micro-rn-l/digits`` is a shipped run and ``runs/micro-rn-l/digits`` one of the user's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..data.embedded import SUPPORTED_TASKS
from ..models.run import Run
from ..studies.patch import select_run


def find_runs(roots: Sequence[tuple[str | Path, str]]) -> dict[str, str]:
    """label -> run directory for every run under each ``(root, label prefix)``, in root order; a label found under
    two roots (the write root is ./runs) names the first root's run. A root that is not a folder is skipped."""
    found: dict[str, str] = {}
    for root, prefix in roots:
        root = Path(root)
        for meta in sorted(root.glob("**/run.json")) if root.is_dir() else []:
            rel = meta.parent.relative_to(root)
            if not any(part.startswith(".") for part in rel.parts):  # not a run being built (.NAME.partial-*)
                found.setdefault(prefix + str(rel), str(meta.parent))
    return found


def find_relatives(shipped: str | Path, runs: str | Path) -> dict[str, Path]:
    """label -> a relatives/ folder with study results: ``shipped``/<model>/relatives (labelled <model>, written by
    ``reproduce``) and ``runs``/**/relatives (labelled runs/<path>, where the CLI's --out puts a user's)."""
    found = {p.parent.name: p for p in sorted(Path(shipped).glob("*/relatives")) if p.is_dir()}
    runs = Path(runs)
    for p in sorted(runs.glob("**/relatives")) if runs.is_dir() else []:
        found[f"runs/{p.parent.relative_to(runs)}"] = p
    return found


def run_tasks(run: Run) -> tuple[str, ...]:
    """The tasks a run is scored on: its patch task first, then its supported tasks (the sweep's, else every
    supported task of the embedded world)."""
    supported = run.meta.get("supported") or [t for t in SUPPORTED_TASKS if t != run.meta["task"]]
    return (run.meta["task"], *[s for s in supported if s != run.meta["task"]])


def chosen_alpha(path: str | Path) -> float | None:
    """The alpha PAINT's rule chooses on the run's val sweep; None when the run has no sweep to choose from."""
    try:
        return select_run(path)["alpha"]
    except (ValueError, FileNotFoundError, KeyError):
        return None
