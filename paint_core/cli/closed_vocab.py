"""``pretrain-classifier`` and ``closed-vocab``: task addition for an image encoder with linear heads (the embedded
micro-vit, pretrained here, or any timm model)."""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from ..configs import ClosedVocabConfig, EncoderPretrainConfig
from .options import MAX_EVAL_HELP, add_config_options, add_runtime_options, command_line, config_from, csv_list


def add_pretrain_classifier(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("pretrain-classifier", help="pretrain the closed-vocabulary micro-vit (supervised, ~7 min)")
    s.add_argument("--model", default="micro-vit", help="embedded encoder name (default: %(default)s)")
    s.add_argument("--out", default=None, help="weights file (default: the shipped one)")
    add_config_options(s, EncoderPretrainConfig)
    add_runtime_options(s)
    s.set_defaults(func=cmd_pretrain_classifier)


def cmd_pretrain_classifier(args: argparse.Namespace) -> int:
    from ..engine.pretrain_encoder import pretrain_encoder

    path = pretrain_encoder(args.model, args.out, config_from(EncoderPretrainConfig, args), command=command_line())
    print(f"wrote {path}")
    return 0


def add_closed_vocab(sub: argparse._SubParsersAction) -> None:
    cv = ClosedVocabConfig()
    s = sub.add_parser("closed-vocab", help="task addition for an encoder + linear heads (micro-vit or timm)")
    s.add_argument("--model", default="micro-vit", help="micro-vit or any timm model name (default: %(default)s)")
    s.add_argument("--pretrained", default=None, help="timm: 'timm' (download), 'random', or a local file")
    s.add_argument("--tasks", default="digits,counting,typographic", help="comma-separated (default: %(default)s)")
    s.add_argument("--steps", type=int, default=cv.finetune.steps, help="fine-tuning steps (default: %(default)s)")
    s.add_argument("--lrs", default=",".join(f"{v:g}" for v in cv.lrs),
                   help="fine-tuning learning rates tried; the best on val is kept (default: %(default)s)")
    s.add_argument("--probe-n", type=int, default=2000, help="training images for the linear probe")
    s.add_argument("--max-eval", type=int, default=None, help=MAX_EVAL_HELP)
    s.add_argument("--grid-n", type=int, default=200, help="test images per task for the disentanglement map")
    s.add_argument("--out", required=True, help="directory for per-task heads/encoders and study.json")
    add_runtime_options(s)
    s.set_defaults(func=cmd_closed_vocab)


def cmd_closed_vocab(args: argparse.Namespace) -> int:
    from ..io.writes import refuse_shipped
    from ..models.encoders import create_encoder
    from ..studies.closed_vocab import ClosedVocabResults, closed_vocab_study

    if args.pretrained is not None and args.model == "micro-vit":
        raise ValueError("--pretrained applies to timm models; micro-vit uses its shipped weights")
    refuse_shipped(args.out, "--out")
    create_encoder(args.model, args.pretrained)  # fail early on an unknown name or a bad checkpoint
    lrs = tuple(float(v) for v in csv_list(args.lrs))
    if not lrs:
        raise ValueError("give at least one learning rate with --lrs")
    base = ClosedVocabConfig()
    cfg = ClosedVocabConfig(finetune=replace(base.finetune, steps=args.steps, lr=lrs[0],
                                             warmup=min(base.finetune.warmup, args.steps)), lrs=lrs)
    doc = closed_vocab_study(args.out, args.model, csv_list(args.tasks), cfg, pretrained=args.pretrained,
                             probe_n=args.probe_n, max_eval=args.max_eval, grid_n=args.grid_n)
    r = ClosedVocabResults.from_doc(doc, Path(args.out) / "study.json")
    print(f"lambda {r.lam:g}: task addition mean normalized {100 * r.addition_mean_normalized:.1f} "
          f"(absolute {100 * r.addition_mean_absolute:.1f}); linear probe normalized "
          f"{100 * r.probe_mean_normalized:.1f} (absolute {100 * r.probe_mean_absolute:.1f})")
    return 0
