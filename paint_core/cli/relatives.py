"""PAINT's relatives on run directories: ``multitask``, ``transfer``, ``soup``, ``wiseft`` and ``arithmetic``, each
a resumable study; the merge and multi-task methods' options come from their registries."""
from __future__ import annotations

import argparse
import json

from ..core.methods import MERGE_METHODS
from ..studies.multitask_methods import MULTITASK_METHODS
from .options import add_runtime_options, add_study_output, command_line, csv_list, study_out


def add_method_options(s: argparse.ArgumentParser, methods: dict, option: str, what: str) -> None:
    """``--<option>`` (comma-separated names) and one ``--<param>`` per declared parameter, from a registry.
    A parameter name shared by several methods is one option; left out, each method uses its declared default."""
    s.add_argument(f"--{option}", default=",".join(methods), help=f"comma-separated {what}: "
                   + "; ".join(f"{m.name}: {m.help}" for m in methods.values()).replace("%", "%%") + " (default: %(default)s)")
    params: dict[str, list] = {}
    for m in methods.values():
        for p in m.params:
            params.setdefault(p.name, []).append((m, p))
    for name, uses in params.items():
        s.add_argument(f"--{name}", type=uses[0][1].type, default=None, help="; ".join(
            f"{m.name}: {p.help} in {p.range_text()} (default: {p.default:g})" for m, p in uses).replace("%", "%%"))


def merges_from(args: argparse.Namespace) -> dict[str, dict]:
    """The study's merges from --merges and the parameter options generated from the registry."""
    from ..core.methods import get_method, merge_entries
    choices = []
    for name in csv_list(args.merges):
        method = get_method(MERGE_METHODS, "merge method", name)
        given = {p.name: getattr(args, p.name) for p in method.params if getattr(args, p.name, None) is not None}
        choices.append((name, given))
    return merge_entries(choices)


def add_multitask(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("multitask", help="patch several tasks at once: joint, sequential, parallel (resumable)")
    s.add_argument("--runs", required=True, help="comma-separated run directories, one per patch task")
    s.add_argument("--supported", required=True, help="comma-separated supported tasks")
    add_method_options(s, MULTITASK_METHODS, "methods", "multi-task methods")
    add_study_output(s)
    add_runtime_options(s)
    s.set_defaults(func=cmd_multitask)


def cmd_multitask(args: argparse.Namespace) -> int:
    from ..studies.relatives import multitask_study

    result = multitask_study(csv_list(args.runs), csv_list(args.supported), study_out(args.out),
                             methods=csv_list(args.methods), max_eval=args.max_eval)
    for row in result["results"]["comparison"]:
        print(", ".join(f"{k} {100 * v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    return 0


def add_transfer(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("transfer", help="accuracy change on other tasks of each patched run (broad transfer)")
    s.add_argument("--runs", required=True, help="comma-separated run directories")
    s.add_argument("--eval-tasks", required=True, help="comma-separated tasks to evaluate on")
    add_study_output(s)
    add_runtime_options(s)
    s.set_defaults(func=cmd_transfer)


def cmd_transfer(args: argparse.Namespace) -> int:
    from ..studies.relatives import transfer_study
    from ..studies.transfer import TransferResults

    out = study_out(args.out)
    rows = TransferResults.from_doc(transfer_study(csv_list(args.runs), csv_list(args.eval_tasks), out,
                                                   max_eval=args.max_eval), out).rows
    for mode, patch, evaluated, change in zip(rows["mode"], rows["patch_task"], rows["eval_task"], rows["change"]):
        print(f"{mode:9s} {patch} -> {evaluated}: {100 * change:+.1f}")
    return 0


def add_soup(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("soup", help="model soups of several fine-tunes of one task: a soup as a run (--out) and/or "
                                    "the study of uniform and greedy soups against every ingredient (--study)")
    s.add_argument("--runs", required=True, help="comma-separated run directories: fine-tunes of one task from one "
                                                 "zero-shot model (seeds, learning rates)")
    s.add_argument("--method", choices=("greedy", "uniform"), default="greedy",
                   help="greedy: by val accuracy, an ingredient kept only if the soup's val accuracy does not drop; "
                        "uniform: all of them (default: %(default)s)")
    s.add_argument("--out", default=None, help="run directory to write the soup to (then sweep, select, export it)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing run at --out (atomically)")
    s.add_argument("--study", default=None, help="results JSON file of the soup study (resumable)")
    s.add_argument("--supported", default="", help="with --study: supported tasks to score too, comma-separated")
    s.add_argument("--max-eval", type=int, default=None, help="evaluate on the first N images of each split")
    add_runtime_options(s)
    s.set_defaults(func=cmd_soup)


def cmd_soup(args: argparse.Namespace) -> int:
    from ..studies.soup import SoupResults, soup_run, soup_study

    if not args.study and not args.out:
        raise ValueError("give --out (write the soup as a run), --study (compare the soups), or both")
    if args.study:
        out = study_out(args.study)
        r = SoupResults.from_doc(soup_study(csv_list(args.runs), csv_list(args.supported), out,
                                            max_eval=args.max_eval), out)
        task = r.task
        for i, row in enumerate(r.ingredients):
            print(f"ingredient {i} ({row.run}): {task} val {100 * row.scores[f'{task}/val']:.1f}, "
                  f"test {100 * row.scores[f'{task}/test']:.1f}")
        for name, soup in (("uniform", r.uniform), ("greedy", r.greedy)):
            print(f"{name} soup of {len(soup.kept)}: {task} val {100 * soup.scores[f'{task}/val']:.1f}, "
                  f"test {100 * soup.scores[f'{task}/test']:.1f}")
    if args.out:
        out = soup_run(csv_list(args.runs), args.out, args.method, max_eval=args.max_eval, command=command_line(),
                       overwrite=args.overwrite)
        print(f"wrote run {out}; sweep it with: paint-core sweep --run {out} --supported ...")
    return 0


def add_wiseft(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("wiseft", help="weight- vs output-space ensembles on distribution-shifted tasks")
    s.add_argument("--run-dir", "--run", dest="run", required=True, help="run directory")
    s.add_argument("--shift", required=True, help="comma-separated shifted tasks, e.g. digits_rotated")
    fisher_params = {p.name: p for p in MERGE_METHODS["fisher"].params}  # one declaration, as Fisher merging's
    s.add_argument("--fisher", action="store_true", help="also WiSE-FT's Fisher-weighted weight-space ensemble")
    s.add_argument("--fisher-n", type=int, default=int(fisher_params["n"].default),
                   help=f"with --fisher: {fisher_params['n'].help} (default: %(default)s)")
    s.add_argument("--fisher-floor", type=float, default=fisher_params["floor"].default,
                   help=f"with --fisher: {fisher_params['floor'].help} (default: %(default)s)")
    add_study_output(s)
    add_runtime_options(s)
    s.set_defaults(func=cmd_wiseft)


def cmd_wiseft(args: argparse.Namespace) -> int:
    from ..studies.relatives import wiseft_study

    fisher = {"n": args.fisher_n, "floor": args.fisher_floor} if args.fisher else None
    result = wiseft_study(args.run, csv_list(args.shift), study_out(args.out), max_eval=args.max_eval, fisher=fisher)
    print(json.dumps(result["results"]["summary_test"], indent=2))
    return 0


def add_arithmetic(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("arithmetic", help=f"task addition ({'/'.join(MERGE_METHODS)}) and negation (resumable)")
    s.add_argument("--runs", required=True, help="comma-separated run directories of one zero-shot model")
    s.add_argument("--supported", required=True, help="control tasks, comma-separated")
    s.add_argument("--negate", default="", help="tasks to forget, comma-separated")
    add_method_options(s, MERGE_METHODS, "merges", "merge methods")
    add_study_output(s)
    add_runtime_options(s)
    s.set_defaults(func=cmd_arithmetic)


def cmd_arithmetic(args: argparse.Namespace) -> int:
    from ..studies.arithmetic import ArithmeticResults
    from ..studies.relatives import arithmetic_study

    out = study_out(args.out)
    study = ArithmeticResults.from_doc(arithmetic_study(csv_list(args.runs), csv_list(args.supported), out,
                                                        negate=csv_list(args.negate), merges=merges_from(args),
                                                        max_eval=args.max_eval), out)
    for name, r in study.addition.items():
        print(f"add {name}: lambda {r.lam:g}, mean normalized test accuracy {100 * r.mean_normalized_test:.1f}")
    for name, r in study.negation.items():
        print(f"negate {name}: lambda {r.lam:g}, {name} {100 * r.test[name]:.1f} "
              f"(zero-shot {100 * r.zero_shot_test[name]:.1f})")
    return 0
