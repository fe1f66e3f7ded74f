"""Where PAINT Explorer's own files are, defined once.

The shipped model configs and weights are package data (they install with the package); cached_results/ is
the repository's, beside the package in a checkout (``pip install -e .``), and may be moved with
PAINT_CACHED_RESULTS.
"""
from __future__ import annotations

import os
from pathlib import Path


PACKAGE_DIR = Path(__file__).resolve().parent.parent  # paint_core/
CONFIG_DIR = PACKAGE_DIR / "model_configs"
WEIGHTS_DIR = PACKAGE_DIR / "weights"
REPO_DIR = PACKAGE_DIR.parent
CACHED_RESULTS_DIR = Path(os.environ.get("PAINT_CACHED_RESULTS") or REPO_DIR / "cached_results").resolve()
