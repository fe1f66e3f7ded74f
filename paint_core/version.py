"""The code version written into every checkpoint and result file."""
from __future__ import annotations

import subprocess
from functools import lru_cache

from .io.paths import REPO_DIR


__version__ = "0.1.0"


@lru_cache(maxsize=1)
def code_version() -> str:
    """``0.1.0+<git sha>`` inside a git checkout (``-dirty`` if it has uncommitted changes), else ``0.1.0``."""
    root = REPO_DIR
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "paint_core"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    if not sha:
        return __version__
    return f"{__version__}+{sha}{'-dirty' if dirty else ''}"
