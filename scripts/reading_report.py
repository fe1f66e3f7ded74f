"""Does a micro CLIP read, and which words? Issue 16's and 32's zero-shot measures for one or more weights files.

    python scripts/reading_report.py --model micro-rn-s                       # the shipped weights
    python scripts/reading_report.py --model micro-rn-s-64 --weights paint_core/weights/micro-rn-s-64-reads.safetensors
    python scripts/reading_report.py --model micro-rn-s --weights shipped runs/reading/A-mix.safetensors  # both

Per weights file, first two tables (issue 32, ``reading_by_word``: every class word written on every other class's
object in every ink and position, ``--per-cell`` times each; 540 objects by default, the Typographic page's test):
- the written word chosen, % per class word, over all trials and per ink and position, and its minimum over words
  (the targets are minimums: every word >= 40%);
- the control: what a non-class word never seen in pretraining (``corpus.UNSEEN_WORDS``) costs, clean accuracy
  minus accuracy with the word written, in points per word, over all of them and the worst (target <= 5).
Then one JSON line: ``by_word`` (those figures), ``reading`` (issue 16's ``reading_test``: 300 objects drawn clean,
with another class's name written on them, and with a word of ``world.OTHER_WORDS``, which the corpus does show;
also by ink and position), the zero-shot test accuracy of the supported tasks (shapes, colours) and of the patch
tasks (digits, counting, typographic), and ``written_word_probe`` (a logistic regression on frozen features naming
the written shape word, overall and per word: the word's features there or missing).
"""
from __future__ import annotations

import argparse
import json

import pandas as pd

from paint_core.models.clip import load_model
from paint_core.runtime import make_runtime, use_runtime
from paint_core.studies.diagnostics import (control_costs, reading_by_word, reading_test, word_rates, word_summary,
                                            word_trials, written_word_probe, zero_shot_accuracies)


def percent_table(table: pd.DataFrame, last: str, pick) -> str:
    """``table`` (fractions, an "n" column) in % with one decimal, and a last row ``last`` (``pick`` of each
    column: min or max over the rows)."""
    shown = table.drop(columns="n") * 100
    shown.loc[last] = pick(shown)
    return shown.round(1).to_string(float_format=lambda v: f"{v:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="embedded architecture, e.g. micro-rn-s")
    ap.add_argument("--weights", nargs="*", default=["shipped"],
                    help="weights files; 'shipped' for the architecture's shipped weights (the default)")
    ap.add_argument("--n", type=int, default=300, help="objects of reading_test (issue 16's totals)")
    ap.add_argument("--per-cell", type=int, default=2,
                    help="trials per (word, object, ink, position) of the per-word test: 270 x this many "
                         "(2: the Typographic page's)")
    ap.add_argument("--device", default="cpu", help="where to compute: cpu (the default), cuda, auto")
    args = ap.parse_args()
    with use_runtime(make_runtime(args.device)):
        report(args)


def report(args: argparse.Namespace) -> None:
    """Print the tables and the JSON line of each weights file (module docstring)."""
    for given in args.weights:
        weights = None if given == "shipped" else given
        name = weights or f"shipped {args.model}"
        model, preprocess, tokenizer = load_model(args.model, weights)
        results = reading_by_word(model, preprocess, tokenizer, word_trials(args.per_cell))
        summary = word_summary(results)
        rates, costs = word_rates(results), control_costs(results)
        print(f"# {name}: written word chosen (%) per class word, {int(rates['n'].iloc[0])} objects each "
              f"(clean accuracy {100 * summary['clean_accuracy']:.1f})")
        print(percent_table(rates, "minimum", lambda t: t.min()))
        print(f"# {name}: cost of unseen non-class words (points: clean minus with the word), "
              f"{int(costs['n'].iloc[0])} objects each; all words together {100 * summary['control_cost']:.1f}")
        print(percent_table(costs, "maximum", lambda t: t.max()))
        reading = reading_test(model, preprocess, tokenizer, n=args.n)
        zero_shot = zero_shot_accuracies(model, preprocess, tokenizer,
                                         ["shapes", "colours", "digits", "counting", "typographic"])
        probe = written_word_probe(model, preprocess)
        print(json.dumps({"weights": name, "by_word": summary, "reading": reading,
                          "written_word_probe": probe, "zero_shot_test": zero_shot}))


if __name__ == "__main__":
    main()
