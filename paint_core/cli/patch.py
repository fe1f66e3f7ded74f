"""``sweep``, ``select``, ``export`` and ``attack``: a fine-tuned run measured along alpha, its alpha chosen, its
patched weights written, and its typographic attack-success rate along alpha."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .options import ALPHAS_HELP, MAX_EVAL_HELP, add_runtime_options, command_line, csv_list


def add_sweep(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("sweep", help="accuracy along alpha on the patch and supported tasks (resumable)")
    s.add_argument("--run-dir", "--run", dest="run", required=True, help="run directory (made by finetune)")
    s.add_argument("--supported", required=True, help="comma-separated supported tasks")
    s.add_argument("--alphas", default="0:1:0.1", help=ALPHAS_HELP)
    s.add_argument("--plans", default=None, help="comma-separated plan.json files (a coefficient per block) "
                   "measured beside the alphas; their rows join sweep.csv")
    s.add_argument("--splits", default="val,test", help="comma-separated splits (default: %(default)s)")
    s.add_argument("--max-eval", type=int, default=None, help=MAX_EVAL_HELP)
    s.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default: %(default)s)")
    s.add_argument("--overwrite", action="store_true",
                   help="replace a finished sweep that used other --supported / --max-eval settings")
    add_runtime_options(s)
    s.set_defaults(func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    from ..core.plan import read_plan
    from ..engine.evaluation import parse_alphas
    from ..studies.patch import run_sweep

    plans = [*parse_alphas(args.alphas), *(read_plan(f) for f in csv_list(args.plans or ""))]
    table = run_sweep(args.run, csv_list(args.supported), plans, splits=csv_list(args.splits),
                      max_eval=args.max_eval, batch_size=args.batch_size, overwrite=args.overwrite,
                      command=command_line())
    uniform, per_block = table[table["alpha"].notna()], table[table["alpha"].isna()]
    print(uniform.pivot_table(index="alpha", columns=["split", "task"], values="accuracy").round(4).to_string())
    if len(per_block):
        print("per-block plans:")
        print(per_block.pivot_table(index="plan", columns=["split", "task"], values="accuracy").round(4).to_string())
    return 0


def add_select(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("select", help="the alpha chosen on val (paper's rule) and the accuracies at it")
    s.add_argument("--run-dir", "--run", dest="run", required=True, help="a swept run directory")
    s.add_argument("--json", action="store_true", help="print the choice as JSON")
    s.set_defaults(func=cmd_select)


def select_report(run: str, choice: dict) -> str:
    """``select_run``'s choice as a person reads it: the rule, then one row per task (val and test accuracy at the
    chosen alpha, test at zero-shot, the change in points)."""
    patch = choice["patch"]
    tasks = [patch, *sorted(t for t in choice["test"] if t != patch)]
    width = max(len(t) for t in [*tasks, "task"])
    lines = [f"run {run}: alpha {choice['alpha']:g} chosen on val (the best mean of the patch accuracy, "
             f"{100 * choice['patch_accuracy']:.1f}%, and the supported mean, {100 * choice['supported_accuracy']:.1f}%)",
             f"  {'task':{width}s}  {'role':9s}  {'val':>6s}  {'test':>6s}  {'zero-shot test':>14s}  change (points)"]
    for t in tasks:
        val, test, zs = choice["per_task"].get(t), choice["test"][t], choice["test_zeroshot"].get(t)
        lines.append(f"  {t:{width}s}  {'patch' if t == patch else 'supported':9s}  "
                     + (f"{100 * val:5.1f}%" if val is not None else f"{'-':>6s}") + f"  {100 * test:5.1f}%  "
                     + (f"{100 * zs:13.1f}%  {100 * (test - zs):+.1f}" if zs is not None else f"{'-':>14s}  -"))
    return "\n".join(lines)


def cmd_select(args: argparse.Namespace) -> int:
    from ..studies.patch import select_run

    choice = select_run(args.run)
    print(json.dumps(choice, indent=2) if args.json else select_report(args.run, choice))
    return 0


def add_export(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("export", help="write the patched weights at one alpha (or per-block plan) as safetensors")
    s.add_argument("--run-dir", "--run", dest="run", required=True, help="run directory")
    which = s.add_mutually_exclusive_group(required=True)
    which.add_argument("--alpha", type=float, help="0 is zero-shot, 1 is fine-tuned")
    which.add_argument("--plan", help="a plan.json with a coefficient per block (paint-core search writes one)")
    s.add_argument("--out", required=True,
                   help="a folder in open_clip's layout (config + weights; plain open_clip loads it with "
                        "create_model_and_transforms('local-dir:FOLDER')), or a .safetensors file (weights only, "
                        "a .json sidecar beside it)")
    s.add_argument("--format", choices=("open_clip", "hub"), default="open_clip",
                   help="hub: the folder as a Hugging Face hub repository (README.md model card: base model, "
                        "sha256, coefficient, the sweep's accuracies at it), ready to push (default: %(default)s)")
    s.add_argument("--extrapolate", action="store_true", help="allow alpha outside [0, 1]")
    s.add_argument("--overwrite", action="store_true", help="replace an earlier export at --out")
    s.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from ..core.plan import AlphaOutOfRange, Plan, read_plan
    from ..studies.patch import export_run

    plan = read_plan(args.plan) if args.plan else Plan.of(args.alpha)
    try:
        sidecar = export_run(args.run, plan, args.out, allow_extrapolation=args.extrapolate,
                             overwrite=args.overwrite, card=args.format == "hub")
    except AlphaOutOfRange as e:  # export is the one command that can go beyond the endpoints
        raise AlphaOutOfRange(f"{e}; pass --extrapolate to go beyond the endpoints") from None
    print(f"wrote {args.out} ({plan.label()}, sha256 {sidecar['sha256'][:12]}...)")
    if Path(args.out).suffix == ".safetensors":
        print(f"  weights of {sidecar['model']}: open_clip.create_model_and_transforms({sidecar['model']!r}, "
              f"pretrained={args.out!r}) (an embedded micro model also needs open_clip.add_model_config"
              "(<paint_core>/model_configs); or export to a folder, which carries its config)")
    else:
        print(f"  open_clip's layout: open_clip.create_model_and_transforms('local-dir:{args.out}')")
    return 0


def add_attack(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("attack", help="accuracy and typographic attack-success rate of a run along alpha")
    s.add_argument("--run-dir", "--run", dest="run", required=True, help="run directory")
    s.add_argument("--task", required=True,
                   help="typographic:PATH (PAINT's label=<class>_text=<word>.png files), rta100:PATH (RTA-100's zip, "
                        "unpacked) or scam:PATH|hf-hub:BLISS-e-V/SCAM[?part=SCAM|SynthSCAM|NoSCAM|all]")
    s.add_argument("--alphas", default="0:1:0.25", help=ALPHAS_HELP)
    s.add_argument("--max-eval", type=int, default=None, help="score the first N images (default: all)")
    s.add_argument("--json", action="store_true", help="print the rows as JSON")
    add_runtime_options(s)
    s.set_defaults(func=cmd_attack)


def cmd_attack(args: argparse.Namespace) -> int:
    from ..engine.evaluation import parse_alphas
    from ..studies.typographic import attack_sweep, single_answer_note

    rows = attack_sweep(args.run, args.task, parse_alphas(args.alphas), max_eval=args.max_eval)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'alpha':>6} {'accuracy':>9} {'attack success':>15}   (n images, n attacked)")
        for r in rows:
            success = "-" if r["attack_success"] is None else f"{100 * r['attack_success']:.1f}%"
            print(f"{r['alpha']:>6g} {100 * r['accuracy']:>8.1f}% {success:>15}   ({r['n']}, {r['n_attacked']})")
    note = single_answer_note(rows)
    if note:
        print(f"note: {note}", file=sys.stderr)
    return 0
