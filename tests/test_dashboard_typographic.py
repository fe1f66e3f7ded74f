"""The Typographic page as an inspector (issue 16): its figures hold the engine's numbers for the same image."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from conftest import typographic_charts

from paint_core import interpolate, load_run
from paint_core.data import world
from paint_core.data.embedded import SHAPE_TEMPLATES
from paint_core.engine.attack import find_fooling_example, margin_along_alpha, word_sweep
from paint_core.engine.evaluation import zero_shot_head
from paint_core.live.sessions import SLIDER_ALPHAS

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "cached_results" / "reading" / "typographic"  # what the page opens first: the shipped model that reads
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def page():
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("app_pages/typographic.py").run()
    assert at.selectbox(key="typo_run").value == "reading/typographic"  # the shipped model that reads, first
    assert not at.exception and not at.error
    return at


def _sweeps(at) -> list[dict]:
    return [c for c in typographic_charts(at) if c["kind"] == "sweep"]


def _cell(sweep: dict, word: str, where: str) -> float:
    return sweep["p"][sweep["words"].index(word)][sweep["columns"].index(where)]


def test_page_opens_on_an_attack_that_the_patch_fixes(page):
    run = load_run(RUN)
    patched = load_run(RUN).model
    alpha = float(page.slider(key="typo_alpha").value)
    patched.load_state_dict(interpolate(run.theta_zs, run.theta_ft, alpha))
    head = zero_shot_head(run.model, run.tokenizer, world.SHAPES, SHAPE_TEMPLATES)
    ex = find_fooling_example(run.model, patched, head, run.preprocess)
    assert ex is not None and ex["reads"]  # the zero-shot model names the written word
    assert page.session_state["typo_shape"] == ex["shape"] and page.session_state["typo_word"] == ex["word"]
    verdict = next(m.value for m in page.markdown if "Verdict" in m.value)
    assert f"zero-shot fooled: predicts *{ex['word']}*" in verdict and f"fixed: *{ex['shape']}*" in verdict


def test_page_shows_which_words_the_opened_model_reads(page):
    """Issue 32, item 4: the per-word table holds the engine's rates for the run's zero-shot model, recomputed here."""
    from paint_core.app.answers import WORD_READING_PER_CELL
    from paint_core.studies.diagnostics import reading_by_word, word_rates, word_summary, word_trials
    run = load_run(RUN)
    results = reading_by_word(run.model, run.preprocess, run.tokenizer, word_trials(WORD_READING_PER_CELL))
    rates, summary = word_rates(results), word_summary(results)
    row = next(d.value for d in page.dataframe if "star" in d.value.columns)
    assert list(row.columns) == ["", *world.SHAPES] and len(row) == 1
    for word in world.SHAPES:
        assert row[word].iloc[0] == pytest.approx(round(100 * rates.loc[word, "all"], 1))
    detail = next(d.value for d in page.dataframe if "word written" in d.value.columns).set_index("word written")
    for word in world.SHAPES:
        for col, label in (("black", "black ink"), ("top", "above")):
            assert detail.loc[word, label] == pytest.approx(round(100 * rates.loc[word, col], 1))
    assert (detail["objects"] == len(results) // 6).all()
    note = next(c.value for c in page.caption if c.value.startswith("Each class word written"))
    weakest = summary["weakest_word"]["all"]
    assert f"Weakest: *{weakest}*, {100 * rates['all'].min():.1f}%" in note
    assert f"cost {100 * summary['control_cost']:.1f} points" in note
    # this reader reads every class word, each on more than a fifth of the objects (the one before it: star 1.1%)
    assert rates["all"].min() > 0.2, rates["all"]


def test_which_words_a_model_reads_is_measured_once_per_model(monkeypatch):
    """Reruns (a slider move, another word) reuse the measure: reading_by_word runs once for the run."""
    from dashboard import typographic_answers
    from paint_core.app import answers
    calls = []
    real = answers.reading_by_word
    monkeypatch.setattr(answers, "reading_by_word", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    typographic_answers._run_word_reading.clear()
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("app_pages/typographic.py").run()
    at.slider(key="typo_alpha").set_value(0.3).run()
    at.text_input(key="typo_word").set_value("star").run()
    assert not at.exception and len(calls) == 1


def test_word_sweep_and_margin_figures_hold_the_engines_numbers(page):
    run = load_run(RUN)
    shape, word = page.session_state["typo_shape"], page.session_state["typo_word"]
    base = world.render_object(np.random.default_rng(int(page.session_state["typo_seed"])), shape,
                               page.session_state["typo_colour"], radius=(0.3, 0.34))
    head = zero_shot_head(run.model, run.tokenizer, world.SHAPES, SHAPE_TEMPLATES)
    true = world.SHAPES.index(shape)
    heat, patched = _sweeps(page)  # the zero-shot one comes first
    assert (heat["title"], patched["title"]) == ("zero-shot", f"patched (alpha {page.slider(key='typo_alpha').value:g})")
    expected = word_sweep(run.model, head, run.preprocess, base, world.SHAPES, true, [*world.SHAPES, "cat"])
    for r in expected.itertuples():
        assert _cell(heat, r.word, f"{r.position} {round(100 * r.size)}%") == pytest.approx(r.p_true, abs=1e-4)
        i, j = heat["words"].index(r.word), heat["columns"].index(f"{r.position} {round(100 * r.size)}%")
        assert heat["predicted"][i][j] == r.predicted
    [margin] = [c for c in typographic_charts(page) if c["kind"] == "margin"]
    assert [line["name"] for line in margin["lines"]] == ["clean", "attacked"]
    assert margin["alpha"] == pytest.approx(page.slider(key="typo_alpha").value)
    attacked = world.write_word(base, word, page.selectbox(key="typo_position").value,
                                float(page.slider(key="typo_size").value))
    ref = margin_along_alpha(run.model, run.theta_zs, run.theta_ft, head,
                             {"clean": run.preprocess(base), "attacked": run.preprocess(attacked)}, true,
                             world.SHAPES.index(word), SLIDER_ALPHAS)
    shown = np.array(margin["lines"][1]["margin"])
    np.testing.assert_allclose(shown, ref[ref["image"] == "attacked"]["margin"].to_numpy(), atol=1e-4)
    assert len(shown) == 21
    assert len(page.get("image")) >= 2 + 4  # the clean and attacked pictures, then four saliency maps
    assert len(page.get("download_button")) == 2  # word sweep and margins as CSV


def test_a_photo_on_a_64_px_model_gets_a_warning():
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("app_pages/typographic.py").run()
    at.radio(key="typo_source").set_value("Upload").run()
    buf = io.BytesIO()
    Image.new("RGB", (300, 200), (120, 80, 40)).save(buf, "PNG")
    at.file_uploader(key="typo_upload").set_value(("photo.png", buf.getvalue(), "image/png")).run()
    assert not at.exception
    assert any("cannot read photos" in w.value for w in at.warning)


def test_batch_mode_scores_the_embedded_set_like_the_attack_command():
    from paint_core.studies.typographic import attack_sweep
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("app_pages/typographic.py").run()  # on the reading model's run (RUN)
    at.slider(key="typo_alpha").set_value(0.6).run()
    at.number_input(key="typo_batch_n").set_value(120).run()
    at.button(key="typo_batch_go").click().run()
    assert not at.exception and not at.error
    shown = next(d.value for d in at.dataframe if "attack success (%)" in d.value.columns)
    rows = {a: r for a, r in zip((0.0, 0.6), attack_sweep(RUN, "typographic", [0.0, 0.6], max_eval=120))}
    for i, alpha in enumerate((0.0, 0.6)):
        assert shown["accuracy (%)"].iloc[i] == pytest.approx(round(100 * rows[alpha]["accuracy"], 1))
        assert shown["attack success (%)"].iloc[i] == pytest.approx(round(100 * rows[alpha]["attack_success"], 1))
        assert shown["n"].iloc[i] == 120
    assert len(at.get("download_button")) == 3


def test_zero_shot_only_mode_inspects_a_model_without_any_run(tmp_path, monkeypatch):
    """No run: the micro-rn-s's shipped weights alone; one heat-map, no margin, verdict for zero-shot only."""
    from paint_core.models.clip import load_model
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("app_pages/typographic.py").run()
    at.radio(key="typo_mode").set_value("Zero-shot only (no run)").run()
    at.text_input(key="typo_zs_model").set_value("micro-rn-s").run()
    assert not at.exception and not at.error
    verdict = next(m.value for m in at.markdown if "Verdict" in m.value)
    assert "patched" not in verdict
    heats = _sweeps(at)
    assert len(heats) == 1 and not [c for c in typographic_charts(at) if c["kind"] == "margin"]
    model, preprocess, tokenizer = load_model("micro-rn-s")
    head = zero_shot_head(model, tokenizer, world.SHAPES, SHAPE_TEMPLATES)
    shape = at.selectbox(key="typo_shape").value
    base = world.render_object(np.random.default_rng(int(at.number_input(key="typo_seed").value)), shape,
                               at.selectbox(key="typo_colour").value, radius=(0.3, 0.34))
    expected = word_sweep(model, head, preprocess, base, world.SHAPES, world.SHAPES.index(shape), ["circle"])
    for r in expected.itertuples():
        assert _cell(heats[0], "circle", f"{r.position} {round(100 * r.size)}%") == pytest.approx(r.p_true, abs=1e-4)
    assert any("needs a patched run" in i.value for i in at.info)
    from paint_core.app.answers import WORD_READING_PER_CELL
    from paint_core.studies.diagnostics import reading_by_word, word_rates, word_trials
    rates = word_rates(reading_by_word(model, preprocess, tokenizer, word_trials(WORD_READING_PER_CELL)))
    row = next(d.value for d in at.dataframe if "star" in d.value.columns)  # the default model hardly reads
    assert [row[w].iloc[0] for w in world.SHAPES] == [round(100 * rates.loc[w, "all"], 1) for w in world.SHAPES]
    at.text_input(key="typo_zs_model").set_value("ViT-B-32").run()  # not offered by this server's policy
    assert any("not offered on this server" in e.value for e in at.error)


def test_zero_shot_mode_inspects_a_real_vit_architecture_from_a_local_file(tmp_path, monkeypatch):
    """A ViT-B-32 with random weights saved to a local file, allowed by the operator: the inspector runs on it
    (attention rollout for the saliency) and its heat-map holds the engine's numbers."""
    import open_clip
    import torch

    from paint_core.io.checkpoints import save_checkpoint
    torch.manual_seed(0)
    weights = tmp_path / "vit.safetensors"
    save_checkpoint(weights, open_clip.create_model("ViT-B-32", pretrained=None).state_dict(),
                    {"model": "ViT-B-32", "pretrained": None})
    monkeypatch.setenv("PAINT_MODELS", "micro-rn-l,ViT-B-32")
    monkeypatch.setenv("PAINT_DATA_ROOTS", str(tmp_path))
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=600)
    at.run()
    at.switch_page("app_pages/typographic.py").run()
    at.radio(key="typo_mode").set_value("Zero-shot only (no run)").run()
    at.text_input(key="typo_zs_model").set_value("ViT-B-32")
    at.text_input(key="typo_zs_pretrained").set_value(str(weights)).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert len(at.get("image")) >= 2 + 2  # the two pictures and two attention-rollout maps
    assert not at.checkbox(key="typo_measure_words").value  # a 224 px model measures its words only when asked
    assert not [d for d in at.dataframe if "star" in d.value.columns]
    [heat] = _sweeps(at)
    from paint_core.models.clip import load_model
    model, preprocess, tokenizer = load_model("ViT-B-32", str(weights))
    head = zero_shot_head(model, tokenizer, world.SHAPES, SHAPE_TEMPLATES)
    shape = at.selectbox(key="typo_shape").value
    base = world.render_object(np.random.default_rng(int(at.number_input(key="typo_seed").value)), shape,
                               at.selectbox(key="typo_colour").value, radius=(0.3, 0.34))
    expected = word_sweep(model, head, preprocess, base, world.SHAPES, world.SHAPES.index(shape), ["cat"])
    for r in expected.itertuples():
        assert _cell(heat, "cat", f"{r.position} {round(100 * r.size)}%") == pytest.approx(r.p_true, abs=1e-4)


def _png(size=(300, 200), colour=(120, 80, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def test_upload_mode_keeps_the_typed_word_and_names_the_pictures_honestly():
    """Issue 26, item 1: in Upload mode a typed word reverted to the demo word (the page re-seeded its example
    whenever the Object selector's state was gone, and in Upload mode that selector is not drawn)."""
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("app_pages/typographic.py").run()
    seeded = at.text_input(key="typo_word").value
    at.radio(key="typo_source").set_value("Upload").run()
    at.file_uploader(key="typo_upload").set_value(("photo.png", _png(), "image/png")).run()
    for word in ("triangle", "tree", "square", seeded):
        at.text_input(key="typo_word").set_value(word).run()
        at.run()  # and on any later rerun
        assert at.text_input(key="typo_word").value == word
        titles = [m.value for m in at.markdown if m.value.startswith("**") and "Verdict" not in m.value]
        assert titles[:2] == ["**As uploaded (no word on it)**", f"**With the word “{word}”**"]
    at.checkbox(key="typo_upload_word").check().run()
    titles = [m.value for m in at.markdown if m.value.startswith("**") and "Verdict" not in m.value]
    assert titles[:2] == ["**As uploaded (it carries a word of its own)**",
                          f"**As uploaded, with “{seeded}” written over it**"]
    assert not at.exception and not at.error


def test_a_wrong_answer_that_is_not_the_written_word_is_not_called_fooled():
    """Issue 26, item 2: the verdict said "fooled" for every wrong answer. Written "cat" (no class) and a true class
    the model does not name: a plain error, with the same words as dashboard.text.verdict on the page's table."""
    from dashboard.text import verdict
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("app_pages/typographic.py").run()
    at.text_input(key="typo_word").set_value("cat").run()
    attacked = [d.value for d in at.dataframe if "zero-shot class" in d.value.columns][1]  # clean, then attacked
    zs, patched = attacked["zero-shot class"].iloc[0], attacked.iloc[0, 3]
    true = next(c for c in world.SHAPES if c not in (zs, patched))
    at.selectbox(key="typo_true").set_value(true).run()
    shown = next(m.value for m in at.markdown if "Verdict" in m.value)
    alpha = float(at.slider(key="typo_alpha").value)
    assert shown == f"**Verdict:** {verdict(zs, true, 'cat', patched, alpha)}."
    assert "fooled:" not in shown and f"zero-shot wrong, but not fooled by the word: predicts *{zs}*" in shown


def test_a_photo_on_the_counting_page_gets_the_48_px_warning():
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("app_pages/counting.py").run()
    at.radio(key="count_source").set_value("Upload").run()
    at.file_uploader(key="count_upload").set_value(("photo.png", _png(), "image/png")).run()
    assert not at.exception
    assert [w.value for w in at.warning] == ["This model sees images at 48 px: it was trained on the procedural "
                                             "world and cannot read photos. Open a run of a real CLIP to inspect "
                                             "photos."]
    columns = json.loads(at.dataframe[0].proto.columns)  # every model's class and probability, labelled narrowly
    assert [columns[c]["label"] for c in at.dataframe[0].value.columns] == [
        "#", "zero-shot", "prob.", at.dataframe[0].value.columns[3].removesuffix(" class"), "prob."]


def test_a_word_already_shown_is_answered_from_the_shared_cache(monkeypatch):
    """Word sweeps, margins and saliency maps are computed once per (models, image, word, ...) and shared by every
    session: typing a word back, or a second visitor asking the same, recomputes nothing."""
    import dashboard.typographic_answers as answers
    calls = {"sweep": 0, "margin": 0, "saliency": 0}

    def counted(kind, fn):
        def call(*args, **kwargs):
            calls[kind] += 1
            return fn(*args, **kwargs)
        return call

    monkeypatch.setattr(answers, "word_sweep", counted("sweep", answers.word_sweep))
    monkeypatch.setattr(answers, "margin_along_alpha", counted("margin", answers.margin_along_alpha))
    monkeypatch.setattr(answers, "saliency", counted("saliency", answers.saliency))
    answers.word_sweeps.clear(), answers.margins.clear(), answers.saliency_maps.clear()

    def visit(words):
        """Open the page, then type each of ``words(opening shape, opening word)`` in turn."""
        at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=300)
        at.run()
        at.switch_page("app_pages/typographic.py").run()
        seen = []
        for w in words(at.session_state["typo_shape"], at.session_state["typo_word"]):
            at.text_input(key="typo_word").set_value(w).run()
            assert not at.exception and not at.error
            seen.append(dict(calls))
        return seen

    def new_names(shape, word):  # two class names the opened example has not shown yet
        return [c for c in world.SHAPES if c not in (shape, word)][:2]

    # a class name typed is already a row of the sweep (the rows: classes, the word, controls), a new margin;
    # a non-class word is a new sweep row and no margin
    first = visit(lambda shape, word: [(a := new_names(shape, word))[0], "banana", a[1], a[0], "banana"])
    assert first[1]["sweep"] > first[0]["sweep"] and first[2]["margin"] > first[1]["margin"]  # new: computed
    assert first[4] == first[3] == first[2]  # back to words already shown: nothing recomputed
    second = visit(lambda shape, word: [new_names(shape, word)[1], "banana"])  # another session, words asked before
    assert second[-1] == first[-1]
