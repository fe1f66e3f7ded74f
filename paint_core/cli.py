"""Command line: ``python -m paint_core COMMAND ...``. argparse lives here and nowhere else."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import sys
from dataclasses import MISSING, fields, replace
from pathlib import Path
from typing import Any

import argparse


def _command_line() -> str:
    return "python -m paint_core " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _config(cls: type, args: argparse.Namespace, **fixed: Any) -> Any:
    """A config dataclass from the options ``add_config_options`` added for it (other fields: ``fixed`` or defaults)."""
    given = {f.name: getattr(args, f.name) for f in fields(cls) if f.name not in fixed and hasattr(args, f.name)}
    return cls(**given, **fixed)


def cmd_pretrain(args: argparse.Namespace) -> int:
    from .io.paths import WEIGHTS_DIR
    from .data.corpus import CorpusConfig
    from .engine.pretrain import PretrainConfig, pretrain

    path = pretrain(args.model, args.out or WEIGHTS_DIR, _config(PretrainConfig, args), command=_command_line(),
                    corpus=_config(CorpusConfig, args), out_name=args.name, init_from=args.init_from)
    print(f"wrote {path}")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from .engine.finetune import FinetuneConfig
    from .studies.patch import run_finetune

    out = run_finetune(args.out, args.model, args.pretrained, args.task, _config(FinetuneConfig, args),
                       _command_line(), args.data_root, download=args.download, overwrite=args.overwrite)
    print(f"wrote run {out}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from .engine.evaluation import parse_alphas
    from .studies.patch import run_sweep

    from .core.plan import read_plan

    plans = [*parse_alphas(args.alphas), *(read_plan(f) for f in _csv(args.plans or ""))]
    table = run_sweep(args.run, _csv(args.supported), plans, splits=_csv(args.splits),
                      max_eval=args.max_eval, batch_size=args.batch_size, overwrite=args.overwrite,
                      command=_command_line())
    uniform, per_block = table[table["alpha"].notna()], table[table["alpha"].isna()]
    print(uniform.pivot_table(index="alpha", columns=["split", "task"], values="accuracy").round(4).to_string())
    if len(per_block):
        print("per-block plans:")
        print(per_block.pivot_table(index="plan", columns=["split", "task"], values="accuracy").round(4).to_string())
    return 0


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
    from .studies.patch import select_run

    choice = select_run(args.run)
    print(json.dumps(choice, indent=2) if args.json else select_report(args.run, choice))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .core.plan import AlphaOutOfRange, Plan, read_plan
    from .studies.patch import export_run

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


def cmd_convert(args: argparse.Namespace) -> int:
    from .io.checkpoints import save_checkpoint
    from .io.writes import check_checkpoint_output
    from .models.convert import convert_checkpoint

    from .models.clip import HUB_PREFIX
    if Path(args.checkpoint).is_dir() or args.checkpoint.startswith(HUB_PREFIX):  # transformers -> open_clip
        from .models.hf_clip import convert_transformers_clip
        out = convert_transformers_clip(args.checkpoint, args.out, args.overwrite, base=args.base)
        print(f"wrote {out}: open_clip's layout; open_clip.create_model_and_transforms('local-dir:{out}')")
        return 0
    if not args.model:
        raise ValueError("--model is required for a checkpoint file (the open_clip model its weights belong to)")
    check_checkpoint_output(args.out, args.overwrite)
    c = convert_checkpoint(args.checkpoint, args.model, args.base)
    save_checkpoint(args.out, c.state, {"model": args.model, "pretrained": args.base, "converted_from": args.checkpoint,
                                        "unmatched_keys": c.unmatched_keys, "keys_from_base": c.keys_from_base,
                                        "activation": c.activation})
    print(f"wrote {args.out}: {c.converted} tensors converted, {len(c.keys_from_base)} from base, "
          f"{len(c.unmatched_keys)} ignored" + (f" (e.g. {c.unmatched_keys[0]})" if c.unmatched_keys else "")
          + (f"; activation {c.activation}, as {args.model} has" if c.activation else ""))
    return 0


def cmd_import_run(args: argparse.Namespace) -> int:
    from .engine.evaluation import parse_alphas
    from .studies.patch import SweepSpec, import_run

    spec = SweepSpec(tuple(_csv(args.supported)), tuple(parse_alphas(args.alphas)), max_eval=args.max_eval) \
        if args.supported else None
    out = import_run(args.out, args.model, args.zeroshot, args.finetuned, args.task, base=args.base,
                     command=_command_line(), data_root=args.data_root, overwrite=args.overwrite, sweep_spec=spec)
    print(f"wrote run {out}" + ("" if spec else f"; sweep it with: paint-core sweep --run {out} --supported ..."))
    return 0


def cmd_attack(args: argparse.Namespace) -> int:
    from .engine.evaluation import parse_alphas
    from .studies.typographic import attack_sweep, single_answer_note

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


def cmd_reproduce(args: argparse.Namespace) -> int:
    from .io.paths import WEIGHTS_DIR
    from .engine.pretrain import pretrain
    from .studies.reproduce import CACHED_RESULTS, PRETRAIN_RECIPES, reproduce

    models = args.models.split(",") if args.models else None
    if args.retrain:
        from .engine.pretrain_encoder import pretrain_encoder
        for name in models or list(PRETRAIN_RECIPES):
            pretrain(name, WEIGHTS_DIR, PRETRAIN_RECIPES[name], command=f"python -m paint_core pretrain --model {name}")
        pretrain_encoder("micro-vit", command="python -m paint_core pretrain-classifier --model micro-vit")
    reproduce(Path(args.out) if args.out else CACHED_RESULTS, models, args.tasks.split(",") if args.tasks else None)
    print((Path(args.out) if args.out else CACHED_RESULTS).joinpath("summary.md").read_text())
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from .configs import SearchConfig
    from .core.plan import Plan
    from .studies.search import search_run

    result = search_run(args.run, args.out, args.method, _config(SearchConfig, args),
                        _csv(args.supported) if args.supported else None, args.max_eval, args.batch_size,
                        command=_command_line())
    print(f"wrote {result['file']}: {Plan.per_block(result['blocks']).label()} after {result['evaluated']} plans")
    for name in ("uniform", "plan"):
        r = result[name]
        print(f"  {name:<8} {r['key']:<60.60}  " + "  ".join(
            f"{split}: patch {100 * r[split]['patch']:.1f}, supported {100 * r[split]['supported']:.1f} "
            f"(drift {100 * r[split]['drift']:+.1f})" for split in ("val", "test")))
    return 0


def cmd_blocks(args: argparse.Namespace) -> int:
    from .studies.search import model_blocks

    blocks = model_blocks(args.model, args.pretrained)
    if args.json:
        print(json.dumps({"blocks": [{"name": b.name, "keys": list(b.keys)} for b in blocks]}, indent=1))
        return 0
    width = max(len(b.name) for b in blocks)
    for b in blocks:
        shown = ", ".join(b.keys[:2]) + (f", ... ({len(b.keys)} keys)" if len(b.keys) > 2 else "")
        print(f"{b.name:<{width}}  {shown}")
    return 0


def cmd_export_task(args: argparse.Namespace) -> int:
    from .data.tasks import export_imagefolder

    counts = export_imagefolder(args.task, args.out, args.limit)
    print(f"wrote {args.out}: " + ", ".join(f"{s} {n}" for s, n in counts.items()) + f" images; use --task imagefolder:{args.out}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    # registries only, no torch: answers at once even on a loaded machine
    from .data.tasks import list_tasks
    from .io.paths import REPO_DIR, WEIGHTS_DIR
    from .models.registry import EMBEDDED_ENCODERS, SHIPPED_WEIGHTS, list_models

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


def _csv(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _study_out(out: str) -> str:
    """A study's --out: not inside the shipped results, and not over a file that is not an earlier result."""
    from .io.writes import check_json_output, refuse_shipped
    refuse_shipped(out, "--out")
    check_json_output(out)
    return out


def _merges(args: argparse.Namespace) -> dict[str, dict]:
    """The study's merges from --merges and the parameter options generated from the registry."""
    from .core.methods import MERGE_METHODS, get_method, merge_entries
    choices = []
    for name in _csv(args.merges):
        method = get_method(MERGE_METHODS, "merge method", name)
        given = {p.name: getattr(args, p.name) for p in method.params if getattr(args, p.name, None) is not None}
        choices.append((name, given))
    return merge_entries(choices)


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


def cmd_multitask(args: argparse.Namespace) -> int:
    from .studies.relatives import multitask_study

    result = multitask_study(_csv(args.runs), _csv(args.supported), _study_out(args.out), methods=_csv(args.methods),
                             max_eval=args.max_eval)
    for row in result["results"]["comparison"]:
        print(", ".join(f"{k} {100 * v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    from .studies.relatives import transfer_study
    from .studies.transfer import TransferResults

    out = _study_out(args.out)
    rows = TransferResults.from_doc(transfer_study(_csv(args.runs), _csv(args.eval_tasks), out,
                                                   max_eval=args.max_eval), out).rows
    for mode, patch, evaluated, change in zip(rows["mode"], rows["patch_task"], rows["eval_task"], rows["change"]):
        print(f"{mode:9s} {patch} -> {evaluated}: {100 * change:+.1f}")
    return 0


def cmd_wiseft(args: argparse.Namespace) -> int:
    from .studies.relatives import wiseft_study

    fisher = {"n": args.fisher_n, "floor": args.fisher_floor} if args.fisher else None
    result = wiseft_study(args.run, _csv(args.shift), _study_out(args.out), max_eval=args.max_eval, fisher=fisher)
    print(json.dumps(result["results"]["summary_test"], indent=2))
    return 0


def cmd_soup(args: argparse.Namespace) -> int:
    from .studies.soup import SoupResults, soup_run, soup_study

    if not args.study and not args.out:
        raise ValueError("give --out (write the soup as a run), --study (compare the soups), or both")
    if args.study:
        study_out = _study_out(args.study)
        r = SoupResults.from_doc(soup_study(_csv(args.runs), _csv(args.supported), study_out, max_eval=args.max_eval),
                                 study_out)
        task = r.task
        for i, row in enumerate(r.ingredients):
            print(f"ingredient {i} ({row.run}): {task} val {100 * row.scores[f'{task}/val']:.1f}, "
                  f"test {100 * row.scores[f'{task}/test']:.1f}")
        for name, soup in (("uniform", r.uniform), ("greedy", r.greedy)):
            print(f"{name} soup of {len(soup.kept)}: {task} val {100 * soup.scores[f'{task}/val']:.1f}, "
                  f"test {100 * soup.scores[f'{task}/test']:.1f}")
    if args.out:
        out = soup_run(_csv(args.runs), args.out, args.method, max_eval=args.max_eval, command=_command_line(),
                       overwrite=args.overwrite)
        print(f"wrote run {out}; sweep it with: paint-core sweep --run {out} --supported ...")
    return 0


def cmd_arithmetic(args: argparse.Namespace) -> int:
    from .studies.arithmetic import ArithmeticResults
    from .studies.relatives import arithmetic_study

    out = _study_out(args.out)
    study = ArithmeticResults.from_doc(arithmetic_study(_csv(args.runs), _csv(args.supported), out,
                                                        negate=_csv(args.negate), merges=_merges(args),
                                                        max_eval=args.max_eval), out)
    for name, r in study.addition.items():
        print(f"add {name}: lambda {r.lam:g}, mean normalized test accuracy {100 * r.mean_normalized_test:.1f}")
    for name, r in study.negation.items():
        print(f"negate {name}: lambda {r.lam:g}, {name} {100 * r.test[name]:.1f} "
              f"(zero-shot {100 * r.zero_shot_test[name]:.1f})")
    return 0


def cmd_pretrain_classifier(args: argparse.Namespace) -> int:
    from .engine.pretrain_encoder import EncoderPretrainConfig, pretrain_encoder

    path = pretrain_encoder(args.model, args.out, _config(EncoderPretrainConfig, args), command=_command_line())
    print(f"wrote {path}")
    return 0


def cmd_closed_vocab(args: argparse.Namespace) -> int:
    from .studies.closed_vocab import ClosedVocabConfig, ClosedVocabResults, closed_vocab_study
    from .models.encoders import create_encoder

    if args.pretrained is not None and args.model == "micro-vit":
        raise ValueError("--pretrained applies to timm models; micro-vit uses its shipped weights")
    from .io.writes import refuse_shipped
    refuse_shipped(args.out, "--out")
    create_encoder(args.model, args.pretrained)  # fail early on an unknown name or a bad checkpoint
    lrs = tuple(float(v) for v in _csv(args.lrs))
    if not lrs:
        raise ValueError("give at least one learning rate with --lrs")
    base = ClosedVocabConfig()
    cfg = ClosedVocabConfig(finetune=replace(base.finetune, steps=args.steps, lr=lrs[0],
                                             warmup=min(base.finetune.warmup, args.steps)), lrs=lrs)
    doc = closed_vocab_study(args.out, args.model, _csv(args.tasks), cfg, pretrained=args.pretrained,
                             probe_n=args.probe_n, max_eval=args.max_eval, grid_n=args.grid_n)
    r = ClosedVocabResults.from_doc(doc, Path(args.out) / "study.json")
    print(f"lambda {r.lam:g}: task addition mean normalized {100 * r.addition_mean_normalized:.1f} "
          f"(absolute {100 * r.addition_mean_absolute:.1f}); linear probe normalized "
          f"{100 * r.probe_mean_normalized:.1f} (absolute {100 * r.probe_mean_absolute:.1f})")
    return 0


def cmd_prompts(args: argparse.Namespace) -> int:
    from .engine.prompts import PromptConfig
    from .studies.prompt_update import PromptUpdateResults, update_study_file

    _study_out(args.out)
    doc = update_study_file(args.out, args.old, args.new, _csv(args.tasks), [int(s) for s in _csv(args.shots)],
                            [int(s) for s in _csv(args.seeds)], _config(PromptConfig, args, kind="coop"),
                            pool=args.pool, old_pretrained=args.old_pretrained, new_pretrained=args.new_pretrained,
                            max_eval=args.max_eval)
    rows = PromptUpdateResults.from_doc(doc, args.out).rows
    table = rows.pivot_table(index=["task", "shots"], columns="method", values="accuracy") * 100
    print(table.round(1).to_string())
    return 0


# What each config field means on the command line; the defaults and types come from the dataclasses.
FIELD_HELP = {
    "tolerance": "largest drop of the mean supported val accuracy from zero-shot (0.01 = 1 point)",
    "budget": "cma: plans evaluated on val; adamerging: gradient steps",
    "sigma": "cma: initial step size of the coefficients around the best uniform alpha",
    "unlabeled": "adamerging: unlabeled train images of the patch task", "search_lr": "adamerging: Adam's "
    "learning rate on the block coefficients", "search_batch": "adamerging: images per gradient step",
    "steps": "optimizer steps", "batch_size": "images per step", "lr": "peak learning rate (cosine schedule)",
    "weight_decay": "AdamW weight decay on matrices and kernels", "warmup": "linear warm-up steps",
    "grad_clip": "gradient-norm clip", "seed": "random seed (data order, initialisation)",
    "batchnorm_train": "let BatchNorm update its running statistics while fine-tuning",
    "corpus_size": "distinct (image, caption) pairs drawn from the procedural world",
    "count_named": "share of multi-object scenes whose caption names the count",
    "count_wrong": "share of named counts that are wrong", "digit_named": "share of digit captions naming the number",
    "digit_wrong": "share of named digits that are wrong",
    "word_only_caption": "share of object+word images captioned by the written word alone",
    "outline_share": "share of objects drawn in outline style",
    "object_word_share": "share of corpus images that are objects with a word written on them",
    "word_font_min": "smallest font size of words on objects (64 px world)",
    "word_font_max": "largest font size of words on objects (64 px world)",
    "word_pairs": "twin every object+word image with the same object under another word, in the same batch",
    "neutral_twins": "share of twins whose second word names no class (training-only words), captioned by the "
    "object alone",
    "neutral_lengths": "neutral twins' words of every length from 3 to 8 letters, evenly, instead of 3-4 letters "
    "(issue 32: ink width no longer tells a neutral word from a long class word); needs --word-pairs and "
    "--neutral-twins",
    "word_colours": "write words on objects in varied ink colours (default: white)",
    "n_ctx": "learned context tokens in the prompt", "distill": "ContCoOp: weight of the pull towards the "
    "zero-shot text features", "heads": "ContCoOp: attention heads",
}


def add_config_options(parser: argparse.ArgumentParser, cls: type, only: tuple[str, ...] | None = None) -> None:
    """One ``--field`` option per field of the config dataclass ``cls``, its default taken from the dataclass."""
    for f in fields(cls):
        if only is not None and f.name not in only:
            continue
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true", default=default, help=FIELD_HELP[f.name])
        else:
            parser.add_argument(flag, type=type(default), default=default,
                                help=f"{FIELD_HELP[f.name]} (default: %(default)s)")


DISTRIBUTED_COMMANDS = ("finetune", "sweep", "search")


def add_runtime_options(parser: argparse.ArgumentParser) -> None:
    """--device, --precision and --workers: where the command computes (``paint_core.runtime``)."""
    from .configs import PRECISIONS
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA when present, else CPU), cpu, cuda, cuda:N or mps (default: %(default)s)")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="fp32, amp (float16 autocast + gradient scaler) or amp_bf16 (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=0,
                        help="DataLoader processes decoding images (default: %(default)s, decode in the main process)")
    parser.add_argument("--accum-steps", type=int, default=1,
                        help="micro-batches per step whose gradients accumulate: the same update in less memory "
                             "(default: %(default)s)")
    parser.add_argument("--grad-checkpointing", action="store_true",
                        help="recompute activations in the backward pass (ViT towers): less memory, slower")
    parser.add_argument("--compile", action="store_true",
                        help="fine-tune through torch.compile: a minute or more of compiling first, then faster "
                             "steps on a GPU")


def add_study_output(parser: argparse.ArgumentParser) -> None:
    """--out and --max-eval, as every study on run directories takes them."""
    parser.add_argument("--out", required=True, help="results JSON file to write (an earlier one with equal inputs "
                                                     "is resumed)")
    parser.add_argument("--max-eval", type=int, default=None,
                        help="evaluate on the first N images of each split (default: all)")


def build_parser() -> argparse.ArgumentParser:
    # torch-free on purpose: --help, COMMAND --help and usage errors answer without importing torch
    from .configs import (ClosedVocabConfig, EncoderPretrainConfig, FinetuneConfig, PretrainConfig, PromptConfig,
                          SearchConfig)
    from .configs import MAX_ALPHAS
    from .core.methods import MERGE_METHODS
    from .studies.multitask_methods import MULTITASK_METHODS
    from .data.corpus import CorpusConfig
    from .version import __version__

    p = argparse.ArgumentParser(prog="paint-core", description="PAINT Explorer engine (also: python -m paint_core)")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log more and show the traceback of an error")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    max_eval_help = "evaluate on the first N images of each split (default: all)"
    alphas_help = f"start:stop:step or a comma list, at most {MAX_ALPHAS:,} alphas (default: %(default)s)"

    s = sub.add_parser("pretrain", help="train an embedded micro CLIP on the procedural world (resumable)")
    s.add_argument("--model", required=True, help="embedded model name, e.g. micro-rn-s")
    s.add_argument("--out", default=None, help="folder for the weights (default: the shipped weights folder)")
    s.add_argument("--name", default=None, help="file name of the weights, without suffix (default: the model name)")
    s.add_argument("--init-from", default=None, help="continue from this weights file instead of from scratch")
    add_config_options(s, PretrainConfig)
    add_config_options(s, CorpusConfig)
    add_runtime_options(s)
    s.set_defaults(func=cmd_pretrain)

    s = sub.add_parser("finetune", help="fine-tune the image encoder on a task with the zero-shot head frozen")
    s.add_argument("--model", required=True, help="open_clip model name or embedded model (see: list)")
    s.add_argument("--pretrained", default=None, help="open_clip pretrained tag or local checkpoint file")
    s.add_argument("--task", required=True, help="embedded task, torchvision:NAME or imagefolder:PATH")
    s.add_argument("--out", required=True, help="run directory to write")
    s.add_argument("--data-root", default=None, help="root folder for torchvision datasets")
    s.add_argument("--download", action="store_true",
                   help="let torchvision download this run's datasets into --data-root (needs internet)")
    add_config_options(s, FinetuneConfig)
    s.add_argument("--overwrite", action="store_true", help="replace an existing run at --out (atomically)")
    add_runtime_options(s)
    s.set_defaults(func=cmd_finetune)

    s = sub.add_parser("sweep", help="accuracy along alpha on the patch and supported tasks (resumable)")
    s.add_argument("--run-dir", "--run", dest="run", required=True, help="run directory (made by finetune)")
    s.add_argument("--supported", required=True, help="comma-separated supported tasks")
    s.add_argument("--alphas", default="0:1:0.1", help=alphas_help)
    s.add_argument("--plans", default=None, help="comma-separated plan.json files (a coefficient per block) "
                   "measured beside the alphas; their rows join sweep.csv")
    s.add_argument("--splits", default="val,test", help="comma-separated splits (default: %(default)s)")
    s.add_argument("--max-eval", type=int, default=None, help=max_eval_help)
    s.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default: %(default)s)")
    s.add_argument("--overwrite", action="store_true",
                   help="replace a finished sweep that used other --supported / --max-eval settings")
    add_runtime_options(s)
    s.set_defaults(func=cmd_sweep)

    s = sub.add_parser("select", help="the alpha chosen on val (paper's rule) and the accuracies at it")
    s.add_argument("--run-dir", "--run", dest="run", required=True, help="a swept run directory")
    s.add_argument("--json", action="store_true", help="print the choice as JSON")
    s.set_defaults(func=cmd_select)

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

    s = sub.add_parser("convert", help="convert a pickled research-code checkpoint to safetensors, safely; or a "
                                      "transformers CLIPModel folder to open_clip's layout")
    s.add_argument("checkpoint", help="the pickled checkpoint (.pt) to read (no code in it is run), or a "
                                      "transformers CLIPModel folder (config.json + weights)")
    s.add_argument("--model", default=None, help="open_clip model name the checkpoint's weights belong to (not "
                                                 "for a transformers folder: its config says)")
    s.add_argument("--base", default=None, help="pretrained tag or file for keys the checkpoint lacks; for a "
                   "transformers vision tower alone, the CLIPModel folder it was fine-tuned from")
    s.add_argument("--out", required=True, help="the .safetensors file to write (a folder for a transformers "
                                                "folder)")
    s.add_argument("--overwrite", action="store_true", help="replace an earlier conversion at --out")
    s.set_defaults(func=cmd_convert)

    s = sub.add_parser("import-run", help="a run directory from an existing experiment's zero-shot and fine-tuned "
                                          "checkpoints (PAINT, task_vectors, or state dicts; converted safely)")
    s.add_argument("--zeroshot", required=True, help="the zero-shot checkpoint (.pt pickle or .safetensors), or a "
                                                     "transformers CLIPModel folder or hf-hub:ORG/REPO of one")
    s.add_argument("--finetuned", required=True, help="the fine-tuned checkpoint of the same model, or a transformers "
                                                      "CLIPModel / vision-tower folder (or hf-hub: id)")
    s.add_argument("--model", default=None, help="open_clip model name the weights belong to (e.g. "
                                                 "ViT-B-32-quickgelu); left out for a transformers --zeroshot")
    s.add_argument("--task", required=True, help="the task it was fine-tuned on (embedded, torchvision:NAME, imagefolder:PATH)")
    s.add_argument("--base", default=None, help="pretrained tag or file for keys the zero-shot checkpoint lacks")
    s.add_argument("--supported", default=None, help="sweep at once on these comma-separated supported tasks")
    s.add_argument("--alphas", default="0:1:0.1", help=alphas_help)
    s.add_argument("--max-eval", type=int, default=None, help="evaluate on the first N images of each split")
    s.add_argument("--data-root", default=None, help="root folder for torchvision datasets")
    s.add_argument("--out", required=True, help="run directory to write")
    s.add_argument("--overwrite", action="store_true", help="replace an existing run at --out (atomically)")
    add_runtime_options(s)
    s.set_defaults(func=cmd_import_run)

    s = sub.add_parser("attack", help="accuracy and typographic attack-success rate of a run along alpha")
    s.add_argument("--run-dir", "--run", dest="run", required=True, help="run directory")
    s.add_argument("--task", required=True,
                   help="typographic:PATH (PAINT's label=<class>_text=<word>.png files), rta100:PATH (RTA-100's zip, "
                        "unpacked) or scam:PATH|hf-hub:BLISS-e-V/SCAM[?part=SCAM|SynthSCAM|NoSCAM|all]")
    s.add_argument("--alphas", default="0:1:0.25", help=alphas_help)
    s.add_argument("--max-eval", type=int, default=None, help="score the first N images (default: all)")
    s.add_argument("--json", action="store_true", help="print the rows as JSON")
    add_runtime_options(s)
    s.set_defaults(func=cmd_attack)

    s = sub.add_parser("reproduce", help="regenerate cached_results/ from the shipped models (resumable)")
    s.add_argument("--out", default=None, help="default: the repository's cached_results/")
    s.add_argument("--models", default=None, help="comma-separated embedded models (default: all)")
    s.add_argument("--tasks", default=None, help="comma-separated patch tasks (default: all)")
    s.add_argument("--retrain", action="store_true", help="pretrain the embedded models again first (about 1 h)")
    add_runtime_options(s)
    s.set_defaults(func=cmd_reproduce)

    s = sub.add_parser("export-task", help="write an embedded task as an ImageFolder (train/val/test)")
    s.add_argument("task", help="embedded task name (see: list)")
    s.add_argument("--out", required=True, help="a new or empty folder")
    s.add_argument("--limit", type=int, default=None, help="at most this many images per split")
    s.set_defaults(func=cmd_export_task)

    s = sub.add_parser("multitask", help="patch several tasks at once: joint, sequential, parallel (resumable)")
    s.add_argument("--runs", required=True, help="comma-separated run directories, one per patch task")
    s.add_argument("--supported", required=True, help="comma-separated supported tasks")
    add_method_options(s, MULTITASK_METHODS, "methods", "multi-task methods")
    add_study_output(s)
    add_runtime_options(s)
    s.set_defaults(func=cmd_multitask)

    s = sub.add_parser("transfer", help="accuracy change on other tasks of each patched run (broad transfer)")
    s.add_argument("--runs", required=True, help="comma-separated run directories")
    s.add_argument("--eval-tasks", required=True, help="comma-separated tasks to evaluate on")
    add_study_output(s)
    add_runtime_options(s)
    s.set_defaults(func=cmd_transfer)

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

    s = sub.add_parser("arithmetic", help=f"task addition ({'/'.join(MERGE_METHODS)}) and negation (resumable)")
    s.add_argument("--runs", required=True, help="comma-separated run directories of one zero-shot model")
    s.add_argument("--supported", required=True, help="control tasks, comma-separated")
    s.add_argument("--negate", default="", help="tasks to forget, comma-separated")
    add_method_options(s, MERGE_METHODS, "merges", "merge methods")
    add_study_output(s)
    add_runtime_options(s)
    s.set_defaults(func=cmd_arithmetic)

    s = sub.add_parser("pretrain-classifier", help="pretrain the closed-vocabulary micro-vit (supervised, ~7 min)")
    s.add_argument("--model", default="micro-vit", help="embedded encoder name (default: %(default)s)")
    s.add_argument("--out", default=None, help="weights file (default: the shipped one)")
    add_config_options(s, EncoderPretrainConfig)
    add_runtime_options(s)
    s.set_defaults(func=cmd_pretrain_classifier)

    cv = ClosedVocabConfig()
    s = sub.add_parser("closed-vocab", help="task addition for an encoder + linear heads (micro-vit or timm)")
    s.add_argument("--model", default="micro-vit", help="micro-vit or any timm model name (default: %(default)s)")
    s.add_argument("--pretrained", default=None, help="timm: 'timm' (download), 'random', or a local file")
    s.add_argument("--tasks", default="digits,counting,typographic", help="comma-separated (default: %(default)s)")
    s.add_argument("--steps", type=int, default=cv.finetune.steps, help="fine-tuning steps (default: %(default)s)")
    s.add_argument("--lrs", default=",".join(f"{v:g}" for v in cv.lrs),
                   help="fine-tuning learning rates tried; the best on val is kept (default: %(default)s)")
    s.add_argument("--probe-n", type=int, default=2000, help="training images for the linear probe")
    s.add_argument("--max-eval", type=int, default=None, help=max_eval_help)
    s.add_argument("--grid-n", type=int, default=200, help="test images per task for the disentanglement map")
    s.add_argument("--out", required=True, help="directory for per-task heads/encoders and study.json")
    add_runtime_options(s)
    s.set_defaults(func=cmd_closed_vocab)

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

    from .studies.search_methods import SEARCHERS
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

    s = sub.add_parser("blocks", help="the blocks of a model's image tower, each of which a plan gives a coefficient")
    s.add_argument("--model", required=True, help="an open_clip model name, or a closed-vocabulary encoder")
    s.add_argument("--pretrained", default=None, help="a checkpoint (only its key names matter)")
    s.add_argument("--json", action="store_true", help='print {"blocks": [{"name": ..., "keys": [...]}, ...]}')
    s.set_defaults(func=cmd_blocks)

    s = sub.add_parser("list", help="list embedded models and tasks")
    s.set_defaults(func=cmd_list)
    return p


def _run_with_runtime(args: argparse.Namespace) -> int:
    """The command inside its runtime; under torchrun (WORLD_SIZE > 1) after joining the process group."""
    from .engine import distributed
    from .runtime import make_runtime, use_runtime

    if distributed.launched_by_torchrun() and args.command not in DISTRIBUTED_COMMANDS:
        raise ValueError(f"{args.command} runs in one process; under torchrun: {', '.join(DISTRIBUTED_COMMANDS)}")
    runtime = make_runtime(args.device, args.precision, args.workers, args.accum_steps, args.grad_checkpointing,
                           args.compile)
    joined = distributed.init_from_env(runtime.device)
    try:
        with use_runtime(runtime), contextlib.ExitStack() as quiet:
            if not distributed.is_main():  # one report per command, from rank 0
                quiet.enter_context(contextlib.redirect_stdout(quiet.enter_context(open(os.devnull, "w"))))
            return args.func(args)
    finally:
        if joined:
            distributed.shutdown()


def main(argv: list[str] | None = None) -> int:
    """Exit 0 on success, 1 when the command fails (one clear line; the traceback with -v), 2 for bad usage."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("paint_core").setLevel(logging.INFO)
    try:
        if not hasattr(args, "device"):
            return args.func(args)
        return _run_with_runtime(args)
    except KeyboardInterrupt:
        print("interrupted: nothing half-written was kept", file=sys.stderr)
        return 130
    except Exception as e:
        if args.verbose:
            raise
        kind = "" if isinstance(e, (ValueError, OSError, RuntimeError)) else f"{type(e).__name__}: "
        print(f"error: {kind}{e}", file=sys.stderr)
        return 1
