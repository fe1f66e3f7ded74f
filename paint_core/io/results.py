"""Study results files: one format, written atomically, resumed honestly.

    {"schema": 2, "kind": "arithmetic", "inputs": {...}, "results": {...}, "provenance": {...}}

``inputs`` holds every parameter that changes a number (tasks, grids, merge parameters, max_eval, seeds,
learning rates, and the sha256 of each run's fine-tuned weights); ``provenance`` says who wrote it (command,
code version, time). A study reuses stored results only when the inputs asked for equal the stored ones;
entries with inputs of their own (a merge's k or p) carry them under ``"inputs"`` and are reused only when
those are equal too. Everything else is recomputed.
"""
from __future__ import annotations

import json
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from ..version import code_version
from .atomic import atomic_write_text


log = logging.getLogger(__name__)
RESULTS_SCHEMA = 2


def canonical(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples become lists, keys strings), so inputs compare equal."""
    return json.loads(json.dumps(obj))


def command_line() -> str:
    """The command that is running, as a user would type it."""
    argv = list(sys.argv)
    if argv and (argv[0].endswith("paint_core/__main__.py") or Path(argv[0]).name == "paint-core"):
        argv[0] = "paint-core"
    return shlex.join(argv)


def read_results(path: str | Path, kind: str) -> dict | None:
    """The stored document of ``kind`` at ``path``; None if there is none or it is of an older format."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); move it away or choose another --out") from e
    if not isinstance(doc, dict) or doc.get("schema") != RESULTS_SCHEMA:
        log.info("%s was written in an older format: recomputing it", path)
        return None
    if doc.get("kind") != kind:
        raise ValueError(f"{path} holds {doc.get('kind')} results, not {kind}; choose another --out")
    return doc


def finished(path: str | Path, kind: str, inputs: dict) -> dict | None:
    """The stored document at ``path`` if it was computed from ``inputs``; otherwise None."""
    doc = read_results(path, kind)
    if doc is None:
        return None
    if doc.get("inputs") != canonical(inputs):
        changed = sorted(k for k in {*doc.get("inputs", {}), *canonical(inputs)}
                         if doc.get("inputs", {}).get(k) != canonical(inputs).get(k))
        log.info("%s: inputs changed (%s): recomputing", path, ", ".join(changed))
        return None
    return doc


def resume(path: str | Path, kind: str, inputs: dict) -> dict:
    """The stored results at ``path`` if they were computed from ``inputs``; otherwise an empty dict."""
    doc = finished(path, kind, inputs)
    return doc["results"] if doc else {}


def entry_is_current(entry: dict | None, inputs: dict) -> bool:
    """A stored entry with inputs of its own (e.g. a merge's parameters) is reused only if they are equal."""
    return entry is not None and entry.get("inputs") == canonical(inputs)


def write_results(path: str | Path, kind: str, inputs: dict, results: dict, command: str | None = None) -> dict:
    """Write the document atomically (readers never see half a file); returns it. A file that already holds
    these results from these inputs is left untouched (its provenance still names who computed them)."""
    path = Path(path)
    stored = read_results(path, kind) if path.is_file() else None
    if stored and stored["inputs"] == canonical(inputs) and stored["results"] == canonical(results):
        return stored
    doc = {"schema": RESULTS_SCHEMA, "kind": kind, "inputs": canonical(inputs), "results": canonical(results),
           "provenance": {"command": command or command_line(), "code_version": code_version(),
                          "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(doc, indent=2))
    return doc
