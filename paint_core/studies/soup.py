"""Model soups (Wortsman et al., ICML 2022) over several fine-tunes of one task from one zero-shot model.

A soup averages the fine-tuned image encoders: the uniform soup all of them; the greedy soup takes them in
order of val accuracy on the task and keeps each one only if the soup's val accuracy does not drop (the
model-soups recipe, with ">=": an ingredient that leaves val accuracy equal is kept). ``soup_study`` compares
the soups with every ingredient (val and test, the task and the supported tasks); ``soup_run`` writes a soup as a
run directory, so PAINT's sweep, selection, export and the dashboard work on it like on any fine-tune.
"""
from __future__ import annotations

import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Mapping, Sequence

from ..core.state_dicts import StateDict
from ..engine.evaluation import build_evals, evaluate_all
from ..io.checkpoints import save_checkpoint
from ..io.results import Fields, document, resume, write_results
from ..models.run import Run
from .patch import import_run, run_inputs
from .relatives import load_runs

SOUPS = ("uniform", "greedy")


def soup_state(runs: Sequence[Run], chosen: Sequence[int]) -> StateDict:
    """The full state with the image encoder the mean of ``chosen`` runs' fine-tuned encoders."""
    base = runs[chosen[0]].theta_ft
    out = dict(base)
    for key, value in base.items():
        if key.startswith("visual.") and value.is_floating_point():
            out[key] = sum(runs[i].theta_ft[key].float() for i in chosen).div(len(chosen)).to(value.dtype)
    return out


def greedy_soup(val_accuracies: Sequence[float], soup_accuracy: Callable[[list[int]], float]
                ) -> tuple[list[int], list[dict]]:
    """(the kept ingredients, the history: one row per ingredient tried) of the greedy recipe, given each
    ingredient's own val accuracy and ``soup_accuracy(indices)``, the val accuracy of a soup."""
    order = sorted(range(len(val_accuracies)), key=lambda i: -val_accuracies[i])
    kept, best = [order[0]], val_accuracies[order[0]]
    history = [{"ingredient": order[0], "soup_val": best, "kept": True}]
    for i in order[1:]:
        trial = soup_accuracy([*kept, i])
        keep = trial >= best
        history.append({"ingredient": i, "soup_val": trial, "kept": keep})
        if keep:
            kept, best = [*kept, i], trial
    return kept, history


def _soup_runs(run_paths: Sequence[str | Path]) -> tuple[list[Run], str]:
    """The runs of a soup and their one task (fine-tunes of several tasks are refused)."""
    runs = load_runs(run_paths)
    tasks = sorted({r.meta["task"] for r in runs})
    if len(tasks) != 1:
        raise ValueError(f"a soup mixes fine-tunes of one task; these runs patch {', '.join(tasks)}")
    return runs, tasks[0]


@contextmanager
def _soup_scores(runs: Sequence[Run], tasks: Sequence[str], splits: Sequence[str], max_eval: int | None
                 ) -> Iterator[Callable[[list[int]], dict[str, float]]]:
    """``scores(chosen)``: accuracy ("task/split") of the soup of the ``chosen`` runs, on the first run's model,
    given back at its zero-shot weights."""
    model = runs[0].model
    evals = build_evals(model, runs[0].preprocess, runs[0].tokenizer, list(tasks), splits, max_eval,
                        runs[0].meta.get("data_root"), runs[0].meta.get("download", False))

    def scores(chosen: list[int]) -> dict[str, float]:
        model.load_state_dict(soup_state(runs, chosen))
        return evaluate_all(model, evals)

    try:
        yield scores
    finally:
        model.load_state_dict(runs[0].theta_zs)


def soup_study(run_paths: Sequence[str | Path], supported: Sequence[str], out: str | Path,
               max_eval: int | None = None) -> dict:
    """Every ingredient, the uniform soup and the greedy soup: accuracy of the task and the supported tasks (val,
    test), the greedy soup's history, and the best single ingredient by val."""
    runs, task = _soup_runs(run_paths)
    inputs = {"runs": [run_inputs(r) for r in runs], "task": task, "supported": list(supported),
              "max_eval": max_eval}
    result = resume(out, "soup", inputs)
    with _soup_scores(runs, [task, *supported], ("val", "test"), max_eval) as scores:
        if "ingredients" not in result:
            result["ingredients"] = [{"run": str(r.path), **scores([i])} for i, r in enumerate(runs)]
            write_results(out, "soup", inputs, result)
        val = [row[f"{task}/val"] for row in result["ingredients"]]
        if "uniform" not in result:
            result["uniform"] = {"kept": list(range(len(runs))), **scores(list(range(len(runs))))}
            write_results(out, "soup", inputs, result)
        if "greedy" not in result:
            kept, history = greedy_soup(val, lambda chosen: scores(chosen)[f"{task}/val"])
            result["greedy"] = {"kept": kept, "history": history, **scores(kept)}
    best = max(range(len(runs)), key=lambda i: val[i])
    result["best_single"] = {"ingredient": best, **{k: v for k, v in result["ingredients"][best].items()
                                                    if k != "run"}}
    return write_results(out, "soup", inputs, result)


def soup_run(run_paths: Sequence[str | Path], out: str | Path, method: str = "greedy", max_eval: int | None = None,
             command: str = "", overwrite: bool = False) -> Path:
    """A run directory whose fine-tuned encoder is the ``method`` soup of the runs (the greedy one chosen on the
    task's val split); its provenance names the ingredients."""
    if method not in SOUPS:
        raise ValueError(f"unknown soup {method!r}; choose from {', '.join(SOUPS)}")
    runs, task = _soup_runs(run_paths)
    chosen = list(range(len(runs)))
    if method == "greedy":
        with _soup_scores(runs, [task], ("val",), max_eval) as scores:
            own = [scores([i])[f"{task}/val"] for i in range(len(runs))]
            chosen, _ = greedy_soup(own, lambda indices: scores(indices)[f"{task}/val"])
    with tempfile.TemporaryDirectory() as tmp:
        zs, ft = Path(tmp) / "zeroshot.safetensors", Path(tmp) / "soup.safetensors"
        save_checkpoint(zs, runs[0].theta_zs, {"model": runs[0].meta["model"]})
        save_checkpoint(ft, soup_state(runs, chosen), {"model": runs[0].meta["model"], "soup": method})
        return import_run(out, runs[0].meta["model"], zs, ft, task, command=command, overwrite=overwrite,
                          data_root=runs[0].meta.get("data_root"),
                          provenance={"soup": {"method": method, "ingredients": [str(runs[i].path) for i in chosen],
                                               "offered": [str(r.path) for r in runs]}})


@dataclass(frozen=True)
class SoupScores:
    """One ingredient or one soup: which ingredients it averages and its accuracy (0-1) by "task/split"."""
    kept: tuple[int, ...]
    scores: dict[str, float]  # the task and every supported task, val and test
    run: str | None = None    # an ingredient's run directory

    @classmethod
    def from_fields(cls, f: Fields, keys: Sequence[str], kept: Sequence[int] | None = None) -> SoupScores:
        """A soup (``kept`` stored), or ingredient ``kept[0]`` (its run stored)."""
        scores = {k: float(f[k]) for k in keys}
        return cls(tuple(f["kept"]), scores) if kept is None else cls(tuple(kept), scores, f["run"])


@dataclass(frozen=True)
class SoupResults:
    """The soup study (``soup_study``, kind "soup") as its readers use it."""
    KIND: ClassVar[str] = "soup"
    task: str
    supported: tuple[str, ...]
    ingredients: tuple[SoupScores, ...]  # each alone (kept: itself), in the order given
    uniform: SoupScores
    greedy: SoupScores

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], source: str | Path = "a results document") -> SoupResults:
        inputs, r = document(doc, cls.KIND, source)
        task, supported = inputs["task"], tuple(inputs["supported"])
        keys = [f"{t}/{s}" for t in (task, *supported) for s in ("val", "test")]
        return cls(task, supported,
                   tuple(SoupScores.from_fields(f, keys, [i]) for i, f in enumerate(r.records("ingredients"))),
                   SoupScores.from_fields(r.part("uniform"), keys), SoupScores.from_fields(r.part("greedy"), keys))
