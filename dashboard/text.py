"""The sentences and labels pages show, as pure functions of values (no Streamlit, no model): each wording rule
lives in one place and is unit-tested alone."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the WiSE-FT study's reader, for the hint only
    from paint_core.studies.wiseft import EnsembleSummary

# Below this input size (px) a model was trained on the procedural world and cannot read photos.
PHOTO_MIN_INPUT = 100


def _said(model: str, said: str, true: str, word: str, before_wrong: bool | None = None) -> str:
    """One model's part of the verdict: right, fooled (it names the written word) or a plain error."""
    if said == true:
        state = "fixed" if before_wrong else "still right" if before_wrong is False else "right"
        return f"{model} {state}: *{said}*"
    if said.strip().lower() == word.strip().lower():
        return f"{model} {'still fooled' if before_wrong else 'fooled'}: predicts *{said}*, the written word"
    return f"{model} wrong, but not fooled by the word: predicts *{said}*"


def verdict(zero_shot: str, true: str, word: str, patched: str | None = None, alpha: float | None = None) -> str:
    """The Typographic page's one-line verdict on the image with the word. "Fooled" only when the prediction is
    the written word; another wrong class is a plain error (issue 26: every wrong answer was "fooled")."""
    text = _said("zero-shot", zero_shot, true, word)
    if patched is not None:
        text += "; " + _said(f"patched (alpha {alpha:g})", patched, true, word, before_wrong=zero_shot != true)
    return text


def image_titles(source: str, word: str, carries_word: bool = False) -> tuple[str, str]:
    """Titles of the two pictures: the image as it is, and with the word written on it. An upload is not claimed
    to be "without the word": it may carry one of its own."""
    if source == "Compose":
        return "Without the word", f"With the word “{word}”"
    if carries_word:
        return "As uploaded (it carries a word of its own)", f"As uploaded, with “{word}” written over it"
    return "As uploaded (no word on it)", f"With the word “{word}”"


def photo_warning(input_size: int | Sequence[int]) -> str | None:
    """A warning for an uploaded photo shown to a model too small to read photos (the 48 px micro models)."""
    size = min(input_size) if isinstance(input_size, (tuple, list)) else int(input_size)
    if size >= PHOTO_MIN_INPUT:
        return None
    return (f"This model sees images at {size} px: it was trained on the procedural world and cannot read photos. "
            "Open a run of a real CLIP to inspect photos.")


def duration(seconds: float) -> str:
    """A job's duration as a person reads it: 42 s, 3 min 05 s, 1 h 02 min."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def job_timing(started: float, ended: float | None, running: bool, now: float) -> str:
    """"running for 42 s" or "took 3 min 05 s" (a job that ended without a word has no end time: unknown)."""
    if running:
        return f"running for {duration(now - started)}"
    return f"took {duration(ended - started)}" if ended is not None else "duration unknown"


def degenerate_run_note(steps: int | None, patch: str, sweep) -> str | None:
    """Why a Patch page shows next to nothing: the fine-tuned endpoint is (almost) the zero-shot model, so every
    alpha is the same model. ``steps``: run.json's fine-tuning steps (None: an imported run); ``sweep``: sweep.csv's
    table (may be empty), whose test split gives the patch task's accuracy at alpha 0 and 1."""
    test = sweep[(sweep["split"] == "test") & (sweep["task"] == patch)].sort_values("alpha") if len(sweep) else []
    zero_shot, fine_tuned = (float(test["accuracy"].iloc[0]), float(test["accuracy"].iloc[-1])) if len(test) > 1 \
        else (None, None)
    few = steps is not None and steps < 10
    flat = zero_shot is not None and abs(fine_tuned - zero_shot) < 0.01
    if not (few or flat):
        return None
    why = f"it was fine-tuned for only {steps} step{'s' if steps != 1 else ''}" if few else \
        "fine-tuning did not change its accuracy"
    change = "" if zero_shot is None else \
        f" ({patch}: {100 * zero_shot:.1f}% zero-shot, {100 * fine_tuned:.1f}% fine-tuned, test split)"
    return (f"This run can show little: {why}{change}, so the fine-tuned weights are close to the zero-shot ones and "
            "every alpha gives nearly the same model. Fine-tune for more steps (the default is 300) to see the "
            "trade-off between the patch task and the supported tasks.")


def wiseft_conclusion(summary: dict[str, EnsembleSummary], shift: str, id_task: str) -> str:
    """What the WiSE-FT study found on one shifted task, in words (``summary``: the study's ``summary_test[shift]``,
    one entry per ensemble; accuracies 0-1, effective robustness in accuracy units)."""
    names = {"weight": "weight-space", "output": "output-space"}
    winners = [n for n, s in summary.items() if s.beats_both_endpoints]
    any_s = next(iter(summary.values()))
    zs, ft = 100 * any_s.zero_shot_shift, 100 * any_s.finetuned_shift
    base = f"On {shift} (trained on {id_task}), zero-shot scores {zs:.1f}% and fine-tuned {ft:.1f}%."
    if not winners:
        best = max(summary, key=lambda n: summary[n].max_effective_robustness)
        lift = 100 * summary[best].max_effective_robustness
        return (f"{base} Neither ensemble beats both endpoints on the shift: mixing the two models buys no robustness "
                f"here (at most {lift:.1f} points above the endpoints' line, {names.get(best, best)}).")
    parts = []
    for n in winners:
        s = summary[n]
        parts.append(f"the {names.get(n, n)} ensemble reaches {100 * s.best_shift:.1f}% at alpha "
                     f"{s.best_shift_alpha:g}, {100 * s.best_shift - max(zs, ft):+.1f} points over the better "
                     f"endpoint, {100 * s.max_effective_robustness:.1f} points above the endpoints' line at most")
    found = "; ".join(parts)
    return f"{base} {found[0].upper()}{found[1:]}."


def prediction_columns(names: Sequence[str]) -> dict[str, dict]:
    """Column settings (Streamlit's column-config shape) for ``compare_predictions``'s table, narrow enough that
    every model's class and probability show beside a picture (issue 26: the patched probability was cut off); each
    probability is drawn as a bar in its cell (one table, not a table and a chart: issue 31, a chart per image
    was most of what ten browsers drew for a word)."""
    columns: dict[str, dict] = {"rank": {"label": "#", "width": 40}}
    for name in names:
        columns[f"{name} class"] = {"label": name, "width": 120}
        columns[f"{name} prob"] = {"label": "prob.", "width": 80, "type_config": {
            "type": "progress", "format": "%.3f", "min_value": 0.0, "max_value": 1.0}}
    return columns


def reading_note(summary: dict) -> str:
    """What the per-word table means and its two headline figures, from ``word_summary`` (fractions): the weakest
    word (issue 32's targets are minimums over words) and what words never seen in pretraining cost."""
    weakest = summary["weakest_word"]["all"]
    return (f"Each class word written on objects of the other classes ({summary['n']:,} objects, "
            f"{summary['n'] // len(summary['word_rates'])} per word; white, black and yellow ink; over, above and "
            f"below the object), scored by the zero-shot model on the shape classes: how often it names the written "
            f"word. Weakest: *{weakest}*, {100 * summary['word_rate_min']['all']:.1f}%. Words it never saw in "
            f"pretraining ({', '.join(summary['unseen_words'])}) cost {100 * summary['control_cost']:.1f} points of "
            f"accuracy on the same objects (worst: *{summary['costliest_unseen_word']}*, "
            f"{100 * summary['control_cost_max']['all']:.1f}).")
