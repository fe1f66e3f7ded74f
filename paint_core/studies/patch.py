"""PAINT on a run directory: fine-tune (written atomically, locked), sweep alpha (resumable), select
alpha on val, export the patched weights. The CLI's finetune / sweep / select / export and the dashboard use it."""
from __future__ import annotations

import hashlib
import logging
import math
import shutil
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import pandas as pd
import torch

from ..core.interpolation import Interpolator, interpolate
from ..core.plan import Plan
from ..core.selection import select_alpha
from ..core.state_dicts import StateDict, state_digest
from ..data.tasks import SPLITS, get_task
from ..engine import distributed
from ..engine.evaluation import MAX_ALPHAS, build_evals, check_max_eval, sweep, train_split, zero_shot_head
from ..engine.finetune import FinetuneConfig, finetune
from ..engine.training import Progress, ProgressFn
from ..io.atomic import atomic_write_bytes
from ..io.checkpoints import save_checkpoint
from ..io.run_dir import (PLAN_COLUMN, RUN_SCHEMA, check_sweep_matches, empty_sweep, portable_path, read_run_meta,
                          read_sweep, sweep_csv, write_run_meta)
from ..io.writes import (OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS, WriteRefused, check_checkpoint_output,
                         check_export_folder_output, check_run_output, run_lock, staging_dir, swap_in)
from ..models.clip import load_model, model_revision, save_open_clip_config
from ..models.run import Run, load_run
from ..runtime import current_runtime
from ..version import code_version


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepSpec:
    """What a sweep measures; validated before any file is touched."""
    supported: tuple[str, ...]
    plans: tuple[float | Plan, ...]  # alphas or per-block plans
    splits: tuple[str, ...] = ("val", "test")
    max_eval: int | None = None
    batch_size: int = 256

    def validate(self, data_root: str | None = None, download: bool = False) -> None:
        if not self.supported:
            raise ValueError("give at least one supported task (e.g. --supported shapes,colours)")
        if not self.plans:
            raise ValueError("give at least one alpha (e.g. --alphas 0:1:0.1)")
        if len(self.plans) > MAX_ALPHAS:
            raise ValueError(f"{len(self.plans):,} alphas; at most {MAX_ALPHAS:,} per sweep")
        for a in self.plans:
            Plan.of(a).check()
        bad = [s for s in self.splits if s not in SPLITS]
        if bad or not self.splits:
            raise ValueError(f"splits must be among {', '.join(SPLITS)}, got {','.join(self.splits) or 'none'}")
        check_max_eval(self.max_eval)
        if int(self.batch_size) < 1:
            raise ValueError(f"batch size must be positive, got {self.batch_size}")
        for name in self.supported:
            get_task(name, root=data_root, download=download)  # an unknown task fails here, before any write


@contextmanager
def _rank0_holds(enter: Callable[[ExitStack], Path]) -> Iterator[Path | None]:
    """Under torchrun only rank 0 takes the lock and writes; the others wait for its go (or its refusal, raised
    on every rank) and then compute alongside it. ``enter`` opens rank 0's context on the stack."""
    with ExitStack() as stack:
        if not distributed.is_main():
            refusal = distributed.broadcast_from_main(None)
            if refusal:
                raise WriteRefused(f"rank 0 refused: {refusal}")
            yield None
            distributed.barrier()  # rank 0 has written the result
            return
        try:
            value = enter(stack)
        except BaseException as e:
            distributed.broadcast_from_main(str(e) or type(e).__name__)
            raise
        distributed.broadcast_from_main(None)
        yield value
    distributed.barrier()


@contextmanager
def _new_run(out: Path, overwrite: bool, command: str, sweep_spec: SweepSpec | None,
             on_progress: ProgressFn | None) -> Iterator[Path]:
    """Hold ``out``'s lock and give a hidden folder beside it to build the run in; then sweep it if asked and
    swap it in whole. On any failure (or interruption) the folder is removed and ``out`` is as it was."""
    with run_lock(out, command):
        check_run_output(out, overwrite)  # another writer may have finished meanwhile
        staged = staging_dir(out)
        try:
            yield staged
            if sweep_spec is not None:
                _sweep_locked(staged, sweep_spec, overwrite=False, on_progress=on_progress)
            swap_in(staged, out)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise


def run_finetune(out: str | Path, model_name: str, pretrained: str | None, task_name: str,
                 cfg: FinetuneConfig = FinetuneConfig(), command: str = "", data_root: str | None = None,
                 on_progress: ProgressFn | None = None, storage_dtype: torch.dtype | None = None,
                 download: bool = False, overwrite: bool = False, sweep_spec: SweepSpec | None = None) -> Path:
    """Fine-tune ``model_name`` on ``task_name`` and write a run directory at ``out``.

    Everything is checked before anything is written; the run is built in a hidden folder beside ``out``
    (swept there too if ``sweep_spec`` is given) and swapped in whole, so ``out`` only ever holds a complete
    run. An existing run is replaced only with ``overwrite``; any other existing folder is refused.
    ``storage_dtype`` (e.g. float16, used for the runs shipped in cached_results/) stores the fine-tuned
    encoder at that precision; every sweep and the dashboard read the stored weights, so they agree.
    """
    out = check_run_output(out, overwrite)
    if cfg.steps < 1 or cfg.batch_size < 1 or not 0 < cfg.lr < math.inf or cfg.warmup < 0 \
            or not 0 <= cfg.weight_decay < math.inf or not 0 < cfg.grad_clip < math.inf:
        raise ValueError(f"fine-tuning needs steps >= 1, batch size >= 1, a finite lr > 0, warmup >= 0, a finite "
                         f"weight decay >= 0 and a finite grad clip > 0; got {cfg}")
    task = get_task(task_name, root=data_root, download=download)
    if sweep_spec is not None:
        sweep_spec.validate(data_root, download)
    if sweep_spec is not None and distributed.world_size() > 1:
        raise ValueError("fine-tune and sweep in one call runs in one process; under torchrun sweep afterwards")
    model, preprocess, tokenizer = load_model(model_name, pretrained)
    hub = model_revision(model_name)  # a hf-hub: name: the commit it resolved to, kept with the run
    revision = {"model_revision": hub} if hub else {}
    with _rank0_holds(lambda stack: stack.enter_context(_new_run(out, overwrite, command, sweep_spec,
                                                                 on_progress))) as staged:
        theta_zs = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        zs_digest = state_digest(theta_zs)
        head = zero_shot_head(model, tokenizer, task.classnames, task.templates)
        train = train_split(task, preprocess, cfg.steps * cfg.batch_size)  # uint8, the same images bit for bit
        theta_ft = finetune(model, head, train, cfg, on_progress=on_progress)
        if staged is None:  # another rank than 0: rank 0 writes the run
            return out
        visual = {k: v.cpu() for k, v in theta_ft.items() if k.startswith("visual.")}
        side = save_checkpoint(staged / "finetuned.safetensors", visual, {
            "model": model_name, "pretrained": pretrained, "task": task_name, "alpha": 1.0,
            "contains": "visual", "zeroshot_digest": zs_digest}, storage_dtype=storage_dtype)
        write_run_meta(staged, {
            "schema": RUN_SCHEMA, "model": model_name, "pretrained": pretrained, "task": task_name,
            "data_root": data_root, "download": download, "supported": [], "config": asdict(cfg),
            "finetuned_sha256": side["sha256"], "sweep_sha256": None,
            "provenance": {"code_version": code_version(), "command": command, "seed": cfg.seed,
                           "zeroshot_digest": zs_digest, **revision,
                           "runtime": {**asdict(current_runtime()), "processes": distributed.world_size()}}})
    return out


def _endpoint_state(path: str | Path, model_name: str, base: str | None) -> StateDict:
    """A full state dict of ``model_name`` from a weights file: safetensors through load_model (verified), any
    pickle (a research checkpoint, a torch.save) through the safe converter (nothing in it runs)."""
    if Path(path).suffix == ".safetensors":
        return load_model(model_name, str(path))[0].state_dict()
    from ..models.convert import convert_checkpoint
    return convert_checkpoint(path, model_name, base).state


def _beyond_rounding(a: StateDict, b: StateDict, keys: Sequence[str]) -> tuple[str | None, list[str]]:
    """(the half precision to which ``a`` and ``b`` round alike at some of ``keys``, or None; the keys that
    differ beyond any such rounding): a pair saved at two precisions differs at every key, but only so."""
    def held_in(x: torch.Tensor, d: torch.dtype) -> bool:
        return torch.equal(x.to(d).to(x.dtype), x)

    halves = (torch.float16, torch.bfloat16)
    found, beyond = None, []
    for k in keys:  # alike once rounded, and one of them stored at that precision (not a small real change)
        same = [d for d in halves if a[k].is_floating_point() and torch.equal(a[k].to(d), b[k].to(d))
                and (held_in(a[k], d) or held_in(b[k], d))]
        if same:
            found = found or str(same[0]).removeprefix("torch.")
        else:
            beyond.append(k)
    return found, beyond


def import_run(out: str | Path, model_name: str | None, zeroshot: str | Path, finetuned: str | Path, task_name: str,
               base: str | None = None, command: str = "", data_root: str | None = None, overwrite: bool = False,
               sweep_spec: SweepSpec | None = None, on_progress: ProgressFn | None = None,
               provenance: dict | None = None) -> Path:
    """A run directory from an existing experiment's zero-shot and fine-tuned checkpoints (PAINT's, task_vectors',
    or any state dict), so sweep, select, export, the studies and the dashboard work on it.

    The zero-shot model is stored in the run (zeroshot.safetensors); keys the fine-tuned file lacks come from
    it, and a fine-tuned file that changes anything outside the image encoder is refused (PAINT patches only
    the image encoder). Either endpoint may be a transformers CLIP folder (or ``hf-hub:`` id): a zero-shot one is
    converted into the run as an open_clip folder (``model/``, its architecture from its own config, so
    ``model_name`` is left out), a fine-tuned one (a CLIPModel, or a vision tower of the zero-shot CLIPModel, as
    FusionBench's task models are) converted on the way in. ``provenance``: more to record (a soup's
    ingredients). Written like a fine-tune: checked first, built beside ``out``, swapped in whole."""
    from ..models.hf_clip import convert_transformers_clip, is_transformers_source
    out = check_run_output(out, overwrite)
    get_task(task_name, root=data_root)
    if sweep_spec is not None:
        sweep_spec.validate(data_root)
    zs_hf, ft_hf = is_transformers_source(zeroshot), is_transformers_source(finetuned)
    if zs_hf and model_name:
        raise ValueError(f"--model {model_name}: the zero-shot model {zeroshot} is a transformers folder whose own "
                         "config gives the architecture; leave --model out")
    if not zs_hf and not model_name:
        raise ValueError("--model is needed: the open_clip model the zero-shot weights belong to (left out only "
                         "when --zeroshot is a transformers CLIP folder)")
    for f, hf in ((zeroshot, zs_hf), (finetuned, ft_hf)):
        if not hf and not Path(f).is_file():
            raise FileNotFoundError(f"checkpoint not found: {f} (a weights file, or a transformers CLIP folder)")
    theta_zs = None if zs_hf else _endpoint_state(zeroshot, model_name, base)
    with _new_run(out, overwrite, command, sweep_spec, on_progress) as staged:
        if zs_hf:
            folder = convert_transformers_clip(zeroshot, staged / RUN_MODEL_DIR)
            zs_file, loading = folder / OPEN_CLIP_WEIGHTS, f"local-dir:{folder}"
            model_name = f"local-dir:{RUN_MODEL_DIR}"  # recorded relative to the run: the run moves whole
            theta_zs = load_model(loading, str(zs_file))[0].state_dict()
        else:
            zs_file, loading = staged / "zeroshot.safetensors", model_name
            save_checkpoint(zs_file, theta_zs, {"model": model_name, "imported_from": str(zeroshot), "alpha": 0.0})
        if ft_hf:
            converted = convert_transformers_clip(finetuned, staged / ".finetuned", base=zeroshot if zs_hf else None)
            theta_ft = _endpoint_state(converted / OPEN_CLIP_WEIGHTS, loading, str(zs_file))
            shutil.rmtree(converted)
        else:
            theta_ft = _endpoint_state(finetuned, loading, str(zs_file))
        outside = [k for k in theta_zs if not k.startswith("visual.") and not torch.equal(theta_ft[k], theta_zs[k])]
        rounding, outside = _beyond_rounding(theta_zs, theta_ft, outside)
        if rounding and not outside:
            raise ValueError(f"{finetuned} and {zeroshot} differ outside the image encoder only by rounding to "
                             f"{rounding}: they were saved at different precisions (e.g. a float32 zero-shot and a "
                             f"{rounding} fine-tune). Save both at one precision (e.g. both in {rounding}) and "
                             "import again")
        if outside:
            raise ValueError(f"{finetuned} changes weights outside the image encoder (first: {outside[0]!r}); "
                             "PAINT patches the image encoder only, with the zero-shot text head frozen")
        zs_digest = state_digest(load_model(loading, str(zs_file))[0].state_dict())
        visual = {k: v for k, v in theta_ft.items() if k.startswith("visual.")}
        side = save_checkpoint(staged / "finetuned.safetensors", visual, {
            "model": model_name, "task": task_name, "alpha": 1.0, "contains": "visual",
            "imported_from": str(finetuned), "zeroshot_digest": zs_digest})
        write_run_meta(staged, {
            "schema": RUN_SCHEMA, "model": model_name, "pretrained": base, "task": task_name,
            "zeroshot_file": zs_file.relative_to(staged).as_posix(), "data_root": data_root, "download": False,
            "supported": [],
            "config": {"imported": True}, "finetuned_sha256": side["sha256"], "sweep_sha256": None,
            "provenance": {"code_version": code_version(), "command": command, "zeroshot_digest": zs_digest,
                           "imported_from": {"zeroshot": str(zeroshot), "finetuned": str(finetuned)},
                           **(provenance or {})}})
    return out


RUN_MODEL_DIR = "model"  # an imported transformers model's open_clip folder, inside the run


def run_inputs(run: Run) -> dict:
    """A run as a study's input: where it is and the hash of its fine-tuned weights (a re-fine-tuned run with
    the same path is a different input)."""
    return {"path": portable_path(run.path), "weights_sha256": run.weights_sha256}


def run_sweep(path: str | Path, supported: Sequence[str], plans: Sequence[float | Plan],
              splits: Sequence[str] = ("val", "test"), max_eval: int | None = None, batch_size: int = 256,
              on_progress: ProgressFn | None = None, overwrite: bool = False,
              command: str = "") -> pd.DataFrame:
    """Sweep a run over ``plans`` (alphas or per-block plans) on the patch task and ``supported`` tasks; resumes
    from sweep.csv.

    All inputs are checked first and a failed sweep changes no file. A finished sweep with other settings
    (supported tasks, max_eval) is replaced only with ``overwrite``, and only once the new one has its first
    alpha. One writer at a time (a lock beside the run directory).
    """
    spec = SweepSpec(tuple(supported), tuple(Plan.of(a) for a in plans), tuple(splits), max_eval, batch_size)
    meta = read_run_meta(path)
    spec.validate(meta.get("data_root"), meta.get("download", False))
    with _rank0_holds(lambda stack: stack.enter_context(run_lock(path, command))):
        return _sweep_locked(Path(path), spec, overwrite, on_progress)


def _sweep_locked(path: Path, spec: SweepSpec, overwrite: bool,
                  on_progress: ProgressFn | None) -> pd.DataFrame:
    return RunSweep(path, spec, overwrite, on_progress).measure(spec.plans)


class RunSweep:
    """A run's evaluation sets and interpolator, loaded once; ``measure(plans)`` adds the plans' rows to sweep.csv
    (skipping rows it has), written after each plan. Used inside the run's lock: by ``sweep``, and by
    ``search``, which measures one generation of plans at a time."""

    def __init__(self, path: Path, spec: SweepSpec, overwrite: bool = False, on_progress: ProgressFn | None = None):
        meta = read_run_meta(path)
        try:
            check_sweep_matches(path, meta)
            previous = read_sweep(path, per_block=True)
        except ValueError as e:
            log.warning("%s: starting the sweep afresh", e)
            previous = empty_sweep()
        settings = {"supported": list(spec.supported), "max_eval": spec.max_eval}
        if len(previous) and {k: meta.get(k) for k in settings} != settings:
            if not overwrite:
                raise WriteRefused(f"run {path} already has a sweep with supported {meta.get('supported')} and "
                                   f"max_eval {meta.get('max_eval')}; replacing it with supported "
                                   f"{settings['supported']} and max_eval {spec.max_eval} must be asked for "
                                   "(CLI: --overwrite)")
            previous = previous.iloc[0:0]
        self.path, self.spec, self.meta, self.settings = path, spec, meta, settings
        self.table, self.on_progress = previous, on_progress
        self.run = load_run(path)
        tasks = [meta["task"], *[s for s in spec.supported if s != meta["task"]]]
        self.evals = build_evals(self.run.model, self.run.preprocess, self.run.tokenizer, tasks, spec.splits,
                                 spec.max_eval, meta.get("data_root"), meta.get("download", False))
        self.interpolator = Interpolator(self.run.model, self.run.theta_zs, self.run.theta_ft)

    def _save(self, table: pd.DataFrame, wanted: set[str]) -> None:
        self.table = table
        if not distributed.is_main():
            return
        data = sweep_csv(table)
        atomic_write_bytes(self.path / "sweep.csv", data)
        write_run_meta(self.path, {**self.meta, **self.settings,
                                   "sweep_sha256": hashlib.sha256(data).hexdigest()})  # last
        if self.on_progress:
            have = set(table[PLAN_COLUMN])
            self.on_progress(Progress(len(have & wanted), len(wanted), "sweep"))

    def measure(self, plans: Sequence[float | Plan], desc: str = "sweep") -> pd.DataFrame:
        """The whole table once every plan has rows for every (task, split) of the spec."""
        plans = [Plan.of(p).check() for p in plans]
        wanted = {p.key for p in plans}
        table = sweep(self.interpolator, self.evals, plans, self.spec.batch_size, done=self.table,
                      on_alpha=lambda t: self._save(t, wanted), desc=desc)
        self._save(table, wanted)
        return table


def select_run(path: str | Path) -> dict:
    meta = read_run_meta(path)
    if not meta.get("supported"):
        raise ValueError(f"run {path} has no sweep yet: python -m paint_core sweep --run {path} --supported ...")
    check_sweep_matches(path, meta)
    df = read_sweep(path)
    expected = {meta["task"], *meta["supported"]}
    if set(df["task"]) != expected:
        raise ValueError(f"{path}/sweep.csv has tasks {sorted(set(df['task']))} but run.json names "
                         f"{sorted(expected)}; run the sweep again")
    choice = select_alpha(df, meta["task"], meta["supported"], split="val")
    test = df[(df["split"] == "test") & (df["alpha"] == choice["alpha"])]
    choice["test"] = {r.task: float(r.accuracy) for r in test.itertuples()}
    zs = df[(df["split"] == "test") & (df["alpha"] == df["alpha"].min())]
    choice["test_zeroshot"] = {r.task: float(r.accuracy) for r in zs.itertuples()}
    return choice


def model_card(run: Run, plan: Plan, sha256: str) -> str:
    """A hub model card (README.md, written by open_clip's own ``generate_readme``) for the model at ``plan``: base
    model and revision, the fine-tuned weights' sha256, the coefficient, the sweep's accuracies at it, the tool."""
    from open_clip.push_to_hf_hub import generate_readme
    meta = run.meta
    table = read_sweep(run.path, per_block=True)
    rows = table[table[PLAN_COLUMN] == plan.key]
    measured = {f"{r.task} ({r.split}, {int(r.n)} images)": f"{100 * r.accuracy:.1f}%"
                for r in rows.sort_values(["split", "task"]).itertuples()}
    base = meta["model"] + (f" (pretrained: {meta['pretrained']})" if meta.get("pretrained") else "")
    revision = meta["provenance"].get("model_revision")
    details = {
        "Base model": base + (f", revision {revision}" if revision else ""),
        "Patched task": meta["task"], "Supported tasks": ", ".join(meta.get("supported") or []) or "none",
        "Coefficient": f"{plan.label()} (key {plan.key})",
        "Fine-tuned image encoder sha256": meta.get("finetuned_sha256") or run.weights_sha256,
        "Weights sha256 (this export)": sha256,
        "Accuracy at this coefficient (the run's sweep)": measured or "not measured by the run's sweep",
        "Made by": f"PAINT Explorer {code_version()}",
    }
    card = {"description": "A CLIP patched with PAINT: the image encoder fine-tuned on the patched task with the "
                           "zero-shot text head frozen, then interpolated with the zero-shot weights "
                           "(theta = (1 - alpha) theta_zero-shot + alpha theta_fine-tuned, per block for a plan).",
            "details": details,
            "usage": "```python\nimport open_clip\nmodel, _, preprocess = open_clip.create_model_and_transforms("
                     "'local-dir:THIS_FOLDER')  # or 'hf-hub:ORG/REPO' once pushed\n"
                     "tokenizer = open_clip.get_tokenizer('local-dir:THIS_FOLDER')\n```\n",
            "tags": ("clip", "paint", "open_clip")}
    return generate_readme(card, f"{meta['model']} patched on {meta['task']}")


def export_run(path: str | Path, alpha: float | Plan | None, out: str | Path, allow_extrapolation: bool = False,
               overwrite: bool = False, card: bool = False) -> dict:
    """Write the full model state at ``alpha`` (a number, a per-block ``Plan``, or None: the alpha the run chose on
    val); returns the weights' sidecar: ``alpha``, or for a per-block plan None and its coefficients under
    ``plan``. ``out`` ending in .safetensors: one file with a JSON sidecar. Any other ``out``: a folder
    in open_clip's own layout (``open_clip_config.json`` + ``open_clip_model.safetensors`` + its sidecar), which
    plain open_clip loads with ``create_model_and_transforms("local-dir:OUT")``: the export carries its config.

    Never into the shipped weights or cached_results/, never over a file or folder this tool did not write, and
    over an earlier export only with ``overwrite``."""
    plan = Plan.of(alpha).check(allow_extrapolation) if alpha is not None else None
    suffix = Path(out).suffix
    if suffix not in ("", ".safetensors"):  # "x.txt" is a typo more often than a folder's name
        raise WriteRefused(f"output {Path(out).name!r} must end in .safetensors (one weights file) or have no "
                           "suffix (a folder in open_clip's layout)")
    folder = suffix != ".safetensors"
    if card and not folder:
        raise WriteRefused(f"a hub export is a folder: give --out without a suffix, not {Path(out).name!r}")
    (check_export_folder_output if folder else check_checkpoint_output)(out, overwrite)
    if plan is None:
        plan = Plan.of(select_run(path)["alpha"])
    run = load_run(path)
    state = interpolate(run.theta_zs, run.theta_ft, plan, allow_extrapolation)
    meta = {"model": run.meta["model"], "pretrained": run.meta["pretrained"], "task": run.meta["task"],
            "alpha": plan.uniform, "run": str(path)}
    if not plan.is_uniform:
        meta["plan"] = plan.to_json()["blocks"]
    if not folder:
        return save_checkpoint(out, state, meta)
    staged = staging_dir(out)
    try:
        save_open_clip_config(run.model, run.meta["model"], staged / OPEN_CLIP_CONFIG)
        sidecar = save_checkpoint(staged / OPEN_CLIP_WEIGHTS, state, meta)
        if card:
            (staged / "README.md").write_text(model_card(run, plan, sidecar["sha256"]))
            if hasattr(run.tokenizer, "save_pretrained"):  # a Hugging Face tokenizer travels with the model
                run.tokenizer.save_pretrained(staged)
        swap_in(staged, out)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return sidecar


def patch_story(path: str | Path, split: str = "test") -> dict:
    """The numbers of PAINT's story on one swept run: zero-shot and fine-tuned accuracies of the patch task and
    the mean supported accuracy, the alpha chosen on val (the paper's rule) with its accuracies, and how far the
    frontier at that alpha lies above the straight line between the endpoints (points)."""
    from ..core.frontier import chord_gap, frontier
    meta = read_run_meta(path)
    choice = select_run(path)
    df = read_sweep(path)
    f = frontier(df, meta["task"], meta["supported"], split)
    lo, hi, at = f.index.min(), f.index.max(), choice["alpha"]
    return {"patch": meta["task"], "supported": list(meta["supported"]), "split": split,
            "zero_shot": {"patch": float(f.loc[lo, "patch"]), "supported": float(f.loc[lo, "supported"])},
            "fine_tuned": {"patch": float(f.loc[hi, "patch"]), "supported": float(f.loc[hi, "supported"])},
            "chosen_alpha": float(at),
            "chosen": {"patch": float(f.loc[at, "patch"]), "supported": float(f.loc[at, "supported"])},
            "above_chord": float(chord_gap(f).loc[at])}
