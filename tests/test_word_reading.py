"""Which class words a model reads (issue 32): the per-word rates and the unseen-word control, recomputed by an
independent count (images drawn straight from the world, the zero-shot head built by hand)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from paint_core.data import world
from paint_core.data.corpus import UNSEEN_WORDS
from paint_core.data.embedded import SHAPE_TEMPLATES
from paint_core.models.clip import load_model
from paint_core.studies.diagnostics import (TEXT_COLOURS, TEXT_INK_NAMES, WORD_POSITIONS, control_costs,
                                            reading_by_word, word_rates, word_summary, word_trials)

READER = Path(__file__).resolve().parent.parent / "paint_core" / "weights" / "micro-rn-s-64-reads.safetensors"


def test_trials_put_every_class_word_on_every_other_object_in_every_ink_and_place():
    trials = word_trials(per_cell=2, seed=5)
    cells = Counter((t.word, t.shape, t.ink, t.position) for t in trials)
    assert len(trials) == 6 * 5 * 3 * 3 * 2 and set(cells.values()) == {2}
    assert all(t.word != t.shape for t in trials)
    assert set(Counter(t.unseen for t in trials).values()) == {len(trials) // len(UNSEEN_WORDS)}
    assert all(11 <= t.font_size <= 15 for t in trials)
    assert word_trials(per_cell=2, seed=5) == trials and word_trials(per_cell=2, seed=6) != trials
    with pytest.raises(ValueError, match="per_cell"):
        word_trials(per_cell=0)


def _results(rows: list[tuple]) -> pd.DataFrame:
    """Hand-made trial results: (shape, word, unseen, ink, position, clean, attacked, control)."""
    cols = ["shape", "word", "unseen", "ink", "position", "clean", "attacked", "control"]
    return pd.DataFrame(rows, columns=cols)


def test_summaries_of_hand_made_results():
    r = _results([
        ("circle", "star", "fork", "white", "over", "circle", "star", "circle"),       # star read
        ("square", "star", "fork", "black", "top", "square", "square", "star"),        # not read; fork costs
        ("circle", "diamond", "wolf", "white", "over", "circle", "diamond", "circle"),  # read
        ("star", "diamond", "wolf", "yellow", "bottom", "cross", "diamond", "cross"),   # read; clean wrong
    ])
    rates = word_rates(r)
    assert list(rates.index) == ["star", "diamond"]  # in world.SHAPES order
    assert rates.loc["star", "all"] == 0.5 and rates.loc["diamond", "all"] == 1.0
    assert rates.loc["star", "white"] == 1.0 and rates.loc["star", "black"] == 0.0
    assert np.isnan(rates.loc["star", "yellow"]) and rates.loc["star", "n"] == 2
    costs = control_costs(r)
    assert costs.loc["fork", "all"] == 0.5  # clean 2/2 right, with fork 1/2
    assert costs.loc["wolf", "all"] == 0.0  # clean 1/2, with wolf 1/2: the object was wrong anyway
    assert costs.loc["fork", "top"] == 1.0 and costs.loc["fork", "over"] == 0.0
    s = word_summary(r)
    assert s["word_rate_min"]["all"] == 0.5 and s["weakest_word"]["all"] == "star"
    assert s["word_rate_mean"] == 0.75 and s["clean_accuracy"] == 0.75
    assert s["control_cost"] == 0.25 and s["control_cost_max"]["all"] == 0.5
    assert s["costliest_unseen_word"] == "fork"


@pytest.fixture(scope="module")
def reader():
    return load_model("micro-rn-s-64", str(READER))


@torch.no_grad()
def test_word_rates_equal_an_independent_count_on_composed_images(reader):
    model, preprocess, tokenizer = reader
    trials = word_trials(per_cell=1, seed=3)[::9]  # one per (word, object) pair, inks and places mixed
    results = reading_by_word(model, preprocess, tokenizer, trials)

    text = []
    for c in world.SHAPES:  # the zero-shot head by hand: mean of normalized prompt embeddings, normalized
        e = F.normalize(model.encode_text(tokenizer([t.format(c) for t in SHAPE_TEMPLATES])), dim=-1).mean(0)
        text.append(F.normalize(e, dim=0))
    head = torch.stack(text)
    said = {"word": Counter(), "clean": Counter(), "unseen": Counter()}
    for t in trials:
        ink = TEXT_COLOURS[TEXT_INK_NAMES.index(t.ink)]
        images = [world.render_object(np.random.default_rng(t.state), t.shape, t.colour, radius=(0.24, 0.34))]
        images += [world.render_object_with_word(np.random.default_rng(t.state), t.shape, t.colour, word,
                                                 font_size=t.font_size, position=t.position, text_colour=ink)
                   for word in (t.word, t.unseen)]
        feats = F.normalize(model.encode_image(torch.stack([preprocess(i) for i in images])), dim=-1)
        clean, attacked, control = (world.SHAPES[int(i)] for i in (feats @ head.T).argmax(-1))
        said["word"][t.word] += attacked == t.word
        said["clean"][t.unseen] += clean == t.shape
        said["unseen"][t.unseen] += control == t.shape
    rates = word_rates(results)
    for word in world.SHAPES:
        assert rates.loc[word, "all"] == pytest.approx(said["word"][word] / 5) and rates.loc[word, "n"] == 5
    counts = Counter(t.unseen for t in trials)
    costs = control_costs(results)
    for u, n in counts.items():
        assert costs.loc[u, "all"] == pytest.approx((said["clean"][u] - said["unseen"][u]) / n)
    # this reader reads every class word (the one shipped before it never chose "cross" in these five trials)
    assert rates["all"].min() > 0, rates["all"]
    assert set(WORD_POSITIONS) <= set(rates.columns)


@pytest.mark.golden
def test_the_readmes_per_word_table_is_the_shipped_readers(reader):
    """The README's row for the reader (issue 32) is what reading_by_word measures on the shipped weights."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    row = next(line.strip() for line in readme.splitlines() if line.strip().startswith("| micro-rn-s-64-reads (the"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    results = reading_by_word(*reader)
    rates, summary = word_rates(results), word_summary(results)
    assert [float(c) for c in cells[1:7]] == [round(100 * rates.loc[w, "all"], 1) for w in world.SHAPES]
    assert cells[7] == f"{100 * summary['word_rate_min']['all']:.1f} ({summary['weakest_word']['all']})"
    assert cells[8].startswith(f"{100 * summary['control_cost']:.1f} (worst: {summary['costliest_unseen_word']}, "
                               f"{100 * summary['control_cost_max']['all']:.1f})")


def test_reader_patches_reads_the_patch_targets_off_a_sweep_as_an_independent_count_does():
    """scripts/reader_patches.py's figures on the shipped reader's typographic run equal a count made here from
    sweep.csv alone: zero-shot test accuracy, the best val alpha whose mean supported val accuracy is within 1
    point of zero-shot, and the test gain and drift there."""
    import importlib.util

    from paint_core.io.paths import CACHED_RESULTS_DIR
    spec = importlib.util.spec_from_file_location("reader_patches", Path(__file__).parent.parent / "scripts" /
                                                  "reader_patches.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    run = CACHED_RESULTS_DIR / "reading" / "typographic"
    got = script.patch_figures(run, "typographic")
    df = pd.read_csv(run / "sweep.csv")
    df = df[pd.to_numeric(df["plan"], errors="coerce") == df["alpha"]]  # uniform alphas only
    acc = {(s, t, a): v for s, t, a, v in zip(df["split"], df["task"], df["alpha"], df["accuracy"])}
    alphas = sorted(set(df["alpha"]))
    supported = {(s, a): (acc[(s, "shapes", a)] + acc[(s, "colours", a)]) / 2 for s in ("val", "test") for a in alphas}
    within = [a for a in alphas if supported[("val", 0.0)] - supported[("val", a)] <= 0.01 + 1e-12]
    best = max(within, key=lambda a: (acc[("val", "typographic", a)], -a))
    assert got["zero_shot"] == acc[("test", "typographic", 0.0)]
    assert got["within_alpha"] == best
    assert got["within_gain"] == pytest.approx(acc[("test", "typographic", best)] - acc[("test", "typographic", 0.0)])
    assert got["within_drift"] == pytest.approx(supported[("test", 0.0)] - supported[("test", best)])
    assert got["within_gain"] > 0.3  # the shipped reader's typographic patch meets the issue's +30 points
