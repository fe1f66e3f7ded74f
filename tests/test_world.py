import numpy as np
import pytest

from paint_core import get_task, list_tasks
from paint_core.data import world
from paint_core.data.corpus import make_corpus


def test_world_is_deterministic():
    a, ca = make_corpus(20, seed=3)
    b, cb = make_corpus(20, seed=3)
    assert np.array_equal(a, b) and ca == cb
    c, _ = make_corpus(20, seed=4)
    assert not np.array_equal(a, c)


def test_generator_rejects_nonsense():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="Unknown colour 'mauve'. Choose from: red"):
        world.render_object(rng, "circle", "mauve")
    with pytest.raises(ValueError, match="count must be between 1 and 6"):
        world.render_count(rng, 0, ("circle",), ("red",))
    with pytest.raises(ValueError, match="Unknown shape"):
        world.render_object(rng, "blob", "red")


def test_digit_pipeline_is_the_sklearn_one():
    from sklearn.datasets import load_digits
    d = load_digits()
    img = np.asarray(world.digit_grid_to_image(d.images[0]))
    assert img.shape == (64, 64, 3)
    # corner pixels of a digit are blank in sklearn's grid, so black here
    assert img[0, 0].sum() == 0 and img.max() > 200


@pytest.mark.parametrize("name", list(list_tasks()))
def test_every_task_has_three_disjoint_splits(name):
    task = get_task(name)
    sizes = {s: len(task.split(s)) for s in ("train", "val", "test")}
    assert all(n > 0 for n in sizes.values())
    img, label = task.split("val")[0]
    assert 0 <= label < len(task.classnames)
    img2, label2 = task.split("val")[0]
    assert np.array_equal(np.asarray(img), np.asarray(img2)) and label == label2
    assert not np.array_equal(np.asarray(task.split("test")[0][0]), np.asarray(img))


def test_digits_splits_are_disjoint_and_cover_sklearn():
    from paint_core.data.embedded import _sklearn_digits
    _, targets, idx = _sklearn_digits()
    all_idx = np.concatenate(list(idx.values()))
    assert len(set(all_idx)) == len(all_idx) == len(targets)


def test_unknown_task_lists_choices():
    with pytest.raises(ValueError, match="Did you mean: digits"):
        get_task("digts")


def test_torchvision_task_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="needs a data root"):
        get_task("torchvision:MNIST")
    with pytest.raises(ValueError, match="Did you mean: CIFAR10"):
        get_task("torchvision:CIFR10", root=str(tmp_path))
    with pytest.raises(ValueError, match="not readable under .*add --download"):
        get_task("torchvision:MNIST", root=str(tmp_path))


def test_neutral_twins_name_the_object_and_hold_out_the_control_words(monkeypatch):
    """Issue 16, reading lever 5: the second twin carries a training-only non-class word and its caption names
    the object alone; the control words of ``reading_test`` (world.OTHER_WORDS) never appear as neutral ink."""
    from paint_core.data import corpus
    assert not set(corpus.NEUTRAL_TRAIN_WORDS) & set(world.OTHER_WORDS)
    class_words = set(world.SHAPES) | set(world.COLOURS) | set(world.NUMBER_WORDS)
    assert not set(corpus.NEUTRAL_TRAIN_WORDS) & class_words
    written = []
    real = world.render_object_with_word
    monkeypatch.setattr(world, "render_object_with_word",
                        lambda rng, shape, colour, word, *a, **k: (written.append((shape, colour, word, k)),
                                                                   real(rng, shape, colour, word, *a, **k))[1])
    cfg = corpus.CorpusConfig(object_word_share=0.99, word_pairs=True, neutral_twins=1.0, word_colours=True)
    rng = np.random.default_rng(0)
    for _ in range(40):
        n = len(written)
        (img1, cap1), (img2, cap2) = corpus._twins(rng, cfg, world.WORLD_SIZE)
        if len(written) == n:
            continue  # the 1% of pairs that are two other kinds of image
        (shape, colour, first, ink1), (_, _, second, ink2) = written[n:]
        assert second in corpus.NEUTRAL_TRAIN_WORDS and first in corpus.READ_WORDS
        assert second not in cap2 and (shape in cap2 or colour in cap2)  # the caption names the object only
        assert ink1 == ink2 and ink1["text_colour"] in corpus.WORD_INKS
        assert not np.array_equal(np.asarray(img1), np.asarray(img2))  # same object, different ink
    inks = {k["text_colour"] for *_, k in written}
    assert len(inks) > 3  # word_colours varies the ink (the default corpus writes white only)


@pytest.mark.slow
def test_unseen_control_words_occur_nowhere_in_any_corpus(monkeypatch):
    """Issue 32: the held-out control words (corpus.UNSEEN_WORDS) are never written nor captioned, whatever the
    corpus configuration; the declared vocabulary is checked against what sample_pair and the twins really make."""
    import re

    from paint_core.data import corpus
    from paint_core.data.tasks import get_task
    vocab = corpus.corpus_vocabulary()
    assert not set(corpus.UNSEEN_WORDS) & vocab
    class_names = {str(c) for t in ("shapes", "colours", "counting", "typographic") for c in get_task(t).classnames}
    assert not set(corpus.UNSEEN_WORDS) & class_names
    written = []
    for name in ("render_word", "render_object_with_word"):
        real = getattr(world, name)

        def record(rng, *a, _real=real, _word_at=0 if name == "render_word" else 2, **k):
            written.append(a[_word_at])
            return _real(rng, *a, **k)
        monkeypatch.setattr(world, name, record)
    words = set()
    configs = (corpus.CorpusConfig(), corpus.CorpusConfig(object_word_share=0.5, word_pairs=True, neutral_twins=0.5,
                                                          word_colours=True, word_only_caption=0.6),
               corpus.CorpusConfig(object_word_share=0.9, word_pairs=True, neutral_twins=1.0, neutral_lengths=True))
    for seed, cfg in enumerate(configs):
        _, captions = corpus.make_corpus(1500, seed, cfg, size=16)
        words |= {t for c in captions for t in re.findall(r"[a-z0-9]+", c.lower())}
    assert len(words) > 60 and words <= vocab, sorted(words - vocab)
    assert set(written) <= vocab and set(corpus.NEUTRAL_TRAIN_WORDS) | set(corpus.NEUTRAL_LENGTH_WORDS) <= set(written)


READER_RECIPE = dict(object_word_share=0.35, word_only_caption=0.6, word_pairs=True, neutral_twins=0.35,
                     word_colours=True)  # issue 16's reader corpus (micro-rn-s-reads, shipped until December 2026)


def _corpus_stream(cfg, n=400, seed=5):
    """A digest of everything the corpus draws, independent of the font's rasteriser: the captions, every call
    that writes a word on an object (shape, colour, word, size, font, ink) and the generator's next draw."""
    import hashlib

    from paint_core.data import corpus
    calls = []
    real = world.render_object_with_word
    world.render_object_with_word = lambda rng, shape, colour, word, *a, **k: (
        calls.append((shape, colour, word, a, sorted(k.items()))), real(rng, shape, colour, word, *a, **k))[1]
    try:
        rng = np.random.default_rng(seed)
        caps = []
        while len(caps) < n:
            pairs = corpus._twins(rng, cfg, world.WORLD_SIZE) if cfg.word_pairs else [corpus.sample_pair(rng, cfg)]
            caps += [c for _, c in pairs]
        tail = rng.random()
    finally:
        world.render_object_with_word = real
    return hashlib.sha256(repr((caps, calls, tail)).encode()).hexdigest()[:16]


def test_neutral_lengths_off_leaves_the_corpus_bit_for_bit():
    """Issue 32: with ``neutral_lengths`` off (the default) the corpus draws exactly what it drew before the option
    existed: the digests below were taken on the tree before it (aa2cf76), for the default corpus and the shipped
    reader's; the images of an explicit off equal the default's."""
    from paint_core.data import corpus
    assert _corpus_stream(corpus.CorpusConfig()) == "6ce8359517271c77"
    assert _corpus_stream(corpus.CorpusConfig(**READER_RECIPE)) == "c1e3437645324d4d"
    assert _corpus_stream(corpus.CorpusConfig(**READER_RECIPE, neutral_lengths=False)) == "c1e3437645324d4d"
    a, ca = make_corpus(60, 1, corpus.CorpusConfig(**READER_RECIPE))
    b, cb = make_corpus(60, 1, corpus.CorpusConfig(**READER_RECIPE, neutral_lengths=False))
    assert np.array_equal(a, b) and ca == cb
    assert _corpus_stream(corpus.CorpusConfig(**READER_RECIPE, neutral_lengths=True)) != "c1e3437645324d4d"


def test_neutral_lengths_words_span_3_to_8_letters_and_name_nothing(monkeypatch):
    """Issue 32's first lever: the neutral twins' words have every length 3-8, evenly; none is a class name, a
    word the corpus reads or captions, or a held-out unseen control word, nor holds one or is held in one."""
    from paint_core.data import corpus
    from paint_core.data.tasks import get_task
    words = corpus.NEUTRAL_LENGTH_WORDS
    assert len(set(words)) == len(words) and all(x.isalpha() and x.islower() for x in words)
    lengths = [len(x) for x in words]
    assert sorted(set(lengths)) == [3, 4, 5, 6, 7, 8] and len({lengths.count(n) for n in set(lengths)}) == 1
    class_names = {str(c) for t in ("shapes", "colours", "digits", "counting", "typographic")
                   for c in get_task(t).classnames}
    named = (corpus.corpus_vocabulary() - set(corpus.NEUTRAL_TRAIN_WORDS) - set(words)) | class_names
    assert not set(words) & named and not set(words) & set(corpus.UNSEEN_WORDS)
    others = {x for x in named | set(corpus.UNSEEN_WORDS) if len(x) >= 3}
    assert not [(x, o) for x in words for o in others if o in x or x in o]
    assert set(words) <= corpus.corpus_vocabulary()

    written = []
    real = world.render_object_with_word
    monkeypatch.setattr(world, "render_object_with_word",
                        lambda rng, shape, colour, word, *a, **k: (written.append(word),
                                                                   real(rng, shape, colour, word, *a, **k))[1])
    cfg = corpus.CorpusConfig(**{**READER_RECIPE, "object_word_share": 0.99, "neutral_twins": 1.0},
                              neutral_lengths=True)
    rng = np.random.default_rng(0)
    seconds = []
    for _ in range(300):
        n = len(written)
        (_, cap1), (_, cap2) = corpus._twins(rng, cfg, 16)
        if len(written) == n:
            continue  # the 1% of pairs that are two other kinds of image
        first, second = written[n:]
        assert first in corpus.READ_WORDS and second in words and second not in cap2.split()
        seconds.append(second)
    counts = np.bincount([len(x) for x in seconds], minlength=9)[3:]
    assert len(seconds) > 280 and counts.min() >= 30, counts  # every length, about evenly (~49 each)
    with pytest.raises(ValueError, match="needs word_pairs and neutral_twins"):
        corpus.corpus_mix(corpus.CorpusConfig(neutral_lengths=True))


def test_neutral_lengths_on_the_command_line_and_old_train_states_resume():
    """``--neutral-lengths`` is generated from the field; a train state saved before the field existed holds a
    recipe without it and still resumes with the option off (and only then)."""
    from dataclasses import asdict

    from paint_core.cli import build_parser
    from paint_core.cli.options import config_from
    from paint_core.data import corpus
    from paint_core.engine.pretrain import PretrainConfig, _with_defaults
    args = build_parser().parse_args(["pretrain", "--model", "micro-rn-s", "--out", "x", "--word-pairs",
                                      "--neutral-twins", "0.35", "--neutral-lengths"])
    assert config_from(corpus.CorpusConfig, args).neutral_lengths
    assert not config_from(corpus.CorpusConfig, build_parser().parse_args(["pretrain", "--model", "micro-rn-s",
                                                                       "--out", "x"])).neutral_lengths
    old = {"config": asdict(PretrainConfig()), "corpus": asdict(corpus.CorpusConfig(**READER_RECIPE))}
    del old["corpus"]["neutral_lengths"], old["config"]["neutral_hold"]
    assert _with_defaults(old) == {"config": asdict(PretrainConfig()),
                                   "corpus": asdict(corpus.CorpusConfig(**READER_RECIPE))}
    assert _with_defaults(old) != {"config": asdict(PretrainConfig()),
                                   "corpus": asdict(corpus.CorpusConfig(**READER_RECIPE, neutral_lengths=True))}


def _object_word_twins(cfg, seed: int, draws: int = 200) -> list[tuple[str, str, str, str, str]]:
    """``draws`` calls of ``corpus._twins`` (16 px); for each that wrote words on an object, (shape, first word,
    its caption, second word, its caption), the words and shapes as ``render_object_with_word`` received them
    (both twins checked to show the same shape)."""
    from paint_core.data import corpus
    written, out = [], []
    real = world.render_object_with_word
    world.render_object_with_word = lambda rng, shape, colour, word, *a, **k: (
        written.append((shape, word)), real(rng, shape, colour, word, *a, **k))[1]
    try:
        rng = np.random.default_rng(seed)
        for _ in range(draws):
            n = len(written)
            (_, cap1), (_, cap2) = corpus._twins(rng, cfg, 16)
            if len(written) > n:
                (shape, first), (shape2, second) = written[n:]
                assert shape == shape2, (shape, shape2)
                out.append((shape, first, cap1, second, cap2))
    finally:
        world.render_object_with_word = real
    return out

def test_neutral_named_captions_name_the_neutral_word_and_off_changes_nothing():
    """Issue 32's fourth lever: with ``neutral_named`` the neutral twin's caption names its written word (and the
    object where the caption is not the word alone), drawn exactly like the class-word twin's; off, the corpus is
    the shipped reader's bit for bit; the option needs twins, and the command line has it."""
    from paint_core.cli import build_parser
    from paint_core.cli.options import config_from
    from paint_core.data import corpus
    assert _corpus_stream(corpus.CorpusConfig(**READER_RECIPE, neutral_named=False)) == "c1e3437645324d4d"
    assert _corpus_stream(corpus.CorpusConfig(**READER_RECIPE, neutral_named=True)) != "c1e3437645324d4d"
    cfg = corpus.CorpusConfig(**{**READER_RECIPE, "object_word_share": 0.99, "neutral_twins": 1.0},
                              neutral_lengths=True, neutral_named=True)
    word_only = with_object = 0
    for shape, _, _, second, cap2 in _object_word_twins(cfg, seed=3):
        assert second in corpus.NEUTRAL_LENGTH_WORDS and second in cap2.split(), cap2
        if cap2 in (second, f"the word {second}", f"a sign that says {second}"):
            word_only += 1
        else:
            assert shape in cap2, cap2
            with_object += 1
    assert word_only > 80 and with_object > 50, (word_only, with_object)  # word_only_caption 0.6 of ~195 pairs
    with pytest.raises(ValueError, match="neutral_named .* needs word_pairs and neutral_twins"):
        corpus.corpus_mix(corpus.CorpusConfig(neutral_named=True))
    args = build_parser().parse_args(["pretrain", "--model", "micro-rn-s", "--out", "x", "--word-pairs",
                                      "--neutral-twins", "0.2", "--neutral-named"])
    assert config_from(corpus.CorpusConfig, args).neutral_named


def test_neutral_keeps_object_captions_every_named_neutral_twin_with_its_object():
    """Issue 32's fifth lever: with ``neutral_keeps_object`` a named neutral twin's caption always names the object
    and the word (never the word alone), while the class-word twin beside it keeps word-only captions at the
    recipe's share; off, lever 4's corpus is unchanged; the option needs ``neutral_named``."""
    from paint_core.cli import build_parser
    from paint_core.cli.options import config_from
    from paint_core.data import corpus
    lever4 = corpus.CorpusConfig(**READER_RECIPE, neutral_named=True)
    assert _corpus_stream(lever4) == _corpus_stream(corpus.CorpusConfig(**READER_RECIPE, neutral_named=True,
                                                                        neutral_keeps_object=False))
    assert _corpus_stream(corpus.CorpusConfig(**READER_RECIPE, neutral_named=True,
                                              neutral_keeps_object=True)) != _corpus_stream(lever4)
    cfg = corpus.CorpusConfig(**{**READER_RECIPE, "object_word_share": 0.99, "neutral_twins": 1.0},
                              neutral_lengths=True, neutral_named=True, neutral_keeps_object=True)
    first_word_only = second_pairs = 0
    for shape, first, cap1, second, cap2 in _object_word_twins(cfg, seed=5):
        second_pairs += 1
        assert second in corpus.NEUTRAL_LENGTH_WORDS and cap2 in (
            f"{second} written on a {shape}", *(f"a {c} {shape} with the word {second}" for c in world.COLOURS)), cap2
        first_word_only += cap1 == first
    assert second_pairs > 150 and first_word_only > 0.45 * second_pairs, (second_pairs, first_word_only)
    with pytest.raises(ValueError, match="neutral_keeps_object .* needs neutral_named"):
        corpus.corpus_mix(corpus.CorpusConfig(**{**READER_RECIPE, "neutral_twins": 0.2}, neutral_keeps_object=True))
    args = build_parser().parse_args(["pretrain", "--model", "micro-rn-s", "--out", "x", "--word-pairs",
                                      "--neutral-twins", "0.2", "--neutral-named", "--neutral-keeps-object"])
    assert config_from(corpus.CorpusConfig, args).neutral_keeps_object


def test_neutral_fresh_makes_up_a_new_word_for_each_neutral_twin_that_no_known_word_is_part_of():
    """Issue 32's seventh lever: with ``neutral_fresh`` each neutral twin carries a made-up word of 3-8 letters
    (nearly all distinct, every length common) that holds no corpus or held-out control word and is part of none,
    while the class-word twin beside it is drawn as before; off, the corpus is unchanged; the option needs
    neutral twins and excludes ``neutral_lengths``."""
    from paint_core.cli import build_parser
    from paint_core.cli.options import config_from
    from paint_core.data import corpus
    lever5 = dict(READER_RECIPE, neutral_named=True, neutral_keeps_object=True)
    # lever 5's corpus, digest taken on the tree before the option existed (e13ed96)
    assert _corpus_stream(corpus.CorpusConfig(**lever5)) == "4d3f73d17273f282"
    cfg = corpus.CorpusConfig(**{**lever5, "object_word_share": 0.99, "neutral_twins": 1.0}, neutral_fresh=True)
    written = []
    real = world.render_object_with_word
    world.render_object_with_word = lambda rng, shape, colour, word, *a, **k: (
        written.append((shape, word)), real(rng, shape, colour, word, *a, **k))[1]
    try:
        rng = np.random.default_rng(5)
        firsts, seconds = [], []
        for _ in range(400):
            n = len(written)
            (_, _), (_, cap2) = corpus._twins(rng, cfg, 16)
            if len(written) == n:
                continue
            (_, first), (shape, second) = written[n:]
            firsts.append(first)
            seconds.append(second)
            assert cap2 in (f"{second} written on a {shape}",
                            *(f"a {c} {shape} with the word {second}" for c in world.COLOURS)), cap2
    finally:
        world.render_object_with_word = real
    assert len(seconds) > 350 and len(set(seconds)) > 0.95 * len(seconds), (len(seconds), len(set(seconds)))
    assert set(firsts) <= set(corpus.READ_WORDS)
    lengths = np.bincount([len(s) for s in seconds], minlength=9)[3:]
    assert lengths.min() > 0.1 * len(seconds) and max(map(len, seconds)) == 8, lengths
    known = {x for x in corpus.corpus_vocabulary() | set(corpus.UNSEEN_WORDS) if len(x) >= 3}
    clashes = [(s, k) for s in seconds for k in known if k in s or s in k]
    assert not clashes and all(s.isalpha() and s.islower() for s in seconds), clashes[:5]
    for bad, match in ((dict(READER_RECIPE, neutral_twins=0.0), "neutral_fresh .* needs"),
                       (dict(READER_RECIPE, neutral_lengths=True), "neutral_fresh and neutral_lengths")):
        with pytest.raises(ValueError, match=match):
            corpus.corpus_mix(corpus.CorpusConfig(**bad, neutral_fresh=True))
    args = build_parser().parse_args(["pretrain", "--model", "micro-rn-s", "--out", "x", "--word-pairs",
                                      "--neutral-twins", "0.2", "--neutral-fresh"])
    assert config_from(corpus.CorpusConfig, args).neutral_fresh


def test_clean_twins_are_the_neutral_twins_objects_without_their_words():
    """``make_corpus_with_clean`` draws the very corpus of ``make_corpus`` and, for each neutral twin (and only
    those), the same object without its word: equal to the twin outside the ink, different under it."""
    import re

    from paint_core.data import corpus
    cfg = corpus.CorpusConfig(**READER_RECIPE, neutral_named=True, neutral_keeps_object=True, neutral_fresh=True)
    images, captions = corpus.make_corpus(300, 4, cfg)
    same, same_captions, clean = corpus.make_corpus_with_clean(300, 4, cfg)
    assert np.array_equal(images, same) and captions == same_captions
    vocab = corpus.corpus_vocabulary()  # a neutral twin's caption names its made-up word, which no other holds
    neutral = [i for i, c in enumerate(captions) if set(re.findall(r"[a-z0-9]+", c)) - vocab]
    assert len(clean.index) >= 10 and list(clean.index) == neutral
    for i, img in zip(clean.index, clean.images):
        ink = (images[i] != img).any(-1).mean()
        assert 0.01 < ink < 0.3, (captions[i], ink)
