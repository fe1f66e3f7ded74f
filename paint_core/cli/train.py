"""``pretrain`` and ``finetune``: train an embedded micro CLIP, fine-tune an image encoder on a task."""
from __future__ import annotations

import argparse

from ..configs import FinetuneConfig, PretrainConfig
from ..data.corpus import CorpusConfig
from .options import add_config_options, add_runtime_options, command_line, config_from


def add_pretrain(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("pretrain", help="train an embedded micro CLIP on the procedural world (resumable)")
    s.add_argument("--model", required=True, help="embedded model name, e.g. micro-rn-s")
    s.add_argument("--out", default=None, help="folder for the weights (default: the shipped weights folder)")
    s.add_argument("--name", default=None, help="file name of the weights, without suffix (default: the model name)")
    s.add_argument("--init-from", default=None, help="continue from this weights file instead of from scratch")
    add_config_options(s, PretrainConfig)
    add_config_options(s, CorpusConfig)
    add_runtime_options(s)
    s.set_defaults(func=cmd_pretrain)


def cmd_pretrain(args: argparse.Namespace) -> int:
    from ..io.paths import WEIGHTS_DIR
    from ..engine.pretrain import pretrain

    path = pretrain(args.model, args.out or WEIGHTS_DIR, config_from(PretrainConfig, args), command=command_line(),
                    corpus=config_from(CorpusConfig, args), out_name=args.name, init_from=args.init_from)
    print(f"wrote {path}")
    return 0


def add_finetune(sub: argparse._SubParsersAction) -> None:
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


def cmd_finetune(args: argparse.Namespace) -> int:
    from ..studies.patch import run_finetune

    out = run_finetune(args.out, args.model, args.pretrained, args.task, config_from(FinetuneConfig, args),
                       command_line(), args.data_root, download=args.download, overwrite=args.overwrite)
    print(f"wrote run {out}")
    return 0
