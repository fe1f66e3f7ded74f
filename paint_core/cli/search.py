"""``search`` and ``blocks``: a coefficient per block of the image tower, searched under PAINT's rule, and the
blocks themselves."""
from __future__ import annotations

import argparse
import json

from ..configs import SearchConfig
from ..studies.search_methods import SEARCHERS
from .options import add_config_options, add_runtime_options, command_line, config_from, csv_list


def add_search(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("search", help="a coefficient per block, searched under PAINT's rule (resumable)")
    s.add_argument("--run-dir", "--run", dest="run", required=True, help="a run directory")
    s.add_argument("--supported", default=None, help="comma-separated supported tasks (default: the run's sweep's)")
    s.add_argument("--out", default=None, help="the plan.json to write (export --plan reads it; default: "
                   "plan-METHOD.json in the run, where the dashboard's Patch page finds it)")
    s.add_argument("--method", default="cma", choices=SEARCHERS,
                   help="cma: CMA-ES on val accuracies; adamerging: entropy of unlabeled patch images (default: "
                        "%(default)s)")
    s.add_argument("--max-eval", type=int, default=None, help="images per split (default: the run's sweep's)")
    s.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default: %(default)s)")
    add_config_options(s, SearchConfig)
    add_runtime_options(s)
    s.set_defaults(func=cmd_search)


def cmd_search(args: argparse.Namespace) -> int:
    from ..core.plan import Plan
    from ..studies.search import search_run

    result = search_run(args.run, args.out, args.method, config_from(SearchConfig, args),
                        csv_list(args.supported) if args.supported else None, args.max_eval, args.batch_size,
                        command=command_line())
    print(f"wrote {result['file']}: {Plan.per_block(result['blocks']).label()} after {result['evaluated']} plans")
    for name in ("uniform", "plan"):
        r = result[name]
        print(f"  {name:<8} {r['key']:<60.60}  " + "  ".join(
            f"{split}: patch {100 * r[split]['patch']:.1f}, supported {100 * r[split]['supported']:.1f} "
            f"(drift {100 * r[split]['drift']:+.1f})" for split in ("val", "test")))
    return 0


def add_blocks(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("blocks", help="the blocks of a model's image tower, each of which a plan gives a coefficient")
    s.add_argument("--model", required=True, help="an open_clip model name, or a closed-vocabulary encoder")
    s.add_argument("--pretrained", default=None, help="a checkpoint (only its key names matter)")
    s.add_argument("--json", action="store_true", help='print {"blocks": [{"name": ..., "keys": [...]}, ...]}')
    s.set_defaults(func=cmd_blocks)


def cmd_blocks(args: argparse.Namespace) -> int:
    from ..studies.search import model_blocks

    blocks = model_blocks(args.model, args.pretrained)
    if args.json:
        print(json.dumps({"blocks": [{"name": b.name, "keys": list(b.keys)} for b in blocks]}, indent=1))
        return 0
    width = max(len(b.name) for b in blocks)
    for b in blocks:
        shown = ", ".join(b.keys[:2]) + (f", ... ({len(b.keys)} keys)" if len(b.keys) > 2 else "")
        print(f"{b.name:<{width}}  {shown}")
    return 0
