"""``python -m paint_core reproduce``: regenerate cached_results/ from the shipped embedded models.

For every embedded model: diagnostics (zero-shot accuracy per task, linear probes of the patch tasks,
typographic reading), then for every patch task a run directory (fine-tune, sweep over alpha on val and
test of the patch task and every supported task), then summary.json / summary.md. Resumable: finished
fine-tunes are kept, sweeps continue from their sweep.csv.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..core.frontier import chord_gap, frontier, frontier_area, gain_within_drift
from ..data.embedded import DIGIT_SHIFTS, EMBEDDED_TASKS, PATCH_TASKS, SUPPORTED_TASKS
from ..engine.finetune import FinetuneConfig
from ..engine.pretrain import PretrainConfig
from ..engine.probes import linear_probe
from ..io.atomic import atomic_write_text
from ..io.paths import CACHED_RESULTS_DIR
from ..io.results import Fields, resume, write_results
from ..io.run_dir import read_run_meta, read_sweep
from ..models.clip import EMBEDDED_MODELS, embedded_weights, load_model
from ..version import code_version
from .diagnostics import DiagnosticsResults, typographic_reading, zero_shot_accuracies
from .patch import run_finetune, run_sweep, select_run
from .readers import read_study


CACHED_RESULTS = CACHED_RESULTS_DIR
ALPHAS = [round(0.1 * i, 1) for i in range(11)]
# The recipes of the shipped weights and cached runs (see docs/experiments.md for why these).
PRETRAIN_RECIPES = {"micro-rn-s": PretrainConfig(steps=2500), "micro-rn-l": PretrainConfig(steps=2500)}
FINETUNE_RECIPES = {task: FinetuneConfig() for task in PATCH_TASKS}
COMMAND = "python -m paint_core reproduce"
TRANSFER_SOURCES = ("digits_low",)  # patched only for the broad-transfer study (digits_high is its disjoint twin)
RELATIVES_MODELS = ("micro-rn-l", "micro-rn-s")  # ~25 min per model (scale: compare the two)
PROMPT_MODELS = ("micro-rn-s", "micro-rn-l")  # the "old" and the "upgraded" model of the prompt study
CONTINUED_NAME = "micro-rn-s-continued"
CONTINUED_RECIPE = PretrainConfig(steps=800, lr=5e-4, warmup=50, corpus_size=100_000, seed=1)
SHIPPED_DTYPE = torch.float16  # shipped weights and cached fine-tunes: half the repository size


def diagnose(model_name: str, out: Path) -> dict:
    """Zero-shot accuracies, linear probes and the reading probe of an embedded model (diagnostics.json)."""
    from .prompt_update import weights_input
    path = out / model_name / "diagnostics.json"
    inputs = {"model": weights_input(model_name, str(embedded_weights(model_name))),
              "zero_shot_tasks": list(EMBEDDED_TASKS), "probe_tasks": list(PATCH_TASKS)}
    done = resume(path, "diagnostics", inputs)
    if done:
        return done
    model, preprocess, tokenizer = load_model(model_name)
    return write_results(path, "diagnostics", inputs, {
        "zero_shot_test": zero_shot_accuracies(model, preprocess, tokenizer, list(EMBEDDED_TASKS)),
        "linear_probe_test": {t: linear_probe(model, preprocess, t) for t in PATCH_TASKS},
        "typographic_reading": typographic_reading(model, preprocess, tokenizer),
    }, command=COMMAND)["results"]


def run_is_finished(run_dir: Path, cfg: FinetuneConfig) -> bool:
    try:
        return read_run_meta(run_dir)["config"] == asdict(cfg)
    except (FileNotFoundError, ValueError, KeyError):
        return False


def ensure_run(out: Path, model_name: str, task: str) -> Path:
    """The run directory of ``task`` on ``model_name``: fine-tuned and swept, resuming what is there."""
    run_dir = out / model_name / task
    cfg = FINETUNE_RECIPES.get(task, FinetuneConfig())
    if not run_is_finished(run_dir, cfg):
        run_finetune(run_dir, model_name, None, task, cfg, command=COMMAND, storage_dtype=SHIPPED_DTYPE,
                     overwrite=True)  # reproduce owns cached_results/: an unfinished run is redone
    df = read_sweep(run_dir)
    expected = len(ALPHAS) * (1 + len(SUPPORTED_TASKS)) * 2
    if len(df) < expected:
        run_sweep(run_dir, list(SUPPORTED_TASKS), ALPHAS)
    return run_dir


def reproduce_relatives(out: Path, model_name: str) -> None:
    """Multi-task patching, broad transfer, WiSE-FT and task arithmetic on one embedded model (JSON files;
    summary.md reads them back)."""
    from .relatives import arithmetic_study, multitask_study, transfer_study, wiseft_study
    rel = out / model_name / "relatives"
    patch_runs = [ensure_run(out, model_name, t) for t in PATCH_TASKS]
    transfer_runs = [*patch_runs, *(ensure_run(out, model_name, t) for t in TRANSFER_SOURCES)]
    multitask_study(patch_runs, SUPPORTED_TASKS, rel / "multitask.json")
    transfer_study(transfer_runs, list(EMBEDDED_TASKS), rel / "transfer.json")
    wiseft_study(out / model_name / "digits", list(DIGIT_SHIFTS), rel / "wiseft.json", fisher=WISEFT_FISHER)
    arithmetic_study(patch_runs, SUPPORTED_TASKS, rel / "arithmetic.json", negate=["digits", "counting"])


# Model soups on micro-rn-l's digits: the shipped run (seed 0, lr 3e-4) and four more fine-tunes (seeds and
# learning rates, as the model-soups recipe varies them). The ingredients' weights are not shipped (92 MB);
# reproduce fine-tunes them into cached_results/micro-rn-l/soup-ingredients/ (git-ignored), soup.json is shipped.
SOUP_MODEL, SOUP_TASK = "micro-rn-l", "digits"
SOUP_INGREDIENTS = {"seed1": FinetuneConfig(seed=1), "seed2": FinetuneConfig(seed=2),
                    "lr1e-4": FinetuneConfig(seed=3, lr=1e-4), "lr1e-3": FinetuneConfig(seed=4, lr=1e-3)}
WISEFT_FISHER: dict = {}  # WiSE-FT's Fisher-weighted ensemble at Fisher merging's declared defaults


def soup_ingredients(out: Path) -> list[Path]:
    """The soup's ingredient runs: the shipped digits run, then the others, fine-tuned where missing."""
    runs = [ensure_run(out, SOUP_MODEL, SOUP_TASK)]
    for name, cfg in SOUP_INGREDIENTS.items():
        run_dir = out / SOUP_MODEL / "soup-ingredients" / f"{SOUP_TASK}-{name}"
        if not run_is_finished(run_dir, cfg):
            run_finetune(run_dir, SOUP_MODEL, None, SOUP_TASK, cfg, command=COMMAND, storage_dtype=SHIPPED_DTYPE,
                         overwrite=True)
        runs.append(run_dir)
    return runs


def reproduce_soup(out: Path) -> dict:
    """Uniform and greedy soups of the digits fine-tunes against every ingredient (relatives/soup.json)."""
    from .soup import soup_study
    return soup_study(soup_ingredients(out), list(SUPPORTED_TASKS), out / SOUP_MODEL / "relatives" / "soup.json")


def reproduce_closed_vocab(out: Path) -> None:
    """Closed-vocabulary task addition on micro-vit, and the disentanglement error of micro-rn-l for contrast."""
    from .closed_vocab import clip_disentanglement, closed_vocab_study
    from ..engine.pretrain_encoder import pretrain_encoder
    if not embedded_weights("micro-vit").is_file():
        pretrain_encoder("micro-vit", command=COMMAND)
    d = out / "closed_vocab"
    closed_vocab_study(d / "micro-vit")
    clip_disentanglement((out / "micro-rn-l" / "digits", out / "micro-rn-l" / "counting"),
                         d / "micro-rn-l_disentanglement.json")


def continued_model(out: Path) -> Path:
    """micro-rn-s pretrained further on another corpus draw: an upgrade that shares the old model's init."""
    from ..engine.pretrain import pretrain
    path = out / "prompts" / f"{CONTINUED_NAME}.safetensors"
    if not path.is_file():
        pretrain("micro-rn-s", path.parent, CONTINUED_RECIPE, command=COMMAND, init_from=embedded_weights("micro-rn-s"),
                 out_name=CONTINUED_NAME)
    return path


def reproduce_prompts(out: Path) -> None:
    """CoOp vs ContCoOp trained on micro-rn-s ("old") and plugged into two upgrades: micro-rn-l (pretrained
    from another init) and micro-rn-s pretrained further (same init)."""
    from .prompt_update import update_study_file
    studies = {"update.json": ("micro-rn-l", None), "update_continued.json": ("micro-rn-s", continued_model)}
    for name, (new, weights) in studies.items():
        new_pretrained = str(weights(out)) if weights else None
        label = f"{new} ({Path(new_pretrained).name})" if new_pretrained else new
        update_study_file(out / "prompts" / name, "micro-rn-s", new, list(PATCH_TASKS), new_pretrained=new_pretrained,
                          new_label=label)


PLAN_TASKS = ("digits", "counting", "typographic")  # searched on micro-rn-l (issue 27's science)
PLAN_MODEL = "micro-rn-l"
READING_RUN = Path("reading") / "typographic"       # the reading model's typographic run, searched too


def reproduce_plans(out: Path) -> list[Path]:
    """Per-block plans searched by every searcher (default settings) for micro-rn-l's digits, counting and
    typographic runs and the reading model's typographic run: plan-<method>.json in each run, the plans' rows in
    its sweep.csv. A plan file written with the same settings is kept (and a cut-off cma search replays)."""
    from ..configs import SearchConfig
    from .search import default_plan_path, search_run
    from .search_methods import SEARCHERS
    written = []
    runs = [out / PLAN_MODEL / t for t in PLAN_TASKS] + [out / READING_RUN]
    for run_dir in runs:
        if not (run_dir / "run.json").is_file():
            continue
        for method in SEARCHERS:
            f = default_plan_path(run_dir, method)
            try:
                done = json.loads(f.read_text())["config"] == asdict(SearchConfig())
            except (OSError, ValueError, KeyError, TypeError):
                done = False
            if not done:
                search_run(run_dir, f, method, SearchConfig(), command=COMMAND)
            written.append(f)
    return written


def reproduce(out: Path = CACHED_RESULTS, models: list[str] | None = None, tasks: list[str] | None = None) -> dict:
    models = models or list(EMBEDDED_MODELS)
    tasks = tasks or list(PATCH_TASKS)
    summary = {"schema": 1, "command": COMMAND, "code_version": code_version(), "supported": list(SUPPORTED_TASKS),
               "models": {}}
    jobs = [(m, t) for m in models for t in tasks]
    for model_name in models:
        summary["models"][model_name] = {"diagnostics": diagnose(model_name, out), "runs": {}}
    for model_name, task in tqdm(jobs, desc="reproduce", unit="run"):
        run_dir = ensure_run(out, model_name, task)
        summary["models"][model_name]["runs"][task] = run_summary(run_dir, task)
    for model_name in RELATIVES_MODELS:
        if model_name in models:
            reproduce_relatives(out, model_name)
    if PLAN_MODEL in models:
        reproduce_plans(out)
    if SOUP_MODEL in models:
        reproduce_soup(out)
    if set(PROMPT_MODELS) <= set(models):
        reproduce_prompts(out)
        reproduce_closed_vocab(out)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    atomic_write_text(out / "summary.md", summary_markdown(summary) + relatives_markdown(out) + plans_markdown(out))
    return summary


def run_summary(run_dir: Path, task: str) -> dict:
    df = read_sweep(run_dir)
    sup = list(SUPPORTED_TASKS)
    ft = frontier(df, task, sup, "test")
    choice = select_run(run_dir)
    return {
        "chosen_alpha_val": choice["alpha"],
        "test_at_chosen": choice["test"],
        "test_zero_shot": {t: float(ft.loc[0.0, t]) for t in [task, *sup]},
        "test_finetuned": {t: float(ft.loc[1.0, t]) for t in [task, *sup]},
        "within_1pt_drift": gain_within_drift(df, task, sup, 0.01),
        "frontier_area_test": frontier_area(ft),
        "max_gap_above_chord_test": float(chord_gap(ft).max()),
        "mean_gap_above_chord_test": float(chord_gap(ft).iloc[1:-1].mean()),
    }


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _diagnostics(summary: dict) -> dict[str, DiagnosticsResults]:
    """Each model's diagnostics in ``summary`` (the results of its diagnostics.json), through their reader."""
    return {name: DiagnosticsResults.from_fields(Fields(m["diagnostics"], f"summary: {name} (diagnostics results)",
                                                        "results"))
            for name, m in summary["models"].items()}


def _diag_tasks(diagnostics: dict[str, DiagnosticsResults]) -> list[str]:
    """The tasks the diagnostics measured (diagnostics written before a task existed do not have it)."""
    return list(dict.fromkeys(k for d in diagnostics.values() for k in d.zero_shot_test))


def summary_markdown(summary: dict) -> str:
    sup = summary["supported"]
    diagnostics = _diagnostics(summary)
    tasks = _diag_tasks(diagnostics)
    lines = ["# cached_results summary", "",
             f"Written by `{summary['command']}` (code {summary['code_version']}); every number is a test-split "
             "accuracy in %, alpha chosen on val. Do not edit by hand.", "",
             "| model | patch task | zero-shot patch / supported | fine-tuned patch / supported | chosen alpha | "
             "patched patch / supported | gain within 1 pt drift (alpha) | gap above chord mean / max | "
             "linear probe | area |", "|---|---|---|---|---|---|---|---|---|---|"]
    for model_name, m in summary["models"].items():
        for task, r in m["runs"].items():
            zs, fin, at = r["test_zero_shot"], r["test_finetuned"], r["test_at_chosen"]
            sup_mean = lambda d: sum(d[s] for s in sup) / len(sup)  # noqa: E731
            w = r["within_1pt_drift"]
            lines.append(
                f"| {model_name} | {task} | {_pct(zs[task])} / {_pct(sup_mean(zs))} | {_pct(fin[task])} / "
                f"{_pct(sup_mean(fin))} | {r['chosen_alpha_val']:g} | {_pct(at[task])} / {_pct(sup_mean(at))} | "
                f"{100 * w['patch_gain']:+.1f} ({w['alpha']:g}) | {_pct(r['mean_gap_above_chord_test'])} / "
                f"{_pct(r['max_gap_above_chord_test'])} | {_pct(diagnostics[model_name].linear_probe_test[task])} | "
                f"{r['frontier_area_test']:.0f} |")
    lines += ["", "## Zero-shot test accuracy per task (%)", "",
              "| model | " + " | ".join(tasks) + " | typographic: object / word / control |",
              "|---|" + "---|" * (len(tasks) + 1)]
    for model_name, d in diagnostics.items():
        lines.append(f"| {model_name} | " + " | ".join(_pct(d.zero_shot_test.get(k, float("nan"))) for k in tasks)
                     + f" | {_pct(d.object_rate)} / {_pct(d.word_rate)} / {_pct(d.control_object_rate)} |")
    return "\n".join(lines) + "\n"


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def _read(path: Path, kind: str):
    """The ``kind`` study at ``path`` through its reader (an older format is an error here: reproduce rewrites it)."""
    study = read_study(path, kind)
    if study is None:
        raise ValueError(f"{path} is in an older format: run python -m paint_core reproduce to regenerate it")
    return study


def relatives_markdown(out: Path) -> str:
    """The relatives' headline numbers, read back from their JSON files (whatever exists)."""
    lines = []
    for model_dir in sorted(p for p in out.glob("*/relatives") if p.is_dir()):
        model = model_dir.parent.name
        lines += ["", f"## Relatives on {model} (test %, choices on val)", ""]
        mt = model_dir / "multitask.json"
        if mt.is_file():
            rows = _read(mt, "multitask").comparison or ()
            lines += ["| multi-task model | alpha | mean patch | supported | vs specialists (points) |", "|---|---|---|---|---|"]
            lines += [f"| {r.model} | {r.alpha} | {_pct(r.patch_mean)} | {_pct(r.supported_mean)} | "
                      + (f"{100 * r.vs_specialists:+.1f} |" if r.vs_specialists is not None else " |")
                      for r in rows]
        ar = model_dir / "arithmetic.json"
        if ar.is_file():
            a = _read(ar, "arithmetic")
            lines += ["", "| task addition | lambda | mean absolute | mean normalized | supported |",
                      "|---|---|---|---|---|"]
            lines += [f"| {n} | {r.lam:g} | {_pct(r.mean_absolute_test)} | {_pct(r.mean_normalized_test)} | "
                      f"{_pct(_mean(r.test[s] for s in r.test if s not in a.negation and s not in r.normalized_test))} |"
                      for n, r in a.addition.items()]
            for t, r in a.negation.items():
                lines.append(f"\nNegating {t} (lambda {r.lam:g}): {t} {_pct(r.zero_shot_test[t])} -> "
                             f"{_pct(r.test[t])} (chance {_pct(r.chance)}), control "
                             f"{_pct(_mean(r.zero_shot_test[c] for c in r.control))} -> "
                             f"{_pct(_mean(r.test[c] for c in r.control))}.")
        wf = model_dir / "wiseft.json"
        if wf.is_file():
            w = _read(wf, "wiseft")
            ensembles = [e for e in ("weight", "output", "fisher") if all(e in s for s in w.summary_test.values())]
            lines += ["", f"| WiSE-FT shift ({w.id_task} fine-tune) | zero-shot | fine-tuned | "
                      + " | ".join(f"best {e}-space (alpha)" if e != "fisher" else "best Fisher-weighted (alpha)"
                                   for e in ensembles) + " |", "|---|---|---|" + "---|" * len(ensembles)]
            for shift, s in w.summary_test.items():
                ws = s["weight"]
                lines.append(f"| {shift} | {_pct(ws.zero_shot_shift)} | {_pct(ws.finetuned_shift)} | "
                             + " | ".join(f"{_pct(s[e].best_shift)} ({s[e].best_shift_alpha:g})"
                                          for e in ensembles) + " |")
        sp = model_dir / "soup.json"
        if sp.is_file():
            d = _read(sp, "soup")
            task = d.task
            lines += ["", f"| {task} soup | ingredients | {task} val | {task} test | supported test |", "|---|---|---|---|---|"]
            rows = [(f"ingredient {i}", "1", r.scores) for i, r in enumerate(d.ingredients)]
            rows += [(f"{name} soup", str(len(soup.kept)), soup.scores) for name, soup in (("uniform", d.uniform),
                                                                                            ("greedy", d.greedy))]
            for label, count, r in rows:
                supported = [r[f"{s}/test"] for s in d.supported]
                lines.append(f"| {label} | {count} | {_pct(r[f'{task}/val'])} | {_pct(r[f'{task}/test'])} | "
                             f"{_pct(_mean(supported)) if supported else '-'} |")
        tr = model_dir / "transfer.json"
        if tr.is_file():
            rows = [r for r in _read(tr, "transfer").rows.to_dict("records") if r["disjoint_classes"]]
            best = {m: max((r for r in rows if r["mode"] == m), key=lambda r: r["change"], default=None)
                    for m in ("finetuned", "chosen")}
            lines.append("")
            lines += [f"Broad transfer ({'alpha 1' if m == 'finetuned' else 'chosen alpha'}): best disjoint pair "
                      f"{r['patch_task']} -> {r['eval_task']} {100 * r['change']:+.1f} points." for m, r in best.items() if r]
    cv = out / "closed_vocab" / "micro-vit" / "study.json"
    if cv.is_file():
        c = _read(cv, "closed-vocab")
        lines += ["", "## Closed-vocabulary task addition (micro-vit)", "",
                  f"Lambda {c.lam:g}: mean normalized {_pct(c.addition_mean_normalized)} (absolute "
                  f"{_pct(c.addition_mean_absolute)}); linear probe {_pct(c.probe_mean_normalized)} "
                  f"({_pct(c.probe_mean_absolute)})."]
    for f in sorted((out / "prompts").glob("update*.json")):
        d = _read(f, "prompt-update")
        by = {}
        for method, accuracy in zip(d.rows["method"], d.rows["accuracy"]):
            by.setdefault(method, []).append(float(accuracy))
        lines += ["", f"## Prompts: {d.old} -> {d.new} (mean over tasks, shots, seeds)", "",
                  "| " + " | ".join(by) + " |", "|" + "---|" * len(by), "| " + " | ".join(_pct(_mean(v)) for v in by.values()) + " |"]
    return "\n".join(lines) + ("\n" if lines else "")


def plans_markdown(out: Path) -> str:
    """The searched per-block plans against the best uniform alpha, both within the tolerance on val, on val and
    test (points; drift = mean supported accuracy lost against zero-shot)."""
    from .search import read_searched_plan
    files = sorted((out / PLAN_MODEL).glob("*/plan-*.json")) + sorted((out / READING_RUN).glob("plan-*.json"))
    if not files:
        return ""
    lines = ["", "## Per-block plans (searched on val within 1 point of supported drift; patch / drift, points)", "",
             "| run | method | plans measured | best uniform: val | test | plan: val | test | coefficients |",
             "|---|---|---|---|---|---|---|---|"]
    for f in files:
        sp = read_searched_plan(f)
        cell = lambda m: f"{100 * m.patch:.1f} / {100 * m.drift:+.1f}"  # noqa: E731
        blocks = ", ".join(f"{b} {c:.2f}" for b, c in sp.plan.blocks) if not sp.plan.is_uniform else \
            f"uniform {sp.plan.key} (no plan beat it on val)"
        lines.append(f"| {f.parent.relative_to(out)} | {sp.method} | {sp.evaluated} | alpha {sp.uniform.key}: "
                     f"{cell(sp.uniform_val)} | {cell(sp.uniform_test)} | {cell(sp.val)} | {cell(sp.test)} | {blocks} |")
    return "\n".join(lines) + "\n"
