"""Does a micro CLIP read? Issue 16's zero-shot measures for one or more weights files, as JSON lines.

    python scripts/reading_report.py --model micro-rn-s                       # the shipped weights
    python scripts/reading_report.py --model micro-rn-s --weights runs/reading/A-mix.safetensors

Per weights file: ``reading_test`` (300 objects drawn clean, with another class's name written on them, and with a
non-class word written the same way; size, position and colour of the word varied; also broken down by ink
colour and by position) and the zero-shot test
accuracy of the supported tasks (shapes, colours) and of the patch tasks (digits, counting, typographic);
``written_word_probe``: a logistic regression on frozen features naming the written shape word (features there
or missing).
Targets (issue 16): attacked >= 40 points below clean, written word chosen >= 40%, control within 5 points of
clean, supported >= 95%.
"""
from __future__ import annotations

import argparse
import json

from paint_core.models.clip import load_model
from paint_core.studies.diagnostics import reading_test, written_word_probe, zero_shot_accuracies


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="embedded architecture, e.g. micro-rn-s")
    ap.add_argument("--weights", nargs="*", default=[None], help="weights files (default: the shipped weights)")
    ap.add_argument("--n", type=int, default=300)
    args = ap.parse_args()
    for weights in args.weights:
        model, preprocess, tokenizer = load_model(args.model, weights)
        reading = reading_test(model, preprocess, tokenizer, n=args.n)
        zero_shot = zero_shot_accuracies(model, preprocess, tokenizer,
                                         ["shapes", "colours", "digits", "counting", "typographic"])
        probe = written_word_probe(model, preprocess)
        print(json.dumps({"weights": weights or f"shipped {args.model}", "reading": reading,
                          "written_word_probe": probe, "zero_shot_test": zero_shot}))


if __name__ == "__main__":
    main()
