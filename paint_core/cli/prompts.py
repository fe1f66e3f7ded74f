"""``prompts``: CoOp and ContCoOp prompts learned on an old model, used on an upgraded one."""
from __future__ import annotations

import argparse

from ..configs import PromptConfig
from .options import add_config_options, add_runtime_options, config_from, csv_list, study_out


def add_prompts(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("prompts", help="CoOp vs ContCoOp learned on an old model, used on an upgraded one")
    s.add_argument("--old", required=True, help="open_clip model name of the old model")
    s.add_argument("--old-pretrained", default=None, help="pretrained tag or file of the old model")
    s.add_argument("--new", required=True, help="open_clip model name of the upgraded model")
    s.add_argument("--new-pretrained", default=None, help="pretrained tag or file of the upgraded model")
    s.add_argument("--tasks", default="digits,counting,typographic", help="comma-separated (default: %(default)s)")
    s.add_argument("--shots", default="1,4,16", help="examples per class, comma-separated (default: %(default)s)")
    s.add_argument("--seeds", default="0,1,2", help="comma-separated (default: %(default)s)")
    add_config_options(s, PromptConfig, only=("n_ctx", "steps", "lr", "batch_size", "distill", "heads"))
    s.add_argument("--pool", type=int, default=600, help="training images the shots are drawn from")
    s.add_argument("--max-eval", type=int, default=None, help="evaluate on the first N test images")
    s.add_argument("--out", required=True, help="JSON file to write")
    add_runtime_options(s)
    s.set_defaults(func=cmd_prompts)


def cmd_prompts(args: argparse.Namespace) -> int:
    from ..studies.prompt_update import PromptUpdateResults, update_study_file

    study_out(args.out)
    doc = update_study_file(args.out, args.old, args.new, csv_list(args.tasks), [int(s) for s in csv_list(args.shots)],
                            [int(s) for s in csv_list(args.seeds)], config_from(PromptConfig, args, kind="coop"),
                            pool=args.pool, old_pretrained=args.old_pretrained, new_pretrained=args.new_pretrained,
                            max_eval=args.max_eval)
    rows = PromptUpdateResults.from_doc(doc, args.out).rows
    table = rows.pivot_table(index=["task", "shots"], columns="method", values="accuracy") * 100
    print(table.round(1).to_string())
    return 0
