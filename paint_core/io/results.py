"""Study results files: one format, written atomically, resumed honestly.

    {"schema": 2, "kind": "arithmetic", "inputs": {...}, "results": {...}, "provenance": {...}}

``inputs`` holds every parameter that changes a number (tasks, grids, merge parameters, max_eval, seeds,
learning rates, and the sha256 of each run's fine-tuned weights); ``provenance`` says who wrote it (command,
code version, time). A study reuses stored results only when the inputs asked for equal the stored ones;
entries with inputs of their own (a merge's k or p) carry them under ``"inputs"`` and are reused only when
those are equal too. Everything else is recomputed.

Each study kind has one typed reader beside its study (``from_doc``); the readers read through ``document`` and
``Fields``, so a key a writer renamed is an error naming the file, the kind and the key, not a KeyError in a page.
"""
from __future__ import annotations

import json
import logging
import shlex
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

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


class ResultsKeyError(ValueError):
    """A results document lacks a key (or a table a column) that its reader needs: a writer renamed it, or another
    version wrote the file."""


@dataclass(frozen=True)
class Fields:
    """One mapping inside a results document that knows where it is (``source``: file and kind; ``at``: the key
    path), so every missing key is a ``ResultsKeyError`` that names the file, the kind and the whole key."""
    data: Mapping[str, Any]
    source: str
    at: str

    def _path(self, key: str) -> str:
        return f"{self.at}.{key}" if self.at else key

    def _missing(self, what: str) -> ResultsKeyError:
        return ResultsKeyError(f"{self.source} has no {what}: written by another version of its study? "
                               "Run the study again to rewrite it.")

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def __getitem__(self, key: str) -> Any:
        if key not in self.data:
            raise self._missing(f"'{self._path(key)}'")
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def part(self, key: str) -> Fields:
        """The mapping under ``key``, as Fields."""
        value = self[key]
        if not isinstance(value, Mapping):
            raise self._missing(f"mapping at '{self._path(key)}' (found {type(value).__name__})")
        return Fields(value, self.source, self._path(key))

    def parts(self, key: str) -> dict[str, Fields]:
        """{name: Fields} of a mapping of mappings (e.g. one entry per merge method)."""
        part = self.part(key)
        return {name: part.part(name) for name in part.data}

    def records(self, key: str) -> list[Fields]:
        """A list of mappings (table rows), each as Fields (``rows[3]``)."""
        value = self[key]
        if not isinstance(value, list) or not all(isinstance(r, Mapping) for r in value):
            raise self._missing(f"list of records at '{self._path(key)}'")
        return [Fields(r, self.source, f"{self._path(key)}[{i}]") for i, r in enumerate(value)]

    def floats(self, key: str, names: Iterable[str] | None = None) -> dict[str, float]:
        """{name: number} under ``key``: every entry, or exactly ``names`` (each one required)."""
        part = self.part(key)
        return {n: float(part[n]) for n in (part.data if names is None else names)}

    def table(self, key: str, columns: Iterable[str]) -> pd.DataFrame:
        """The records under ``key`` as a DataFrame that has at least ``columns``."""
        rows = self.records(key)
        df = pd.DataFrame([dict(r.data) for r in rows])
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise self._missing(f"column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} in "
                                f"'{self._path(key)}'")
        return df


def document(doc: Mapping[str, Any], kind: str, source: str | Path) -> tuple[Fields, Fields]:
    """(inputs, results) of a ``kind`` document read from ``source`` (a path, or words saying where it came from)."""
    where = f"{source} ({kind} results)"
    if not isinstance(doc, Mapping) or doc.get("schema") != RESULTS_SCHEMA:
        raise ValueError(f"{where}: not a schema-{RESULTS_SCHEMA} results document")
    if doc.get("kind") != kind:
        raise ValueError(f"{source} holds {doc.get('kind')} results, not {kind}")
    top = Fields(doc, where, "")
    return top.part("inputs"), top.part("results")
