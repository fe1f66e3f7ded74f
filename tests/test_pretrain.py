import json

import numpy as np
import pytest

from paint_core.engine.pretrain import PretrainConfig, pretrain

pytestmark = pytest.mark.slow


def test_pretrain_loss_goes_down_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr("paint_core.engine.training.LOSS_EVERY", 1)  # each report then carries its own step's loss
    cfg = PretrainConfig(steps=40, batch_size=32, corpus_size=1200, warmup=5, lr=1e-3)
    seen = []

    def killed_after_26(p):
        seen.append((p.done, p.loss))
        if p.done == 26:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain("micro-rn-s", tmp_path, cfg, save_every=10, on_progress=killed_after_26)
    assert (tmp_path / "micro-rn-s.train_state.pt").is_file()
    resumed = []
    path = pretrain("micro-rn-s", tmp_path, cfg, save_every=10, on_progress=lambda p: resumed.append((p.done, p.loss)))
    assert resumed[0][0] == 21  # restarted after the last state written (20 steps done), not from 0
    losses = [l for _, l in seen[:20]] + [l for _, l in resumed]
    assert len(losses) == 40
    assert np.mean(losses[-8:]) < np.mean(losses[:8]) - 0.3
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["config"]["steps"] == 40 and meta["sha256"]
    assert not (tmp_path / "micro-rn-s.train_state.pt").exists()


def test_a_continued_pretraining_records_every_stage(tmp_path):
    """A curriculum (pretraining continued with ``init_from``) keeps each earlier stage's command, recipe and
    sha256 in the final sidecar, nested stage by stage, so the shipped weights can be rebuilt from it alone."""
    cfg = PretrainConfig(steps=2, batch_size=16, corpus_size=64, warmup=1)
    first = pretrain("micro-rn-s", tmp_path, cfg, command="stage one", out_name="one")
    second = pretrain("micro-rn-s", tmp_path, PretrainConfig(steps=2, batch_size=16, corpus_size=64, warmup=1,
                                                             lr=3e-4), command="stage two", init_from=first,
                      out_name="two")
    third = pretrain("micro-rn-s", tmp_path, cfg, command="stage three", init_from=second, out_name="three")
    meta = json.loads(third.with_suffix(".json").read_text())
    one, two = (json.loads(p.with_suffix(".json").read_text()) for p in (first, second))
    assert meta["command"] == "stage three" and meta["init_from"] == "two.safetensors"
    assert meta["start_recipe"]["command"] == "stage two" and meta["start_recipe"]["sha256"] == two["sha256"]
    assert meta["start_recipe"]["config"]["lr"] == 3e-4
    assert meta["start_recipe"]["start_recipe"]["command"] == "stage one"
    assert meta["start_recipe"]["start_recipe"]["sha256"] == one["sha256"]
    assert one["start_recipe"] is None


def test_shipping_fills_the_start_of_weights_that_predate_start_recipe(tmp_path):
    """scripts/ship_reading_model.py: weights continued from a file, whose sidecar lacks ``start_recipe``, get it
    from ``--start``'s sidecar; a start with another name than the one they continued from is refused."""
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location("ship", Path(__file__).parent.parent / "scripts" /
                                                  "ship_reading_model.py")
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)
    cfg = PretrainConfig(steps=2, batch_size=16, corpus_size=64, warmup=1)
    first = pretrain("micro-rn-s", tmp_path, cfg, command="stage one", out_name="one")
    second = pretrain("micro-rn-s", tmp_path, cfg, command="stage two", init_from=first, out_name="two")
    side = second.with_suffix(".json")
    old = {k: v for k, v in json.loads(side.read_text()).items() if k != "start_recipe"}  # as written before
    side.write_text(json.dumps(old))
    meta = ship.shipped_sidecar(second, first)
    assert meta["command"] == "stage two" and meta["start_recipe"]["command"] == "stage one"
    assert meta["start_recipe"]["sha256"] == json.loads(first.with_suffix(".json").read_text())["sha256"]
    for wrong in (None, second):
        with pytest.raises(SystemExit, match="continued from one.safetensors: pass that file as --start"):
            ship.shipped_sidecar(second, wrong)


def _word_shift(model, preprocess, cfg_corpus, n=300, seed=11) -> float:
    """How far the word moves a neutral twin from its object drawn without it, as a share of how far apart two
    different objects lie (mean 1 - cosine of each, on twins the model never saw): an untrained tower puts every
    image near every other, so only the ratio says whether the word or the object decides where an image lies."""
    import torch

    from paint_core.data import corpus
    from paint_core.data.decoded import normalize_uint8
    from paint_core.engine.pretrain import _resized
    images, _, clean = corpus.make_corpus_with_clean(n, seed, cfg_corpus)
    size = model.visual.image_size  # the corpus is drawn at the world's size and resized, as pretraining does
    images, clean_images = _resized(images[clean.index], size), _resized(clean.images, size)
    mean, std = preprocess.transforms[-1].mean, preprocess.transforms[-1].std
    with torch.no_grad():
        a = model.encode_image(normalize_uint8(torch.from_numpy(images), mean, std), normalize=True)
        b = model.encode_image(normalize_uint8(torch.from_numpy(clean_images), mean, std), normalize=True)
    moved = (1 - (a * b).sum(-1)).mean()
    apart = (1 - (b * b.roll(1, 0)).sum(-1)).mean()
    return float(moved / apart)


def test_neutral_hold_pulls_a_neutral_twin_to_its_object_without_the_word(tmp_path, monkeypatch):
    """Issue 32's hold lever: the same short pretraining with ``neutral_hold`` leaves a neutral twin's embedding
    closer to its object's without the word (measured on unseen twins) than the very same run, clean objects in
    the batch included, with the term set to zero; the term is 1 - cosine, and a bad weight or a corpus without
    neutral twins is refused before any corpus is built."""
    import torch

    from paint_core.engine import pretrain as pretrain_mod

    from paint_core.data.corpus import CorpusConfig
    from paint_core.engine.pretrain import hold_loss
    from paint_core.models.clip import load_model
    a, b = torch.nn.functional.normalize(torch.randn(2, 5, 8), dim=-1)
    assert torch.isclose(hold_loss(a, b), 1 - torch.nn.functional.cosine_similarity(a, b).mean())
    twins = CorpusConfig(object_word_share=0.6, word_pairs=True, neutral_twins=1.0, neutral_fresh=True)
    with pytest.raises(ValueError, match="needs word_pairs and neutral_twins"):
        pretrain("micro-rn-s", tmp_path, PretrainConfig(neutral_hold=1.0), corpus=CorpusConfig())
    with pytest.raises(ValueError, match="must be >= 0"):
        pretrain("micro-rn-s", tmp_path, PretrainConfig(neutral_hold=-1.0), corpus=twins)
    moved = {}
    cfg = PretrainConfig(steps=120, batch_size=32, corpus_size=2000, warmup=5, neutral_hold=5.0)
    for run in ("term zeroed", "held"):
        with monkeypatch.context() as m:
            if run == "term zeroed":
                m.setattr(pretrain_mod, "hold_loss", lambda word, clean: 0 * word.sum())
            path = pretrain("micro-rn-s", tmp_path / run.replace(" ", "-"), cfg, corpus=twins)
        model, preprocess, _ = load_model("micro-rn-s", str(path))
        moved[run] = _word_shift(model, preprocess, twins)
        assert json.loads(path.with_suffix(".json").read_text())["config"]["neutral_hold"] == 5.0
    assert moved["held"] < 0.8 * moved["term zeroed"], moved


def test_build_corpus_places_each_clean_twin_at_its_position_across_chunks():
    """The clean objects of a corpus built in chunks sit at the positions of their twins in the whole corpus:
    each chunk's are those of ``make_corpus_with_clean`` on that chunk's seed, shifted by the chunk's start."""
    from paint_core.data import corpus
    from paint_core.engine.pretrain import _resized, build_corpus
    cfg = corpus.CorpusConfig(object_word_share=0.5, word_pairs=True, neutral_twins=0.5, neutral_fresh=True)
    images, captions, clean = build_corpus(300, 2, 48, workers=1, chunk=100, cfg=cfg, keep_clean=True)
    index, expected = [], []
    for k in range(3):
        _, _, part = corpus.make_corpus_with_clean(100, 2 * 1_000_003 + k, cfg)
        index += list(part.index + 100 * k)
        expected.append(_resized(part.images, 48))
    assert len(index) > 20 and list(clean.index) == index
    assert np.array_equal(clean.images, np.concatenate(expected))
    assert len(build_corpus(300, 2, 48, workers=1, chunk=100, cfg=cfg)[2].index) == 0
