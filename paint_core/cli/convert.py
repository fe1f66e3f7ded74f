"""``convert`` and ``import-run``: checkpoints made elsewhere (research-code pickles, transformers folders) brought
in safely, as safetensors or as a run directory."""
from __future__ import annotations

import argparse
from pathlib import Path

from .options import ALPHAS_HELP, add_runtime_options, command_line, csv_list


def add_convert(sub: argparse._SubParsersAction) -> None:
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


def cmd_convert(args: argparse.Namespace) -> int:
    from ..io.checkpoints import save_checkpoint
    from ..io.writes import check_checkpoint_output
    from ..models.clip import HUB_PREFIX
    from ..models.convert import convert_checkpoint

    if Path(args.checkpoint).is_dir() or args.checkpoint.startswith(HUB_PREFIX):  # transformers -> open_clip
        from ..models.hf_clip import convert_transformers_clip
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


def add_import_run(sub: argparse._SubParsersAction) -> None:
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
    s.add_argument("--alphas", default="0:1:0.1", help=ALPHAS_HELP)
    s.add_argument("--max-eval", type=int, default=None, help="evaluate on the first N images of each split")
    s.add_argument("--data-root", default=None, help="root folder for torchvision datasets")
    s.add_argument("--out", required=True, help="run directory to write")
    s.add_argument("--overwrite", action="store_true", help="replace an existing run at --out (atomically)")
    add_runtime_options(s)
    s.set_defaults(func=cmd_import_run)


def cmd_import_run(args: argparse.Namespace) -> int:
    from ..engine.evaluation import parse_alphas
    from ..studies.patch import SweepSpec, import_run

    spec = SweepSpec(tuple(csv_list(args.supported)), tuple(parse_alphas(args.alphas)), max_eval=args.max_eval) \
        if args.supported else None
    out = import_run(args.out, args.model, args.zeroshot, args.finetuned, args.task, base=args.base,
                     command=command_line(), data_root=args.data_root, overwrite=args.overwrite, sweep_spec=spec)
    print(f"wrote run {out}" + ("" if spec else f"; sweep it with: paint-core sweep --run {out} --supported ..."))
    return 0
