"""The one file-identity key: what every cache of a file's contents is keyed by.

A path alone is not enough: a run directory is rewritten in place (another fine-tune, a new sweep), and a
cache keyed by its path would serve the old run. Size, modification time (ns) and inode change with any rewrite,
atomic renames included, and cost one ``stat``.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..io.run_dir import RUN_FILES

MISSING = "-"  # the identity of a file that is not there


def file_identity(path: str | Path) -> str:
    """``size:mtime_ns:inode`` of the file at ``path``; ``MISSING`` when there is none."""
    try:
        s = os.stat(path)
    except OSError:
        return MISSING
    return f"{s.st_size}:{s.st_mtime_ns}:{s.st_ino}"


def run_identity(path: str | Path) -> str:
    """The identity of a run directory's files (run.json, the fine-tuned weights and their sidecar): part of every
    cache key of an opened run."""
    return "|".join(f"{name}:{file_identity(Path(path) / name)}" for name in RUN_FILES)


def sweep_identity(path: str | Path) -> str:
    """The identity of a run's sweep.csv: what a table or drawing of the sweep depends on."""
    return file_identity(Path(path) / "sweep.csv")


def weights_identity(pretrained: str | None) -> str:
    """A weights file's identity; "" for a tag or the shipped weights (nothing on disk that a user rewrites)."""
    return file_identity(pretrained) if pretrained and Path(pretrained).is_file() else ""
