"""The relatives of PAINT, run on run directories: multi-task patching, broad transfer, WiSE-FT, task arithmetic.

Each study reads finished run directories (any open_clip model: they only need the same zero-shot model) and
writes one results file (``results.py``: inputs, results, provenance) after every finished piece; a re-run
reuses only what was computed from the same inputs, so an interrupted study resumes and a changed one is redone.
``python -m paint_core reproduce`` runs all four on the embedded default into cached_results/<model>/relatives/.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..core.interpolation import interpolate
from ..core.methods import MERGE_METHODS, get_method, merge_entries, method_inputs, resolve
from ..core.selection import choose_addition, choose_negation, normalized
from ..data.tasks import get_task
from ..engine.evaluation import build_evals, evaluate_all
from ..engine.finetune import FinetuneConfig
from ..io.results import canonical, entry_is_current, finished, resume, write_results
from ..io.run_dir import read_sweep
from ..models.run import Run, load_run, run_task_vector
from .arithmetic import LAMBDAS, edit_sweep, merged_vector
from .multitask import MultitaskSetting
from .merge_data import RunsData
from .multitask_methods import MULTITASK_METHODS
from .patch import run_inputs, select_run
from .transfer import disjoint_classes, transfer_matrix
from .wiseft import ensemble_sweep, robustness_summary


log = logging.getLogger(__name__)
ALPHAS = [round(0.1 * i, 1) for i in range(11)]
# The reproduced merges: every registered method at its declared defaults, and DARE also at p=0.5 (the shipped
# results hold both rates). A method registered in core/methods.py joins this study with no edit here.
EXTRA_MERGES = (("dare", {"p": 0.5}),)


def default_merges() -> dict[str, dict]:
    """{label: inputs} of the reproduced merges (read when called, so a newly registered method is in it)."""
    return merge_entries([*((name, {}) for name in MERGE_METHODS), *EXTRA_MERGES])


MERGES = default_merges()


def load_runs(paths: Sequence[str | Path]) -> list[Run]:
    """Load runs and check they were all patched from the same zero-shot model."""
    if not paths:
        raise ValueError("give at least one run directory")
    return check_same_zero_shot([load_run(p) for p in paths])


def check_same_zero_shot(runs: list[Run]) -> list[Run]:
    """``runs`` unchanged if they share one zero-shot model; otherwise a ValueError naming each run."""
    digests = {r.meta["provenance"].get("zeroshot_digest") for r in runs}
    if len(digests) > 1:
        names = ", ".join(f"{r.path} ({r.meta['model']}, {r.meta['pretrained']})" for r in runs)
        raise ValueError(f"these runs were not patched from the same zero-shot model: {names}")
    return runs


def _evals(run: Run, tasks: Sequence[str], max_eval: int | None, splits=("val", "test")):
    return build_evals(run.model, run.preprocess, run.tokenizer, list(dict.fromkeys(tasks)), splits, max_eval,
                       run.meta.get("data_root"), run.meta.get("download", False))


def _scores(model, state, evals) -> dict[str, dict[str, float]]:
    model.load_state_dict(state)
    out: dict[str, dict[str, float]] = {}
    for key, acc in evaluate_all(model, evals).items():
        task, split = key.split("/")
        out.setdefault(split, {})[task] = acc
    return out


def multitask_study(run_paths: Sequence[str | Path], supported: Sequence[str], out: str | Path,
                    cfg: FinetuneConfig | None = None, methods: Sequence[str] | None = None,
                    max_eval: int | None = None) -> dict:
    """Multi-task patching of the runs' tasks (``methods``: names in MULTITASK_METHODS, default all of them),
    next to each run's own patched model."""
    out = Path(out)
    chosen = [get_method(MULTITASK_METHODS, "multi-task method", m) for m in (methods or MULTITASK_METHODS)]
    runs = load_runs(run_paths)
    tasks = [r.meta["task"] for r in runs]
    known = {f for f in FinetuneConfig.__dataclass_fields__}  # an imported run has no fine-tuning config
    cfg = cfg or FinetuneConfig(**{k: v for k, v in runs[0].meta["config"].items() if k in known})
    inputs = {"runs": [run_inputs(r) for r in runs], "tasks": tasks, "supported": list(supported),
              "config": asdict(cfg), "alphas": ALPHAS, "max_eval": max_eval}
    result = {"model": runs[0].meta["model"], "methods": {}, "specialists": {}, **resume(out, "multitask", inputs)}
    result.pop("comparison", None)

    def save() -> None:
        write_results(out, "multitask", inputs, result)

    model = copy.deepcopy(runs[0].model)
    theta_zs = runs[0].theta_zs
    evals = _evals(runs[0], [*tasks, *supported], max_eval)
    for run in runs:
        t = run.meta["task"]
        if t not in result["specialists"]:
            alpha = select_run(run.path)["alpha"]
            result["specialists"][t] = {"alpha": alpha, **_scores(model, interpolate(theta_zs, run.theta_ft, alpha), evals)}
            save()
    heads = {t: evals[(t, "val")][1] for t in tasks}
    train = {t: get_task(t, root=r.meta.get("data_root")).split("train", r.preprocess) for t, r in zip(tasks, runs)}
    setting = MultitaskSetting(model, theta_zs, tuple(tasks), heads, train, {r.meta["task"]: r.theta_ft for r in runs},
                               evals, tuple(supported), tuple(ALPHAS), cfg)
    for method in chosen:
        spec = method_inputs(method, {})
        stored = result["methods"].get(method.name)
        if stored is not None and stored.get("inputs", {}) == canonical(spec):  # no "inputs": no parameters
            continue
        log.info("multi-task patching: %s", method.name)
        state, info = method.fn(setting, **resolve(method, {}))
        result["methods"][method.name] = {**({"inputs": spec} if spec else {}), **info, **_scores(model, state, evals)}
        save()
    result["comparison"] = multitask_comparison(result, tasks, list(supported))
    return write_results(out, "multitask", inputs, result)


def multitask_comparison(result: dict, tasks: Sequence[str], sup: Sequence[str], split: str = "test") -> list[dict]:
    """One row per model (specialists, then each method): accuracy on every task and the means."""
    rows = []
    for t, s in result["specialists"].items():
        rows.append({"model": f"specialist: {t}", "alpha": str(s["alpha"]), **s[split]})
    spec = {t: result["specialists"][t][split][t] for t in tasks if t in result["specialists"]}
    for name, m in result["methods"].items():
        alpha = m.get("alpha", m.get("alphas"))
        rows.append({"model": name, "alpha": str(alpha), **m[split],
                     "vs_specialists": sum(m[split][t] - spec[t] for t in tasks) / len(tasks) if len(spec) == len(tasks) else None})
    for r in rows:
        r["patch_mean"] = sum(r[t] for t in tasks) / len(tasks)
        r["supported_mean"] = sum(r[t] for t in sup) / len(sup)
    return rows


def transfer_study(run_paths: Sequence[str | Path], eval_tasks: Sequence[str], out: str | Path,
                   max_eval: int | None = None) -> dict:
    """Accuracy change on every eval task of each run's model, at alpha 1 and at the run's chosen alpha."""
    out = Path(out)
    runs = load_runs(run_paths)
    inputs = {"runs": [run_inputs(r) for r in runs], "eval_tasks": list(eval_tasks), "max_eval": max_eval}
    done = finished(out, "transfer", inputs)
    if done:
        return done  # computed before from the same inputs
    model = copy.deepcopy(runs[0].model)
    evals = _evals(runs[0], eval_tasks, max_eval, splits=("test",))
    tables = []
    for mode in ("finetuned", "chosen"):
        patched = {r.meta["task"]: (r.theta_ft, 1.0 if mode == "finetuned" else select_run(r.path)["alpha"])
                   for r in runs}
        tables.append(transfer_matrix(model, runs[0].theta_zs, patched, evals).assign(mode=mode))
    table = pd.concat(tables, ignore_index=True)
    classes = {t: list(get_task(t).classnames) for t in {*table["patch_task"], *table["eval_task"]}}
    table["disjoint_classes"] = disjoint_classes(table, classes)
    return write_results(out, "transfer", inputs, {"model": runs[0].meta["model"], "split": "test",
                                                   "rows": table.to_dict("records")})


def wiseft_study(run_path: str | Path, shift_tasks: Sequence[str], out: str | Path, alphas: Sequence[float] = ALPHAS,
                 max_eval: int | None = None, fisher: dict | None = None) -> dict:
    """Weight- vs output-space ensembles of a run: in-distribution (its task) vs each of ``shift_tasks``; with
    ``fisher`` ({"n": images, "floor": F floor}) also the Fisher-weighted weight-space ensemble, both Fishers
    taken on n train images of the run's task."""
    if not shift_tasks:
        raise ValueError("give at least one distribution-shifted task")
    out = Path(out)
    run = load_runs([run_path])[0]
    inputs = {"run": run_inputs(run), "shift_tasks": list(shift_tasks), "alphas": [float(a) for a in alphas],
              "max_eval": max_eval}
    if fisher is not None:  # checked and completed by Fisher merging's declared parameters (one default each)
        fisher = resolve(MERGE_METHODS["fisher"], fisher)
        inputs["fisher"] = fisher
    done = finished(out, "wiseft", inputs)
    if done:
        return done  # computed before from the same inputs
    id_task = run.meta["task"]
    model = copy.deepcopy(run.model)
    evals = _evals(run, [id_task, *shift_tasks], max_eval)
    fishers = None
    if fisher is not None:
        data = RunsData([run])
        fishers = (data.fishers(fisher["n"], "zeroshot")[0], data.fishers(fisher["n"])[0], fisher["floor"])
    table = ensemble_sweep(model, run.theta_zs, run.theta_ft, evals, alphas, fishers)
    return write_results(out, "wiseft", inputs, {
        "model": run.meta["model"], "id_task": id_task,
        "summary_test": {s: robustness_summary(table, id_task, s, "test") for s in shift_tasks},
        "rows": table.to_dict("records")})


def arithmetic_study(run_paths: Sequence[str | Path], supported: Sequence[str], out: str | Path,
                     negate: Sequence[str] = (), merges: dict[str, dict] | None = None,
                     lambdas: Sequence[float] = LAMBDAS, max_eval: int | None = None) -> dict:
    """Task addition with each merge method (lambda on val) and negation of each task in ``negate``."""
    out = Path(out)
    merges = default_merges() if merges is None else merges
    specs = {}  # {label: inputs}, every method and parameter checked against the registry before anything runs
    for name, spec in merges.items():
        method = get_method(MERGE_METHODS, "merge method", spec.get("method", name))
        specs[name] = method_inputs(method, {k: v for k, v in spec.items() if k != "method"})
    runs = load_runs(run_paths)
    tasks = [r.meta["task"] for r in runs]
    vectors = [run_task_vector(r) for r in runs]
    model = copy.deepcopy(runs[0].model)
    theta_zs = runs[0].theta_zs
    inputs = {"runs": [run_inputs(r) for r in runs], "tasks": tasks, "supported": list(supported),
              "lambdas": [float(v) for v in lambdas], "max_eval": max_eval}
    result = {"model": runs[0].meta["model"], "addition": {}, "negation": {}, **resume(out, "arithmetic", inputs)}

    def save() -> None:
        write_results(out, "arithmetic", inputs, result)

    finetuned = {}
    for r in runs:  # each task's own fine-tuned accuracy (alpha 1), the denominator of normalized accuracy
        sw = read_sweep(r.path)
        own = sw[(sw["task"] == r.meta["task"]) & (sw["alpha"] == 1.0)]
        finetuned.update({(r.meta["task"], s): float(a) for s, a in zip(own["split"], own["accuracy"])})
    evals = _evals(runs[0], [*tasks, *supported], max_eval)
    val = {k: v for k, v in evals.items() if k[1] == "val"}
    data = RunsData(runs)
    for name, spec in specs.items():
        if entry_is_current(result["addition"].get(name), spec):  # same merge parameters, not just the name
            continue
        params = {k: v for k, v in spec.items() if k != "method"}
        method = MERGE_METHODS[spec.get("method", name)]
        tau = merged_vector(vectors, method.name, data=data, **params)
        table = edit_sweep(model, theta_zs, tau, val, lambdas if method.scaled else [1.0])
        ft_val = {t: finetuned[(t, "val")] for t in tasks}
        lam = choose_addition(table, tasks, ft_val)
        scores = _scores(model, tau.apply_to(theta_zs, lam), evals)
        test = scores["test"]
        result["addition"][name] = {
            "inputs": spec, "lambda": lam, **scores,
            "normalized_test": {t: test[t] / finetuned[(t, "test")] for t in tasks},
            "mean_normalized_test": sum(test[t] / finetuned[(t, "test")] for t in tasks) / len(tasks),
            "mean_absolute_test": sum(test[t] for t in tasks) / len(tasks),
            "val_sweep": normalized(table, ft_val).to_dict("records")}
        save()
    for target in negate:
        if target in result["negation"]:
            continue
        tv = vectors[tasks.index(target)]
        table = edit_sweep(model, theta_zs, -tv, {k: v for k, v in val.items() if k[0] in (target, *supported)}, lambdas)
        lam = choose_negation(table, target, supported)
        model.load_state_dict(theta_zs)
        zs = evaluate_all(model, evals, "test")
        scores = _scores(model, (-tv).apply_to(theta_zs, lam), evals)
        result["negation"][target] = {
            "lambda": lam, "control": list(supported), "chance": 1 / len(get_task(target).classnames),
            "zero_shot_test": zs, **scores, "val_sweep": table.to_dict("records")}
        save()
    result["finetuned"] = {f"{t}/{s}": a for (t, s), a in finetuned.items()}
    return write_results(out, "arithmetic", inputs, result)
