"""The pages' wording rules (dashboard/text.py), pure functions of values: each says exactly what happened."""
from __future__ import annotations

import pytest

from dashboard import text


@pytest.mark.parametrize("zero_shot, patched, expected", [
    ("diamond", "circle", "zero-shot fooled: predicts *diamond*, the written word; patched (alpha 0.5) fixed: *circle*"),
    ("cross", "cross", "zero-shot wrong, but not fooled by the word: predicts *cross*; patched (alpha 0.5) wrong, "
                       "but not fooled by the word: predicts *cross*"),
    ("diamond", "diamond", "zero-shot fooled: predicts *diamond*, the written word; patched (alpha 0.5) still "
                           "fooled: predicts *diamond*, the written word"),
    ("circle", "circle", "zero-shot right: *circle*; patched (alpha 0.5) still right: *circle*"),
    ("circle", "diamond", "zero-shot right: *circle*; patched (alpha 0.5) fooled: predicts *diamond*, the written word"),
])
def test_fooled_only_when_the_prediction_is_the_written_word(zero_shot, patched, expected):
    """Issue 26: "diamond" written on a circle, predicted "cross", was called fooled."""
    assert text.verdict(zero_shot, "circle", "diamond", patched, 0.5) == expected


def test_verdict_without_a_patched_model_and_the_words_case():
    assert text.verdict("cat", "circle", " Cat ") == "zero-shot fooled: predicts *cat*, the written word"
    assert text.verdict("square", "circle", "cat") == "zero-shot wrong, but not fooled by the word: predicts *square*"


def test_image_titles_never_claim_an_upload_has_no_word_unless_told():
    assert text.image_titles("Compose", "star") == ("Without the word", "With the word “star”")
    assert text.image_titles("Upload", "star", carries_word=True) == (
        "As uploaded (it carries a word of its own)", "As uploaded, with “star” written over it")
    assert text.image_titles("Upload", "star")[0] == "As uploaded (no word on it)"


def test_photo_warning_only_below_100_px():
    assert "sees images at 48 px" in text.photo_warning(48) and "cannot read photos" in text.photo_warning((48, 48))
    assert text.photo_warning(224) is None and text.photo_warning([224, 224]) is None


@pytest.mark.parametrize("seconds, shown", [(0, "0 s"), (42.4, "42 s"), (59.6, "1 min 00 s"), (185, "3 min 05 s"),
                                            (3725, "1 h 02 min")])
def test_durations(seconds, shown):
    assert text.duration(seconds) == shown


def test_job_timing_running_finished_or_unknown():
    assert text.job_timing(100.0, None, True, now=142.0) == "running for 42 s"
    assert text.job_timing(100.0, 285.0, False, now=999.0) == "took 3 min 05 s"
    assert text.job_timing(100.0, None, False, now=999.0) == "duration unknown"


def _sweep(zero_shot: float, fine_tuned: float):
    import pandas as pd
    return pd.DataFrame([{"alpha": a, "task": t, "split": sp, "accuracy": acc, "n": 100}
                         for a, acc in ((1.0, fine_tuned), (0.0, zero_shot), (0.5, 0.5))
                         for t in ("digits", "shapes") for sp in ("val", "test")])


def test_a_degenerate_run_says_why():
    import pandas as pd
    note = text.degenerate_run_note(1, "digits", _sweep(0.582, 0.585))
    assert note.startswith("This run can show little: it was fine-tuned for only 1 step (digits: 58.2% zero-shot, "
                           "58.5% fine-tuned, test split), so the fine-tuned weights are close to the zero-shot ones")
    assert "fine-tuning did not change its accuracy" in text.degenerate_run_note(300, "digits", _sweep(0.5, 0.503))
    assert text.degenerate_run_note(300, "digits", _sweep(0.582, 0.992)) is None
    assert text.degenerate_run_note(None, "digits", pd.DataFrame()) is None
    assert text.degenerate_run_note(3, "digits", pd.DataFrame()).startswith(
        "This run can show little: it was fine-tuned for only 3 steps, so")


def _summary(weight_best: float, weight_beats: bool) -> dict:
    from paint_core.studies.wiseft import EnsembleSummary
    return {"output": EnsembleSummary(0.28, 0.528, best_shift=0.528, best_shift_alpha=1.0, beats_both_endpoints=False,
                                      max_effective_robustness=0.0),
            "weight": EnsembleSummary(0.28, 0.528, best_shift=weight_best, best_shift_alpha=0.9,
                                      beats_both_endpoints=weight_beats,
                                      max_effective_robustness=0.0012 if not weight_beats else 0.031)}


def test_wiseft_conclusion_in_words():
    assert text.wiseft_conclusion(_summary(0.528, False), "digits_colour", "digits") == (
        "On digits_colour (trained on digits), zero-shot scores 28.0% and fine-tuned 52.8%. Neither ensemble beats "
        "both endpoints on the shift: mixing the two models buys no robustness here (at most 0.1 points above the "
        "endpoints' line, weight-space).")
    assert text.wiseft_conclusion(_summary(0.55, True), "digits_colour", "digits").endswith(
        "The weight-space ensemble reaches 55.0% at alpha 0.9, +2.2 points over the better endpoint, 3.1 points "
        "above the endpoints' line at most.")


def test_prediction_columns_name_every_column_narrowly():
    cols = text.prediction_columns(["zero-shot", "patched (alpha 0.5)"])
    assert list(cols) == ["rank", "zero-shot class", "zero-shot prob", "patched (alpha 0.5) class",
                          "patched (alpha 0.5) prob"]
    assert [c["label"] for c in cols.values()] == ["#", "zero-shot", "prob.", "patched (alpha 0.5)", "prob."]
    assert sum(c["width"] for c in cols.values()) <= 450  # fits beside the picture at 1400 px
    assert all(cols[c]["type_config"] == {"type": "progress", "format": "%.3f", "min_value": 0.0, "max_value": 1.0}
               for c in ("zero-shot prob", "patched (alpha 0.5) prob"))  # a bar in the cell, the number on it


def test_the_served_dashboard_hides_the_deploy_button():
    """Issue 26, item 9: Streamlit's "Deploy" button showed. scripts/dashboard.sh starts Streamlit in the repository's
    root, where .streamlit/config.toml asks for the minimal toolbar (the browser test checks the page itself)."""
    import tomllib
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    config = tomllib.loads((root / ".streamlit" / "config.toml").read_text())
    assert config["client"]["toolbarMode"] == "minimal"
    script = (root / "scripts" / "dashboard.sh").read_text()
    assert script.index('cd "$(dirname "$0")/.."') < script.index("streamlit run")


def test_reading_note_names_the_weakest_word_and_the_unseen_words_cost():
    summary = {"n": 540, "word_rates": dict.fromkeys(("circle", "square", "triangle", "star", "cross", "diamond"), 0.5),
               "weakest_word": {"all": "star"}, "word_rate_min": {"all": 0.0111}, "control_cost": 0.3284,
               "control_cost_max": {"all": 0.7778}, "costliest_unseen_word": "mountain",
               "unseen_words": ["fork", "mountain"]}
    note = text.reading_note(summary)
    assert "(540 objects, 90 per word;" in note and "Weakest: *star*, 1.1%." in note
    assert "(fork, mountain) cost 32.8 points" in note and "(worst: *mountain*, 77.8)" in note
