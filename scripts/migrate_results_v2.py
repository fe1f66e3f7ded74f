"""One-off: rewrite cached_results' study files (schema 1, flat) in the results format of schema 2.

    python scripts/migrate_results_v2.py

Every number is kept as it is; what is added is each file's inputs, rebuilt from the arguments that
``python -m paint_core reproduce`` passes (checked against what the old file recorded where it recorded
anything), and a provenance naming this script. tests/test_shipped_relatives.py then runs reproduce's own
study calls with every computation disabled: they must find all results current, so the inputs written here
are exactly the ones reproduce asks for.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from paint_core.studies.arithmetic import LAMBDAS as ARITH_LAMBDAS
from paint_core.studies.closed_vocab import GRID, LAMBDAS as CV_LAMBDAS, ClosedVocabConfig, _config_inputs
from paint_core.engine.finetune import FinetuneConfig
from paint_core.models.clip import embedded_weights
from paint_core.engine.prompts import PromptConfig
from paint_core.studies.prompt_update import weights_input
from paint_core.studies.relatives import ALPHAS, MERGES, load_runs
from paint_core.studies.reproduce import CACHED_RESULTS as OUT, TRANSFER_SOURCES, continued_model
from paint_core.data.embedded import PATCH_TASKS
from paint_core.io.results import RESULTS_SCHEMA, write_results
from paint_core.studies.patch import run_inputs
from paint_core.data.embedded import DIGIT_SHIFTS, EMBEDDED_TASKS, SUPPORTED_TASKS

COMMAND = "python scripts/migrate_results_v2.py (inputs of python -m paint_core reproduce)"


def old(path: Path) -> dict | None:
    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    return None if d.get("schema") == RESULTS_SCHEMA else d


def keep(d: dict, *keys: str) -> dict:
    return {k: d[k] for k in keys}


def migrate_model(m: str) -> None:
    rel = OUT / m / "relatives"
    patch = load_runs([OUT / m / t for t in PATCH_TASKS])
    if d := old(rel / "multitask.json"):
        cfg = asdict(FinetuneConfig(**patch[0].meta["config"]))
        assert d["tasks"] == list(PATCH_TASKS) and d["supported"] == list(SUPPORTED_TASKS) and d["config"] == cfg
        write_results(rel / "multitask.json", "multitask", {
            "runs": [run_inputs(r) for r in patch], "tasks": list(PATCH_TASKS), "supported": list(SUPPORTED_TASKS),
            "config": cfg, "alphas": ALPHAS, "max_eval": None},
            keep(d, "model", "methods", "specialists", "comparison"), COMMAND)
    if d := old(rel / "transfer.json"):
        runs = [*patch, *load_runs([OUT / m / t for t in TRANSFER_SOURCES])]
        assert d["runs"] == [run_inputs(r)["path"] for r in runs] and d["max_eval"] is None
        assert d["eval_tasks"] == list(EMBEDDED_TASKS)
        write_results(rel / "transfer.json", "transfer", {
            "runs": [run_inputs(r) for r in runs], "eval_tasks": list(EMBEDDED_TASKS), "max_eval": None},
            keep(d, "model", "split", "rows"), COMMAND)
    if d := old(rel / "wiseft.json"):
        run = load_runs([OUT / m / "digits"])[0]
        assert d["shift_tasks"] == list(DIGIT_SHIFTS) and d["alphas"] == ALPHAS and d["max_eval"] is None
        write_results(rel / "wiseft.json", "wiseft", {
            "run": run_inputs(run), "shift_tasks": list(DIGIT_SHIFTS), "alphas": [float(a) for a in ALPHAS],
            "max_eval": None}, keep(d, "model", "id_task", "summary_test", "rows"), COMMAND)
    if d := old(rel / "arithmetic.json"):
        assert d["tasks"] == list(PATCH_TASKS) and set(d["addition"]) == set(MERGES)
        addition = {name: {"inputs": MERGES[name], **entry} for name, entry in d["addition"].items()}
        write_results(rel / "arithmetic.json", "arithmetic", {
            "runs": [run_inputs(r) for r in patch], "tasks": list(PATCH_TASKS), "supported": list(SUPPORTED_TASKS),
            "lambdas": [float(v) for v in ARITH_LAMBDAS], "max_eval": None},
            {"model": d["model"], "addition": addition, "negation": d["negation"], "finetuned": d["finetuned"]},
            COMMAND)
    if d := old(OUT / m / "diagnostics.json"):
        write_results(OUT / m / "diagnostics.json", "diagnostics", {
            "model": weights_input(m, str(embedded_weights(m))), "zero_shot_tasks": list(EMBEDDED_TASKS),
            "probe_tasks": list(PATCH_TASKS)},
            keep(d, "zero_shot_test", "linear_probe_test", "typographic_reading"), COMMAND)


def migrate_closed_vocab() -> None:
    d_dir = OUT / "closed_vocab"
    cfg = ClosedVocabConfig()
    for t in PATCH_TASKS:
        f = d_dir / "micro-vit" / t / "metrics.json"
        if d := old(f):
            assert d["lrs"] == list(cfg.lrs)
            write_results(f, "closed-vocab-task", {"model": "micro-vit", "pretrained": None, "task": t,
                                                   "config": _config_inputs(cfg), "probe_n": 2000, "max_eval": None},
                          d, COMMAND)
    if d := old(d_dir / "micro-vit" / "study.json"):
        stored = d.pop("config")
        assert stored["lrs"] == list(cfg.lrs) and stored["finetune"] == asdict(cfg.finetune)
        write_results(d_dir / "micro-vit" / "study.json", "closed-vocab", {
            "model": "micro-vit", "pretrained": None, "tasks": list(PATCH_TASKS), "config": _config_inputs(cfg),
            "lambdas": [float(v) for v in CV_LAMBDAS], "grid": [float(v) for v in GRID], "grid_n": 200,
            "probe_n": 2000, "max_eval": None}, d, COMMAND)
    f = d_dir / "micro-rn-l_disentanglement.json"
    if d := old(f):
        runs = load_runs([OUT / "micro-rn-l" / "digits", OUT / "micro-rn-l" / "counting"])
        assert d["grid"] == GRID and d["n_per_task"] == 200
        write_results(f, "disentanglement", {"runs": [run_inputs(r) for r in runs],
                                             "grid": [float(v) for v in GRID], "grid_n": 200}, d, COMMAND)


def migrate_prompts() -> None:
    for name, new, pretrained in (("update.json", "micro-rn-l", None),
                                  ("update_continued.json", "micro-rn-s", str(continued_model(OUT)))):
        f = OUT / "prompts" / name
        if d := old(f):
            write_results(f, "prompt-update", {
                "old": weights_input("micro-rn-s", None), "new": weights_input(new, pretrained),
                "tasks": list(PATCH_TASKS), "shots": [1, 4, 16], "seeds": [0, 1, 2],
                "config": asdict(PromptConfig()), "pool": 600, "max_eval": None},
                keep(d, "old", "new", "rows"), COMMAND)


if __name__ == "__main__":
    for model in ("micro-rn-l", "micro-rn-s"):
        migrate_model(model)
    migrate_closed_vocab()
    migrate_prompts()
    print("migrated", OUT)
