"""WiSE-FT across fine-tuning seeds: is the small model's gain on the digit shifts more than one seed's luck?

Run: python scripts/wiseft_seeds.py   (writes runs/wiseft-seeds/, ~10 min on 2 cores; numbers in docs/experiments.md)
Seed 0 is the shipped run in cached_results/; seeds 1 and 2 change the fine-tuning data order.
"""
from __future__ import annotations

from pathlib import Path


from paint_core.engine.finetune import FinetuneConfig
from paint_core.studies.relatives import wiseft_study
from paint_core.studies.wiseft import WiseftResults
from paint_core.io.paths import CACHED_RESULTS_DIR
from paint_core.studies.patch import run_finetune
from paint_core.data.embedded import DIGIT_SHIFTS

OUT = Path("runs") / "wiseft-seeds"  # run from the repository root

for model in ("micro-rn-s", "micro-rn-l"):
    for seed in (0, 1, 2):
        if seed == 0:
            run = CACHED_RESULTS_DIR / model / "digits"
        else:
            run = OUT / f"{model}-digits-seed{seed}"
            if not (run / "finetuned.safetensors").is_file():
                run_finetune(run, model, None, "digits", FinetuneConfig(seed=seed), command="scripts/wiseft_seeds.py",
                             overwrite=True)
        out = OUT / f"{model}-seed{seed}.json"
        result = WiseftResults.from_doc(wiseft_study(run, list(DIGIT_SHIFTS), out), out)
        for shift, s in result.summary_test.items():
            w, o = s["weight"], s["output"]
            print(f"{model} seed {seed} {shift:15s} zero-shot {100 * w.zero_shot_shift:5.1f}  fine-tuned "
                  f"{100 * w.finetuned_shift:5.1f}  weight best {100 * w.best_shift:5.1f} (alpha "
                  f"{w.best_shift_alpha:g}, beats both: {w.beats_both_endpoints})  output best "
                  f"{100 * o.best_shift:5.1f} (alpha {o.best_shift_alpha:g}, beats both: "
                  f"{o.beats_both_endpoints})", flush=True)
