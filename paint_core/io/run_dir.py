"""The run directory: the unit the CLI, the dashboard and cached_results/ share.

    run.json                 what was done: model, pretrained, task, supported tasks, hyper-parameters,
                             seed, code version, command (config and provenance as separate fields)
    finetuned.safetensors    the fine-tuned image encoder (``visual.*``; the rest equals zero-shot) + sidecar
    sweep.csv                alpha, task, split, accuracy, n (rewritten atomically after every plan); when the
                             table holds a per-block plan, a sixth column ``plan`` names each row's plan by its
                             key (``Plan.key``) and ``alpha`` is empty on per-block rows
"""
from __future__ import annotations

import json
import logging
from pathlib import Path, PurePosixPath

import pandas as pd

from ..core.plan import Plan, format_coefficient
from .atomic import atomic_write_text
from .checkpoints import sha256_file
from .paths import REPO_DIR


log = logging.getLogger(__name__)
RUN_SCHEMA = 1
SWEEP_COLUMNS = ["alpha", "task", "split", "accuracy", "n"]
PLAN_COLUMN = "plan"
RUN_FILES = ("run.json", "finetuned.safetensors", "finetuned.json")


# ----------------------------------------------------------------------------------------- run.json
_FIELDS: dict[str, tuple[tuple[type, ...], bool, str]] = {  # name -> (types, required, what it should be)
    "schema": ((int,), True, "the integer 1"),
    "model": ((str,), True, "a model name"),
    "pretrained": ((str, type(None)), True, "a pretrained tag, a file, or null"),
    "task": ((str,), True, "a task name"),
    "config": ((dict,), True, "an object of fine-tuning settings"),
    "provenance": ((dict,), True, "an object"),
    "data_root": ((str, type(None)), False, "a folder or null"),
    "download": ((bool,), False, "true or false"),
    "supported": ((list,), False, "a list of task names"),
    "max_eval": ((int, type(None)), False, "a positive integer or null"),
    "finetuned_sha256": ((str,), False, "a sha256"),
    "sweep_sha256": ((str, type(None)), False, "a sha256 or null"),
    "zeroshot_file": ((str,), False, "a file name inside the run directory"),
}


def validate_run_meta(meta: object, where: str) -> dict:
    """run.json read through its schema: one clear message per bad field, never a traceback later."""
    if not isinstance(meta, dict):
        raise ValueError(f"{where} must hold a JSON object, got {type(meta).__name__}")
    for name, (types, required, what) in _FIELDS.items():
        if name not in meta:
            if required:
                raise ValueError(f"{where} is missing the field {name!r} ({what})")
            continue
        value = meta[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ValueError(f"{where}: field {name!r} must be {what}, got {type(value).__name__} {value!r}")
    if meta["schema"] != RUN_SCHEMA:
        raise ValueError(f"{where} has schema {meta['schema']}; this code reads schema {RUN_SCHEMA}")
    if not all(isinstance(t, str) and t for t in meta.get("supported", [])):
        raise ValueError(f"{where}: field 'supported' must be a list of task names, got {meta['supported']!r}")
    inside = PurePosixPath(str(meta.get("zeroshot_file", "x")))
    if inside.is_absolute() or ".." in inside.parts or "\\" in str(inside) or not inside.name:
        raise ValueError(f"{where}: field 'zeroshot_file' must name a file inside the run directory, "
                         f"got {meta['zeroshot_file']!r}")
    if meta.get("max_eval") is not None and meta["max_eval"] < 1:
        raise ValueError(f"{where}: field 'max_eval' must be positive, got {meta['max_eval']}")
    return meta


def read_run_meta(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"run directory not found: {path}")
    missing = [f for f in RUN_FILES if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"run directory {path} is missing: {', '.join(missing)} "
                                "(a run is made by: python -m paint_core finetune ... --out DIR)")
    try:
        meta = json.loads((path / "run.json").read_text())
    except ValueError as e:
        raise ValueError(f"{path}/run.json is not valid JSON: {e}") from e
    return validate_run_meta(meta, f"{path}/run.json")


def write_run_meta(path: Path, meta: dict) -> None:
    atomic_write_text(path / "run.json", json.dumps(meta, indent=2, sort_keys=True))


def read_sweep(path: str | Path, per_block: bool = False) -> pd.DataFrame:
    """A run's sweep table: the uniform alphas' rows (what the curves, selection and pages along alpha read), or
    with ``per_block`` also the rows of the per-block plans a search measured (alpha NaN, ``plan`` their key)."""
    f = Path(path) / "sweep.csv"
    if not f.is_file():
        return empty_sweep()  # with its plan column: a card or a page reads it before any sweep
    try:
        df = pd.read_csv(f)
    except (ValueError, pd.errors.ParserError) as e:
        raise ValueError(f"{f} is not a readable CSV: {e}") from e
    if list(df.columns) not in (SWEEP_COLUMNS, [*SWEEP_COLUMNS, PLAN_COLUMN]):
        raise ValueError(f"{f} has columns {list(df.columns)}, expected {SWEEP_COLUMNS} (and {PLAN_COLUMN!r})")
    try:
        df = with_plan_keys(df)
    except ValueError as e:
        raise ValueError(f"{f}: {e}") from None
    return df if per_block else df[df["alpha"].notna()].reset_index(drop=True)


def empty_sweep() -> pd.DataFrame:
    return pd.DataFrame(columns=[*SWEEP_COLUMNS, PLAN_COLUMN])


def with_plan_keys(df: pd.DataFrame) -> pd.DataFrame:
    """The table with its ``plan`` column: filled from ``alpha`` where a row has none (uniform rows, tables
    written before plans existed). Every row names a plan or an alpha."""
    df = df.copy()
    keys = df[PLAN_COLUMN] if PLAN_COLUMN in df else pd.Series([None] * len(df), index=df.index, dtype=object)
    missing = keys.isna()
    if (missing & df["alpha"].isna()).any():
        raise ValueError("a row has neither an alpha nor a plan")
    keys = keys.astype(object)
    keys[missing] = [format_coefficient(a) for a in df.loc[missing, "alpha"]]
    df[PLAN_COLUMN] = keys.astype(str)
    return df


def sweep_csv(table: pd.DataFrame) -> bytes:
    """sweep.csv's bytes: the five columns while every plan is uniform (as every sweep before plans wrote them),
    with ``plan`` added once a per-block plan is in the table."""
    table = with_plan_keys(table)
    per_block = table["alpha"].isna().any()
    return table[[*SWEEP_COLUMNS, PLAN_COLUMN] if per_block else SWEEP_COLUMNS].to_csv(index=False).encode()


def plans_of(table: pd.DataFrame) -> dict[str, Plan]:
    """key -> Plan of every plan in a sweep table."""
    return {k: Plan.from_key(k) for k in dict.fromkeys(with_plan_keys(table)[PLAN_COLUMN])}


def check_sweep_matches(path: str | Path, meta: dict) -> None:
    """run.json is written after sweep.csv and names its hash: a sweep cut between the two, or a file edited
    by hand, is detected here instead of answering from a table the run.json does not describe."""
    f = Path(path) / "sweep.csv"
    expected = meta.get("sweep_sha256")
    if expected is None:
        return  # runs written before the manifest existed
    actual = sha256_file(f) if f.is_file() else None
    if actual != expected:
        raise ValueError(f"{f} does not match {Path(path) / 'run.json'} (a sweep was interrupted while "
                         "writing, or a file was edited); run the sweep again to repair it: "
                         f"python -m paint_core sweep --run {path} --supported {','.join(meta.get('supported', []))}")


def portable_path(path: str | Path) -> str:
    """A path as recorded in results: relative to the repository when inside it, so results move with it."""
    p = Path(path).resolve()
    return str(p.relative_to(REPO_DIR)) if p.is_relative_to(REPO_DIR) else str(p)
