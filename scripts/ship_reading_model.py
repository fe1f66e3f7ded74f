"""Ship the micro CLIP that reads (issue 16) beside the default, and its typographic patch as a cached run.

    python scripts/ship_reading_model.py [--weights runs/reading/L-inks-neutral35.safetensors]

The weights are reading lever 9 of docs/experiments.md ("L-inks-neutral35": twin batches, 35% of twins carrying
a training-only non-class word captioned by the object, words on objects in varied ink, 6,000 steps),
reproducible on a CPU (~85 min on one core) with the command recorded in their sidecar:

    python -m paint_core pretrain --model micro-rn-s --out runs/reading --name L-inks-neutral35 \\
        --object-word-share 0.35 --word-only-caption 0.6 --word-pairs --neutral-twins 0.35 --word-colours \\
        --steps 6000

Until session 9 the shipped reader was lever 7 ("I-neutral-20-long": 20% neutral twins, white ink only), and
until session 7 lever 3 ("C-pairs": no neutral twins, 2,500 steps).

They go to paint_core/weights/micro-rn-s-reads.safetensors (an open_clip micro-rn-s checkpoint: load it with
``--model micro-rn-s --pretrained paint_core/weights/micro-rn-s-reads.safetensors``). Then the shipped recipe
(FinetuneConfig defaults, fine-tuned weights stored in float16 like every cached run) patches it on the
typographic task into cached_results/reading/typographic, swept on shapes and colours at alpha 0, 0.1, ..., 1:
the Typographic page opens this run first, so the demo shows an attack and its patch. An existing run is kept.
"""
from __future__ import annotations

import argparse
import json
import shutil

import torch

from paint_core.engine.finetune import FinetuneConfig
from paint_core.io.checkpoints import load_checkpoint, sidecar_path
from paint_core.io.paths import CACHED_RESULTS_DIR, REPO_DIR, WEIGHTS_DIR
from paint_core.studies.patch import SweepSpec, run_finetune

NAME = "micro-rn-s-reads"
RUN = CACHED_RESULTS_DIR / "reading" / "typographic"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="runs/reading/L-inks-neutral35.safetensors")
    args = parser.parse_args()
    dest = WEIGHTS_DIR / f"{NAME}.safetensors"
    if not dest.is_file():
        load_checkpoint(args.weights, require_sidecar=True)  # verified against its sha256 before it is shipped
        shutil.copyfile(args.weights, dest)
        shutil.copyfile(sidecar_path(args.weights), sidecar_path(dest))
    weights = str(dest.relative_to(REPO_DIR))  # recorded relative: the run moves with the repository
    if not (RUN / "run.json").is_file():
        run_finetune(RUN, "micro-rn-s", weights, "typographic", FinetuneConfig(),
                     command="python scripts/ship_reading_model.py", storage_dtype=torch.float16,
                     sweep_spec=SweepSpec(("shapes", "colours"), tuple(round(0.1 * i, 1) for i in range(11))))
    print(json.dumps({"weights": weights, "run": str(RUN)}, indent=1))


if __name__ == "__main__":
    main()
