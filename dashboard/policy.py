"""What the dashboard may touch on its server, from environment variables (read at each use).

    PAINT_WRITE_ROOT     the only folder the dashboard writes in (default: ./runs)
    PAINT_DATA_ROOTS     extra folders it may read (imagefolder tasks, checkpoint files), separated by ':'
    PAINT_READ_ONLY      1: hide every write action (fine-tune, export)
    PAINT_MODELS         model names a user may fine-tune (default: the embedded micro CLIPs); shell-style
                         patterns too, e.g. hf-hub:laion/* or local-dir:* (a local-dir: folder must still lie
                         in a readable root; hf-hub: names need PAINT_ALLOW_DOWNLOAD)
    PAINT_ALLOW_DOWNLOAD 1: allow open_clip pretrained tags and torchvision downloads (default: off)
    PAINT_MAX_STEPS      most fine-tuning steps per job (default 2000)
    PAINT_MAX_EVAL       most images per split in a sweep (default 2000)
    PAINT_MAX_JOBS       training jobs at once on this server (default 1)
    PAINT_DEVICE         where the live model and jobs compute: auto (CUDA when present), cpu, cuda, cuda:N
    PAINT_PRECISION      fp32 (default), amp or amp_bf16
    PAINT_LIVE_N         images per task a slider move re-scores (default 100 on a CPU, 1000 on a GPU)
    PAINT_CACHE_DIR      decoded-image cache of sweeps (default: <write root>/.decoded, inside the write root)

Jobs: on a server that is not read-only, any session may cancel any running job (see ``may_cancel``).

Readable: cached_results/, the write root and the data roots. Every typed path is resolved (symbolic links
too) and refused outside them, with a message that does not say whether the path exists.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from paint_core.models.clip import EMBEDDED_MODELS, has_schema
from paint_core.data.tasks import list_tasks
from paint_core.io.paths import CACHED_RESULTS_DIR
from paint_core.io.writes import WriteRefused, resolve_inside


@dataclass(frozen=True)
class ServerPolicy:
    write_root: Path
    data_roots: tuple[Path, ...]
    read_only: bool
    models: tuple[str, ...]
    allow_download: bool
    max_steps: int
    max_eval: int
    max_jobs: int
    device: str
    precision: str
    live_n: int
    decode_cache: Path
    live_precision: str = "auto"

    @property
    def read_roots(self) -> tuple[Path, ...]:
        return (CACHED_RESULTS_DIR, self.write_root, *self.data_roots)


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    try:
        return max(1, int(text)) if text else default
    except ValueError:
        raise ValueError(f"environment variable {name}={text!r} must be a whole number") from None


def policy() -> ServerPolicy:
    roots = [Path(p).expanduser().resolve() for p in os.environ.get("PAINT_DATA_ROOTS", "").split(os.pathsep)
             if p.strip()]
    models = [m.strip() for m in os.environ.get("PAINT_MODELS", "").split(",") if m.strip()]
    write_root = Path(os.environ.get("PAINT_WRITE_ROOT") or Path.cwd() / "runs").expanduser().resolve()
    return ServerPolicy(
        write_root=write_root,
        data_roots=tuple(roots), read_only=_flag("PAINT_READ_ONLY"),
        models=tuple(models or EMBEDDED_MODELS), allow_download=_flag("PAINT_ALLOW_DOWNLOAD"),
        max_steps=_int("PAINT_MAX_STEPS", 2000), max_eval=_int("PAINT_MAX_EVAL", 2000),
        max_jobs=_int("PAINT_MAX_JOBS", 1), device=os.environ.get("PAINT_DEVICE", "auto").strip() or "auto",
        precision=os.environ.get("PAINT_PRECISION", "fp32").strip() or "fp32", live_n=_int("PAINT_LIVE_N", 0),
        decode_cache=Path(os.environ.get("PAINT_CACHE_DIR") or write_root / ".decoded").expanduser().resolve(),
        live_precision=os.environ.get("PAINT_LIVE_PRECISION", "auto").strip() or "auto")


def _looks_like_path(text: str) -> bool:
    return any(c in text for c in "/\\~") or text.startswith(".") or Path(text).suffix in {
        ".safetensors", ".pt", ".pth", ".bin"}


def check_model(p: ServerPolicy, model: str) -> str:
    """A model name this server offers (PAINT_MODELS: names or shell-style patterns such as ``hf-hub:laion/*``).
    A ``local-dir:`` folder must lie in a readable root (returned resolved), and a ``hf-hub:`` name downloads, so it
    needs PAINT_ALLOW_DOWNLOAD."""
    from fnmatch import fnmatchcase
    from paint_core.models.clip import HUB_PREFIX, LOCAL_DIR_PREFIX
    model = model.strip()
    if not any(fnmatchcase(model, pattern) for pattern in p.models):
        raise WriteRefused(f"model {model!r} is not offered on this server (allowed: {', '.join(p.models)}; "
                           "the operator sets PAINT_MODELS)")
    if model.startswith(LOCAL_DIR_PREFIX):
        folder = resolve_inside(model[len(LOCAL_DIR_PREFIX):], p.read_roots, "model folder")
        return LOCAL_DIR_PREFIX + str(folder)
    if model.startswith(HUB_PREFIX) and not p.allow_download:
        raise WriteRefused(f"{model} would download from the Hugging Face hub, which this server does not allow "
                           "(PAINT_ALLOW_DOWNLOAD)")
    return model


def check_pretrained(p: ServerPolicy, model: str, pretrained: str) -> str | None:
    """None (shipped weights of an embedded model), a readable file, or a tag if downloads are on."""
    pretrained = pretrained.strip()
    if not pretrained:
        if has_schema(model):
            return None  # the name carries its weights
        if model not in EMBEDDED_MODELS:
            raise WriteRefused(f"{model} has no shipped weights: give a pretrained tag or a checkpoint file "
                               "(random weights are not offered here)")
        return None
    if _looks_like_path(pretrained):
        return str(resolve_inside(pretrained, p.read_roots, "checkpoint file"))
    if not p.allow_download:
        raise WriteRefused(f"pretrained tag {pretrained!r} would download weights, which this server does not "
                           "allow (PAINT_ALLOW_DOWNLOAD); give a checkpoint file under a data folder")
    return pretrained


def check_task(p: ServerPolicy, name: str) -> str:
    """An embedded task, or ``imagefolder:`` / ``typographic:`` / ``rta100:`` / ``scam:`` a folder under the
    readable roots (resolved). A hub dataset (``scam:hf-hub:``) would be downloaded: the CLI's, not a page's."""
    name = name.strip()
    if name.startswith("scam:hf-hub:"):
        raise WriteRefused("hub datasets are not fetched by the dashboard; download SCAM under a data folder "
                           "(or use the CLI: paint-core attack --task scam:hf-hub:BLISS-e-V/SCAM)")
    for prefix in ("imagefolder:", "typographic:", "typographic-split:", "rta100:", "scam:"):
        if name.startswith(prefix):
            path, sep, option = name[len(prefix):].partition("?")
            return prefix + str(resolve_inside(path, p.read_roots, "image folder")) + sep + option
    if name.startswith("torchvision:"):
        raise WriteRefused("torchvision datasets are not offered on the dashboard (they need a data root and "
                           "may download); use the CLI, or an imagefolder: task under a data folder")
    if name not in list_tasks():
        raise WriteRefused(f"unknown task {name!r}; choose from {', '.join(list_tasks())} or imagefolder:PATH")
    return name


def may_cancel(p: ServerPolicy) -> bool:
    """Whether a session may cancel a running job it did not start: yes wherever jobs may be started (the
    server is not read-only). A session lives only as long as its browser tab, so "only the starter may
    cancel" left a job that nobody on the page could stop after a reload (a 14 h sweep held the server's one
    job slot until the operator killed it); whoever may start a job may free the slot. The job's log and
    status say that another session cancelled it."""
    return not p.read_only


@dataclass(frozen=True)
class FinetuneRequest:
    model: str
    pretrained: str | None
    task: str
    supported: tuple[str, ...]
    out: Path
    steps: int
    max_eval: int


def check_finetune(p: ServerPolicy, model: str, pretrained: str, task: str, supported: str, out: str,
                   steps: int, max_eval: int) -> FinetuneRequest:
    """Everything the Models & runs form asks, checked against the server's policy before any work."""
    if p.read_only:
        raise WriteRefused("this dashboard is read-only (PAINT_READ_ONLY)")
    model = check_model(p, model)
    if not 1 <= int(steps) <= p.max_steps:
        raise WriteRefused(f"fine-tune steps must be between 1 and {p.max_steps} on this server (PAINT_MAX_STEPS)")
    if not 1 <= int(max_eval) <= p.max_eval:
        raise WriteRefused(f"images per split must be between 1 and {p.max_eval} on this server (PAINT_MAX_EVAL)")
    tasks = [check_task(p, s) for s in supported.split(",") if s.strip()]
    if not tasks:
        raise WriteRefused("give at least one supported task, e.g. shapes,colours")
    out_dir = resolve_inside(out, [p.write_root], "run directory")
    if out_dir == p.write_root:
        raise WriteRefused(f"give a folder inside {p.write_root}, e.g. {p.write_root / 'my-run'}")
    return FinetuneRequest(model, check_pretrained(p, model, pretrained), check_task(p, task), tuple(tasks),
                           out_dir, int(steps), int(max_eval))


MAX_SEARCH_BUDGET = 200  # plans one search job may measure (each is a pass over the val splits)


@dataclass(frozen=True)
class SearchRequest:
    run: Path
    method: str
    budget: int
    tolerance: float


def check_search(p: ServerPolicy, run: str, method: str, budget: int, tolerance_points: float) -> SearchRequest:
    """The per-block search form, checked before any work. A search adds rows to the run's sweep.csv and writes
    its plan into the run, so only runs inside the write root may be searched (copy a cached run there first)."""
    from paint_core.io.writes import is_run_dir
    from paint_core.studies.search_methods import SEARCHERS
    if p.read_only:
        raise WriteRefused("this dashboard is read-only (PAINT_READ_ONLY)")
    if method not in SEARCHERS:
        raise WriteRefused(f"unknown search method {method!r}; choose from {', '.join(SEARCHERS)}")
    if not 1 <= int(budget) <= MAX_SEARCH_BUDGET:
        raise WriteRefused(f"the search budget must be between 1 and {MAX_SEARCH_BUDGET} plans on this server")
    if not 0 <= float(tolerance_points) < 100:
        raise WriteRefused(f"the tolerance is in points of supported accuracy, in [0, 100); got {tolerance_points:g}")
    run_dir = resolve_inside(run, [p.write_root], "run directory (a search writes into its run)")
    if not is_run_dir(run_dir):
        raise WriteRefused(f"{run} is not a run directory (it has no run.json); fine-tune one first")
    return SearchRequest(run_dir, method, int(budget), float(tolerance_points) / 100)
