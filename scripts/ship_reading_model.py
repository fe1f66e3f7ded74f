"""Ship the micro CLIP that reads (issues 16 and 32) beside the default, and its typographic patch as a cached run.

    python scripts/ship_reading_model.py [--weights runs/reading/curriculum-64px.safetensors]
                                         [--start runs/reading/kept-64px-20.safetensors]

The weights are issue 32's lever 12 of docs/experiments.md, a curriculum at 64 px in two stages, reproducible on a
CPU (about 2 h 20 min on one core, then 20 min on two) with the commands recorded in their sidecar ("command", then
"start_recipe" for the stage it continued from):

    python -m paint_core pretrain --model micro-rn-s-64 --out runs/reading --name kept-64px-20 \\
        --object-word-share 0.35 --word-only-caption 0.6 --word-pairs --neutral-twins 0.2 --word-colours \\
        --neutral-named --neutral-keeps-object --neutral-lengths --steps 6000 --device cpu
    python -m paint_core pretrain --model micro-rn-s-64 --init-from runs/reading/kept-64px-20.safetensors \\
        --out runs/reading --name curriculum-64px --object-word-share 0.35 --word-only-caption 0.6 --word-pairs \\
        --neutral-twins 0.35 --word-colours --neutral-named --neutral-keeps-object --neutral-fresh --steps 1500 \\
        --lr 3e-4 --device cpu

The first stage reads every class word; the second adds made-up neutral words on objects named by their object,
so that ink that is not a class name costs less. Until December 2026 the shipped reader was micro-rn-s-reads (48 px,
issue 16's reading lever 9), which read diamond, triangle and square but hardly star or cross.

They go to paint_core/weights/micro-rn-s-64-reads.safetensors (an open_clip micro-rn-s-64 checkpoint: load it with
``--model micro-rn-s-64 --pretrained paint_core/weights/micro-rn-s-64-reads.safetensors``). Weights pretrained
before sidecars recorded their start get it from ``--start``'s sidecar (its file name must be the one the weights
continued from). Then the shipped recipe (FinetuneConfig defaults, fine-tuned weights stored in float16 like every
cached run) patches it on the typographic task into cached_results/reading/typographic, swept on shapes and
colours at alpha 0, 0.1, ..., 1: the Typographic page opens this run first, so the demo shows an attack and its
patch. An existing run is kept.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from paint_core.engine.finetune import FinetuneConfig
from paint_core.engine.pretrain import start_recipe
from paint_core.io.atomic import atomic_write_text
from paint_core.io.checkpoints import load_checkpoint, sidecar_path
from paint_core.io.paths import CACHED_RESULTS_DIR, REPO_DIR, WEIGHTS_DIR
from paint_core.studies.patch import SweepSpec, run_finetune

NAME = "micro-rn-s-64-reads"
MODEL = "micro-rn-s-64"
RUN = CACHED_RESULTS_DIR / "reading" / "typographic"


def shipped_sidecar(weights: Path, start: Path | None) -> dict:
    """The weights' sidecar, with the stage they continued from filled in from ``start`` where it is missing."""
    _, meta = load_checkpoint(weights, require_sidecar=True)  # verified against its sha256 before it is shipped
    if meta.get("init_from") and not meta.get("start_recipe"):
        if start is None or start.name != meta["init_from"]:
            raise SystemExit(f"{weights} continued from {meta['init_from']}: pass that file as --start, so that "
                             "the shipped sidecar records how it was made")
        load_checkpoint(start, require_sidecar=True)
        meta["start_recipe"] = start_recipe(start)
    return meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=Path("runs/reading/curriculum-64px.safetensors"))
    parser.add_argument("--start", type=Path, default=Path("runs/reading/kept-64px-20.safetensors"),
                        help="the first stage's weights, when the weights' sidecar does not record them")
    args = parser.parse_args()
    dest = WEIGHTS_DIR / f"{NAME}.safetensors"
    if not dest.is_file():
        meta = shipped_sidecar(args.weights, args.start)
        shutil.copyfile(args.weights, dest)
        atomic_write_text(sidecar_path(dest), json.dumps(meta, indent=2, sort_keys=True))
    weights = str(dest.relative_to(REPO_DIR))  # recorded relative: the run moves with the repository
    if not (RUN / "run.json").is_file():
        run_finetune(RUN, MODEL, weights, "typographic", FinetuneConfig(),
                     command="python scripts/ship_reading_model.py", storage_dtype=torch.float16,
                     sweep_spec=SweepSpec(("shapes", "colours"), tuple(round(0.1 * i, 1) for i in range(11))))
    print(json.dumps({"weights": weights, "run": str(RUN)}, indent=1))


if __name__ == "__main__":
    main()
