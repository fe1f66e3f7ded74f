"""Per-block plans searched under PAINT's rule: the patch task's val accuracy as high as it goes while the mean
supported val accuracy stays within ``tolerance`` of zero-shot.

Two searchers, both starting from the best uniform alpha within the tolerance:
- ``cma``: CMA-ES (the ``cma`` package, Hansen's reference implementation) over the coefficients of the blocks the
  fine-tune changed, bounded to [0, 1], the rule by Deb's feasibility ranking (any plan keeping it beats any plan
  breaking it; cma's augmented-Lagrangian handler writes log folders into the working directory). Every plan is
  measured through the run's sweep (the one forward pass, rows kept in sweep.csv), so a search that is cut off
  replays its seeded generations from the table and goes on where it stopped.
- ``adamerging``: AdaMerging's unlabeled recipe (Yang et al. 2024): the block coefficients learned by Adam on the
  prediction entropy of unlabeled train images of the patch task, clamped to [0, 1]; the rule is checked on val
  afterwards, and a plan that breaks it is moved back towards the best uniform alpha until it holds.
Either way the plan kept is the best *measured* one that keeps the rule on val; test only reports.
"""
from __future__ import annotations

import json
import logging
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from ..configs import SearchConfig
from ..core.blocks import Block, image_blocks
from ..core.frontier import plan_points
from ..core.plan import Plan, format_coefficient, read_plan
from ..engine.training import Progress, ProgressFn
from ..io.atomic import atomic_write_text
from ..io.run_dir import read_run_meta
from ..io.writes import check_json_output, run_lock
from .patch import RunSweep, SweepSpec, _rank0_holds

from .search_methods import SEARCHERS

log = logging.getLogger(__name__)
UNIFORM_GRID = tuple(round(0.1 * i, 1) for i in range(11))
BLEND_BACK = (0.75, 0.5, 0.25)  # adamerging: how far a plan breaking the rule is moved back to the uniform one
PLAN_FILE = "plan-{method}.json"  # a search's default output, inside the run: the Patch page finds it there


def default_plan_path(run_dir: str | Path, method: str) -> Path:
    return Path(run_dir) / PLAN_FILE.format(method=method)


def model_blocks(name: str, pretrained: str | None = None) -> tuple[Block, ...]:
    """The blocks of a model's state dict: an open_clip CLIP, or a closed-vocabulary encoder (embedded or timm)."""
    from ..models.registry import EMBEDDED_ENCODERS
    if name in EMBEDDED_ENCODERS or name.startswith("timm/"):
        from ..models.encoders import create_encoder
        encoder, _ = create_encoder(name.removeprefix("timm/"), pretrained)
        return image_blocks(encoder.state_dict())
    from ..models.clip import load_model
    model, _, _ = load_model(name, pretrained)
    return image_blocks(model.state_dict())


@dataclass(frozen=True)
class Measured:
    """A plan's accuracies on one split: patch task, mean supported, and the supported drop from zero-shot."""
    patch: float
    supported: float
    drift: float


def _measured(points: pd.DataFrame, plan: Plan, zero_shot_supported: float) -> Measured | None:
    if plan.key not in points.index:
        return None
    row = points.loc[plan.key]
    return Measured(float(row["patch"]), float(row["supported"]), zero_shot_supported - float(row["supported"]))


def best_uniform(points: pd.DataFrame, tolerance: float) -> Plan:
    """The uniform alpha with the highest patch accuracy among those within ``tolerance`` of zero-shot supported
    accuracy (ties: the smaller alpha)."""
    uniform = points[points["alpha"].notna()].sort_values("alpha")
    zs = uniform.loc[uniform["alpha"].idxmin(), "supported"]
    ok = uniform[zs - uniform["supported"] <= tolerance + 1e-12]
    return Plan.of(float(ok.loc[ok["patch"].idxmax(), "alpha"]))


def search_run(path: str | Path, out: str | Path | None = None, method: str = "cma", config: SearchConfig = SearchConfig(),
               supported: Sequence[str] | None = None, max_eval: int | None = None, batch_size: int = 256,
               command: str = "", on_progress: ProgressFn | None = None) -> dict:
    """Search a per-block plan for the run at ``path`` and write it to ``out`` (default: ``plan-<method>.json`` in
    the run, where the Patch page finds it); returns what it wrote.

    ``supported`` and ``max_eval`` default to the run's sweep (the plans' rows join its table)."""
    if method not in SEARCHERS:
        raise ValueError(f"unknown search method {method!r}; choose from {', '.join(SEARCHERS)}")
    if not 0 <= config.tolerance < 1:
        raise ValueError(f"tolerance must be in [0, 1) (0.01 = 1 point), got {config.tolerance}")
    if config.budget < 1:
        raise ValueError(f"budget must be a positive number, got {config.budget}")
    path = Path(path)
    meta = read_run_meta(path)
    supported = tuple(supported or meta.get("supported") or ())
    if not supported:
        raise ValueError(f"run {path} has no supported tasks yet; pass --supported")
    max_eval = max_eval if max_eval is not None else meta.get("max_eval")
    out = check_json_output(out if out is not None else default_plan_path(path, method))
    spec = SweepSpec(supported, UNIFORM_GRID, ("val", "test"), max_eval, batch_size)
    spec.validate(meta.get("data_root"), meta.get("download", False))
    with _rank0_holds(lambda stack: stack.enter_context(run_lock(path, command))):
        sweeper = RunSweep(path, spec)
        result = _search(sweeper, method, config, on_progress)
    result = {**result, "run": str(path), "method": method, "config": asdict(config), "command": command}
    atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    return {**result, "file": str(out)}


def _search(sweeper: RunSweep, method: str, config: SearchConfig, on_progress: ProgressFn | None) -> dict:
    task, supported = sweeper.meta["task"], list(sweeper.spec.supported)
    sweeper.measure(UNIFORM_GRID, desc="uniform alphas")

    def points(split: str) -> pd.DataFrame:
        return plan_points(sweeper.table, task, supported, split)

    val = points("val")
    zs_val = float(val.loc[Plan.of(0.0).key, "supported"])
    start = best_uniform(val, config.tolerance)
    varying = [b for b in sweeper.interpolator.endpoints.varying]
    if len(varying) < 2:
        raise ValueError(f"the fine-tune changed {len(varying)} block(s) ({', '.join(varying) or 'none'}); a per-block "
                         "search needs at least two")

    def feasible(m: Measured) -> bool:
        return m.drift <= config.tolerance + 1e-12

    if method == "cma":
        tried = _cma(sweeper, varying, start, config, zs_val, on_progress)
    else:
        tried = _adamerging(sweeper, varying, start, config, zs_val, feasible, on_progress)
    val = points("val")
    scored = [(p, _measured(val, p, zs_val)) for p in tried]
    ok = [(p, m) for p, m in scored if m is not None and feasible(m)]
    chosen = max(ok, key=lambda pm: pm[1].patch)[0] if ok else start
    if chosen.is_uniform:
        log.info("no per-block plan beat the best uniform alpha %s on val within the tolerance", chosen.key)
    sweeper.measure([start, chosen], desc="test of the chosen plan")  # test rows of both, for the report
    test = points("test")
    zs_test = float(test.loc[Plan.of(0.0).key, "supported"])
    report = {}
    for name, plan in (("uniform", start), ("plan", chosen)):
        report[name] = {"key": plan.key, **plan.to_json(),
                        "val": asdict(_measured(val, plan, zs_val)), "test": asdict(_measured(test, plan, zs_test))}
    coefficients = {b: chosen.coefficient(b) for b in varying}
    return {"blocks": coefficients, "tolerance": config.tolerance, "searched_on": "val", "reported_on": "test",
            "evaluated": len(tried), "beats_uniform_on_val": report["plan"]["val"]["patch"] > report["uniform"]["val"]["patch"],
            **{k: report[k] for k in ("uniform", "plan")}}


def _cma(sweeper: RunSweep, varying: list[str], start: Plan, config: SearchConfig, zs_val: float,
         on_progress: ProgressFn | None) -> list[Plan]:
    with warnings.catch_warnings():  # cma's notes (an optional extra, flat constraint values) are not the user's
        warnings.filterwarnings("ignore", module=r"cma(\.|$)")
        return _cma_generations(sweeper, varying, start, config, zs_val, on_progress)


def _cma_generations(sweeper: RunSweep, varying: list[str], start: Plan, config: SearchConfig, zs_val: float,
                     on_progress: ProgressFn | None) -> list[Plan]:
    import cma
    task, supported = sweeper.meta["task"], list(sweeper.spec.supported)
    x0 = [start.alpha] * len(varying)
    es = cma.CMAEvolutionStrategy(x0, config.sigma, {"bounds": [0, 1], "seed": config.seed + 1, "verbose": -9,
                                                     "verb_log": 0, "verb_disp": 0, "maxfevals": config.budget,
                                                     "tolfun": 0, "tolx": 1e-4})
    tried: list[Plan] = [start]
    points: dict[str, Measured] = {}

    def plan_of(x) -> Plan:
        return Plan.per_block(dict(zip(varying, (min(1.0, max(0.0, float(v))) for v in x))))

    def fitness(x) -> float:
        """Deb's feasibility rule as one number: every plan keeping the rule (-patch accuracy, in [-1, 0]) ranks
        above every plan breaking it (1 + how far past the tolerance its supported drift goes)."""
        m = points[plan_of(x).key]
        excess = m.drift - config.tolerance
        return -m.patch if excess <= 1e-12 else 1.0 + excess

    while not es.stop() and len(tried) - 1 < config.budget:  # whole generations: the last may pass the budget
        xs = es.ask()
        plans = [plan_of(x) for x in xs]
        _measure_val(sweeper, plans, f"cma generation {es.countiter + 1}")
        val = plan_points(sweeper.table, task, supported, "val")
        for p in plans:
            points[p.key] = _measured(val, p, zs_val)
        tried.extend(plans)
        es.tell(xs, [fitness(x) for x in xs])
        if on_progress:
            on_progress(Progress(min(len(tried) - 1, config.budget), config.budget, "search"))
    return tried


def _measure_val(sweeper: RunSweep, plans: Sequence[Plan], desc: str) -> None:
    """Measure plans on the val split only (the search never looks at test)."""
    keep = sweeper.evals
    sweeper.evals = {k: v for k, v in keep.items() if k[1] == "val"}
    try:
        sweeper.measure(plans, desc=desc)
    finally:
        sweeper.evals = keep


def _adamerging(sweeper: RunSweep, varying: list[str], start: Plan, config: SearchConfig, zs_val: float,
                feasible: Callable[[Measured], bool], on_progress: ProgressFn | None) -> list[Plan]:
    from ..data.tasks import get_task
    from ..engine.adamerging import learn_block_coefficients
    from ..engine.evaluation import decode_split, materialize
    task, supported = sweeper.meta["task"], list(sweeper.spec.supported)
    run = sweeper.run
    train = decode_split(get_task(task, root=sweeper.meta.get("data_root"), download=sweeper.meta.get("download", False)),
                         "train", run.preprocess, config.unlabeled)
    images = materialize(train).tensors[0]  # labels are never read: the recipe is unlabeled
    head = sweeper.evals[(task, "val")][1]
    learned = learn_block_coefficients(run.model, head, images, run.theta_zs, run.theta_ft, varying, start.alpha,
                                       config, on_progress)
    plan = Plan.per_block(learned)
    tried = [start, plan]
    _measure_val(sweeper, [plan], "adamerging plan")
    m = _measured(plan_points(sweeper.table, task, supported, "val"), plan, zs_val)
    if m is not None and not feasible(m):  # the entropy knows nothing of the supported tasks: move back
        blends = [Plan.per_block({b: start.alpha + t * (plan.coefficient(b) - start.alpha) for b in varying})
                  for t in BLEND_BACK]
        _measure_val(sweeper, blends, "adamerging, moved back towards uniform")
        tried.extend(blends)
        log.info("the learned plan drifts %s points on supported val; blends towards alpha %s measured",
                 format_coefficient(100 * m.drift), start.key)
    return tried


@dataclass(frozen=True)
class SearchedPlan:
    """A search's plan.json as the pages show it: the plan and its measured accuracies (whole splits)."""
    file: Path
    method: str
    plan: Plan
    val: Measured
    test: Measured
    uniform: Plan
    uniform_val: Measured
    uniform_test: Measured
    evaluated: int  # plans the search measured


def read_searched_plan(path: str | Path) -> SearchedPlan:
    """A plan.json written by ``search_run``; a clear ValueError for anything else."""
    path = Path(path)
    plan = read_plan(path)  # size, JSON and the blocks checked there
    doc = json.loads(path.read_text())
    try:
        return SearchedPlan(path, str(doc["method"]), plan, Measured(**doc["plan"]["val"]),
                            Measured(**doc["plan"]["test"]), Plan.from_json(doc["uniform"], f"{path} uniform"),
                            Measured(**doc["uniform"]["val"]), Measured(**doc["uniform"]["test"]),
                            int(doc["evaluated"]))
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a plan written by `paint-core search` (missing or odd {e})") from None


def searched_plans(run_dir: str | Path) -> tuple[list[SearchedPlan], list[str]]:
    """The searched plans kept in a run (``plan-*.json``), and a sentence for each such file that cannot be read."""
    found, problems = [], []
    for f in sorted(Path(run_dir).glob(PLAN_FILE.format(method="*"))):
        try:
            found.append(read_searched_plan(f))
        except ValueError as e:
            problems.append(str(e))
    return found, problems
