"""``reproduce``, ``export-task`` and ``list``: what ships with the package (its models, tasks and cached
results), regenerated, exported or listed."""
from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_runtime_options


def add_reproduce(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("reproduce", help="regenerate cached_results/ from the shipped models (resumable)")
    s.add_argument("--out", default=None, help="default: the repository's cached_results/")
    s.add_argument("--models", default=None, help="comma-separated embedded models (default: all)")
    s.add_argument("--tasks", default=None, help="comma-separated patch tasks (default: all)")
    s.add_argument("--retrain", action="store_true", help="pretrain the embedded models again first (about 1 h)")
    add_runtime_options(s)
    s.set_defaults(func=cmd_reproduce)


def cmd_reproduce(args: argparse.Namespace) -> int:
    from ..io.paths import WEIGHTS_DIR
    from ..engine.pretrain import pretrain
    from ..studies.reproduce import CACHED_RESULTS, PRETRAIN_RECIPES, reproduce

    models = args.models.split(",") if args.models else None
    if args.retrain:
        from ..engine.pretrain_encoder import pretrain_encoder
        for name in models or list(PRETRAIN_RECIPES):
            pretrain(name, WEIGHTS_DIR, PRETRAIN_RECIPES[name], command=f"python -m paint_core pretrain --model {name}")
        pretrain_encoder("micro-vit", command="python -m paint_core pretrain-classifier --model micro-vit")
    reproduce(Path(args.out) if args.out else CACHED_RESULTS, models, args.tasks.split(",") if args.tasks else None)
    print((Path(args.out) if args.out else CACHED_RESULTS).joinpath("summary.md").read_text())
    return 0


def add_export_task(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("export-task", help="write an embedded task as an ImageFolder (train/val/test)")
    s.add_argument("task", help="embedded task name (see: list)")
    s.add_argument("--out", required=True, help="a new or empty folder")
    s.add_argument("--limit", type=int, default=None, help="at most this many images per split")
    s.set_defaults(func=cmd_export_task)


def cmd_export_task(args: argparse.Namespace) -> int:
    from ..data.tasks import export_imagefolder

    counts = export_imagefolder(args.task, args.out, args.limit)
    print(f"wrote {args.out}: " + ", ".join(f"{s} {n}" for s, n in counts.items()) + f" images; use --task imagefolder:{args.out}")
    return 0


def add_list(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("list", help="list embedded models and tasks")
    s.set_defaults(func=cmd_list)


def cmd_list(args: argparse.Namespace) -> int:
    # registries only, no torch: answers at once even on a loaded machine
    from ..data.tasks import list_tasks
    from ..io.paths import REPO_DIR, WEIGHTS_DIR
    from ..models.registry import EMBEDDED_ENCODERS, SHIPPED_WEIGHTS, list_models

    weights = {stem: f"{desc}: --model {model} --pretrained "
                     f"{(WEIGHTS_DIR / f'{stem}.safetensors').relative_to(REPO_DIR)}"
               for stem, (model, desc) in SHIPPED_WEIGHTS.items()}
    encoders = {n: "closed-vocabulary image encoder (timm ViT, 48 px), supervised on the embedded world; "
                   "any timm name works too" for n in EMBEDDED_ENCODERS}
    for title, entries in (("models", list_models()), ("more shipped weights", weights),
                           ("closed-vocabulary encoders", encoders), ("tasks", list_tasks())):
        print(f"{title}:")
        for name, desc in entries.items():
            print(f"  {name:16s} {desc}")
    return 0
