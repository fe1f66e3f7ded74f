"""The pretraining corpus of the embedded world: (image, caption) pairs, like web alt-text.

Captions are deliberately noisy and partial, the way web captions are: counts are named only sometimes
and sometimes wrongly, digits are named 60% of the time, and an object with a word on it is often captioned
by the word alone (which is what teaches a CLIP to fall for typographic attacks). Caption wording differs
from the evaluation templates in ``embedded.py``, so zero-shot accuracy is not a string match.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image

from . import world as w


# Share of each kind of image in the corpus.
MIX = {"object": 0.26, "scene": 0.22, "digit": 0.20, "word": 0.14, "object_word": 0.18}
READ_WORDS = w.SHAPES + tuple(w.COLOURS) + w.NUMBER_WORDS[1:7] + w.OTHER_WORDS
# Non-class words seen only in training, on objects captioned by the object alone: they teach that ink which
# names no class leaves the object what it is. Disjoint from ``world.OTHER_WORDS``, the held-out control words.
NEUTRAL_TRAIN_WORDS = ("pen", "box", "key", "cow", "bus", "map", "egg", "leaf", "door", "shoe", "ring", "lamp")
# The neutral words of ``neutral_lengths`` (issue 32): six of every length from 3 to 8 letters, so that one pick
# draws the length uniformly and the extent of the ink no longer tells a neutral word (all 3-4 letters above) from
# a long class word (triangle, diamond). None is a class name, a corpus word, an unseen control word, or holds
# one of those (of 3+ letters) or is held in one: no word is partly another that the model should read or not.
NEUTRAL_LENGTH_WORDS = (
    "box", "key", "cow", "bus", "map", "egg",
    "leaf", "door", "shoe", "ring", "lamp", "coin",
    "bench", "clock", "glove", "horse", "sheep", "truck",
    "bucket", "candle", "rabbit", "ladder", "basket", "pillow",
    "bicycle", "lantern", "trumpet", "octopus", "compass", "cabinet",
    "umbrella", "dinosaur", "backpack", "sandwich", "airplane", "envelope")
# Ink colours of words on objects when ``word_colours`` is set: white, black, and the world's colours.
WORD_INKS = ((255, 255, 255), (0, 0, 0)) + tuple(w.COLOURS.values())
# The words of the caption templates below, besides names (shapes, colours, numbers, written words).
CAPTION_WORDS = frozenset((
    "a", "are", "blurry", "by", "coloured", "digit", "drawing", "few", "group", "hand", "handwritten", "in", "many",
    "mark", "mixed", "number", "object", "objects", "of", "on", "outline", "pattern", "picture", "pixelated", "says",
    "scan", "shape", "shapes", "sign", "sketch", "small", "some", "text", "that", "the", "there", "with", "word",
    "written"))
# Non-class words that never occur in any corpus, written or in a caption (``corpus_vocabulary``): the held-out
# control of ``studies.diagnostics.reading_by_word``. ``world.OTHER_WORDS`` are read in the corpus (word-only
# captions), so a model has learnt a meaning for them; these it has never seen. Lengths 4-8 like the class words.
UNSEEN_WORDS = ("fork", "wolf", "plant", "chair", "pencil", "button", "window", "garden", "blanket", "kitchen",
                "elephant", "mountain")
# Syllable parts of ``neutral_fresh``'s made-up words: English-like onsets and codas, so the ink has the letter
# clusters of real words (the held-out control words are real words) without being one the corpus knows.
_ONSETS = ("b", "bl", "br", "c", "ch", "cl", "cr", "d", "dr", "f", "fl", "fr", "g", "gl", "gr", "h", "j", "k", "l",
           "m", "n", "p", "pl", "pr", "qu", "r", "s", "sh", "sl", "sn", "sp", "st", "t", "th", "tr", "v", "w", "y", "z")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "ee", "oo", "ou", "y")
_CODAS = ("", "", "", "b", "ck", "d", "ft", "g", "k", "l", "lk", "m", "mp", "n", "nd", "ng", "nt", "p", "r", "rd",
          "rn", "s", "sk", "st", "t", "x")


def corpus_vocabulary() -> frozenset[str]:
    """Every word any corpus configuration can write on an image or put in a caption (lower case; digits as
    "0".."9"), besides ``neutral_fresh``'s made-up words, which are drawn anew each time and never one of these.
    tests/test_world.py checks it against sampled captions and written words."""
    names = {*w.SHAPES, *(f"{s}s" for s in w.SHAPES), *w.COLOURS, *w.NUMBER_WORDS, *map(str, range(10))}
    return frozenset(CAPTION_WORDS | names | set(READ_WORDS) | set(NEUTRAL_TRAIN_WORDS) | set(NEUTRAL_LENGTH_WORDS))


@dataclass(frozen=True)
class CorpusConfig:
    """Shares of caption behaviour; the defaults are the shipped models' corpus."""
    count_named: float = 0.5        #: share of multi-object scenes whose caption names the count
    count_wrong: float = 0.1        #: share of named counts that are wrong
    digit_named: float = 0.6        #: share of digit captions naming the number
    digit_wrong: float = 0.1        #: share of named digits that are wrong
    word_only_caption: float = 0.35  #: share of object+word images captioned by the written word alone
    # kept rare: it is the shifted style
    outline_share: float = 0.05     #: share of objects drawn in outline style
    # the other kinds of image keep their ratios
    object_word_share: float = 0.18  #: share of corpus images that are objects with a word written on them
    word_font_min: int = 11         #: smallest font size of words on objects (64 px world)
    word_font_max: int = 15         #: largest font size of words on objects (64 px world)
    # the twin comes next to it in the corpus, and pretraining keeps twins in one batch
    #: twin every object+word image with the same object under another word, in the same batch
    word_pairs: bool = False
    #: share of twins whose second word names no class (training-only words), captioned by the object alone
    neutral_twins: float = 0.0
    # NEUTRAL_LENGTH_WORDS instead of the 3-4-letter NEUTRAL_TRAIN_WORDS
    #: neutral twins' words of every length from 3 to 8 letters, evenly, instead of 3-4 letters (issue 32: ink width
    #: no longer tells a neutral word from a long class word); needs --word-pairs and --neutral-twins
    neutral_lengths: bool = False
    # off: the neutral twin is captioned by its object alone (the shipped reader's recipe)
    #: neutral twins' captions name their written word as well as the object, like the class-word twins' (issue 32:
    #: ties every word's ink to its text, not only class words'); needs --word-pairs and --neutral-twins
    neutral_named: bool = False
    # off: a named neutral twin is captioned by its word alone as often as a class-word twin (lever 4)
    #: named neutral twins are never captioned by their word alone: the caption names the object and the word, so
    #: ink that names no class leaves the object the answer (issue 32); needs --neutral-named
    neutral_keeps_object: bool = False
    # off: the neutral twins' words come from a fixed list (NEUTRAL_TRAIN_WORDS or NEUTRAL_LENGTH_WORDS)
    #: neutral twins' words are made up afresh for each twin (3 to 8 letters, evenly, English-like syllables), so
    #: that ink naming no class cannot be learnt word by word (issue 32: unseen words still cost 43 points after
    #: 36 fixed neutral words); needs --word-pairs and --neutral-twins, not with --neutral-lengths
    neutral_fresh: bool = False
    word_colours: bool = False      #: write words on objects in varied ink colours (default: white)


def has_neutral_twins(cfg: CorpusConfig) -> bool:
    """Whether the corpus twins some object+word images with a neutral word (what the neutral options change)."""
    return cfg.word_pairs and cfg.neutral_twins > 0


def corpus_mix(cfg: CorpusConfig) -> dict[str, float]:
    """Share of each kind of image: ``MIX`` with the object+word share set by ``cfg`` (others rescaled)."""
    if not 0 <= cfg.object_word_share < 1:
        raise ValueError(f"object_word_share must be in [0, 1), got {cfg.object_word_share}")
    if cfg.neutral_lengths and not has_neutral_twins(cfg):
        raise ValueError("neutral_lengths changes the neutral twins' words: it needs word_pairs and neutral_twins > 0")
    if cfg.neutral_named and not has_neutral_twins(cfg):
        raise ValueError("neutral_named changes the neutral twins' captions: it needs word_pairs and neutral_twins > 0")
    if cfg.neutral_keeps_object and not cfg.neutral_named:
        raise ValueError("neutral_keeps_object changes named neutral twins' captions: it needs neutral_named")
    if cfg.neutral_fresh and not has_neutral_twins(cfg):
        raise ValueError("neutral_fresh changes the neutral twins' words: it needs word_pairs and neutral_twins > 0")
    if cfg.neutral_fresh and cfg.neutral_lengths:
        raise ValueError("neutral_fresh and neutral_lengths both choose the neutral twins' words: set one")
    if cfg.object_word_share == MIX["object_word"]:
        return dict(MIX)  # exactly the shipped corpus, bit for bit
    rest = 1 - MIX["object_word"]
    mix = {k: v / rest * (1 - cfg.object_word_share) for k, v in MIX.items() if k != "object_word"}
    return {**mix, "object_word": cfg.object_word_share}


def _object_caption(rng, shape: str, colour: str) -> str:
    return w.pick(rng, (f"a {colour} {shape}", f"a {shape}", f"{colour} {shape} drawing",
                       f"a picture of a {colour} {shape}", f"a {colour} shape", f"{shape}", f"{colour}",
                       f"a {shape} in {colour}"))


def _count_caption(rng, cfg: CorpusConfig, count: int, shape: str | None, colour: str | None) -> str:
    if rng.random() < cfg.count_named:
        if rng.random() < cfg.count_wrong:
            count = int(w.pick(rng, [c for c in range(1, w.MAX_COUNT + 1) if c != count]))
        number = w.NUMBER_WORDS[count] if rng.random() < 0.7 else str(count)
        noun = f"{shape}s" if shape and count > 1 else (shape or ("objects" if count > 1 else "object"))
        return w.pick(rng, (f"{number} {noun}", f"there are {number} {noun}",
                           f"{number} {colour or 'coloured'} {noun}", f"a group of {number} {noun}"))
    if shape:
        return w.pick(rng, (f"some {shape}s", f"{colour or 'coloured'} {shape}s", f"a few {shape}s"))
    return w.pick(rng, ("some shapes", "many coloured shapes", "a pattern of shapes", "mixed shapes"))


def _digit_caption(rng, cfg: CorpusConfig, digit: int) -> str:
    if rng.random() < cfg.digit_named:
        if rng.random() < cfg.digit_wrong:
            digit = int(w.pick(rng, [d for d in range(10) if d != digit]))
        name = w.pick(rng, (w.NUMBER_WORDS[digit], str(digit)))
        return w.pick(rng, (f"the number {name}", f"handwritten {name}", f"a blurry {name}",
                           f"digit {name}", f"{name} written by hand", f"{name}"))
    return w.pick(rng, ("a blurry drawing", "a handwritten mark", "a small scan", "a pixelated sketch"))


def sample_pair(rng: np.random.Generator, cfg: CorpusConfig = CorpusConfig(),
                size: int = w.WORLD_SIZE) -> tuple[Image.Image, str]:
    """Draw one (image, caption) pair of the corpus."""
    mix = corpus_mix(cfg)
    kind = rng.choice(list(mix), p=list(mix.values()))
    if kind == "object":
        shape, colour = w.pick(rng, w.SHAPES), w.pick(rng, tuple(w.COLOURS))
        style = "outline" if rng.random() < cfg.outline_share else "filled"
        img = w.render_object(rng, shape, colour, style, size)
        cap = _object_caption(rng, shape, colour)
        return img, (cap + " outline" if style == "outline" and rng.random() < 0.5 else cap)
    if kind == "scene":
        count = int(rng.integers(1, w.MAX_COUNT + 1))
        if rng.random() < 0.5:
            shape, colour = w.pick(rng, w.SHAPES), w.pick(rng, tuple(w.COLOURS))
            img = w.render_count(rng, count, (shape,), (colour,), size)
        else:
            shapes = tuple(rng.choice(w.SHAPES, size=count))
            colours = tuple(rng.choice(list(w.COLOURS), size=count))
            shape = colour = None
            img = w.render_count(rng, count, shapes, colours, size)
        return img, _count_caption(rng, cfg, count, shape, colour)
    if kind == "digit":
        digit = int(rng.integers(0, 10))
        return w.render_digit_lookalike(rng, digit, size), _digit_caption(rng, cfg, digit)
    if kind == "word":
        word = w.pick(rng, READ_WORDS)
        return w.render_word(rng, word, size), w.pick(rng, (word, f"the word {word}", f"a sign that says {word}",
                                                           f"text: {word}", word))
    shape, colour, word = w.pick(rng, w.SHAPES), w.pick(rng, tuple(w.COLOURS)), w.pick(rng, READ_WORDS)
    font = None if (cfg.word_font_min, cfg.word_font_max) == (11, 15) else \
        int(rng.integers(cfg.word_font_min, cfg.word_font_max + 1))
    ink = _word_ink(rng, cfg)
    img = w.render_object_with_word(rng, shape, colour, word, size, font_size=font, **ink)
    u = rng.random()
    if u < cfg.word_only_caption:
        cap = w.pick(rng, (word, f"the word {word}", f"a sign that says {word}"))
    elif u < cfg.word_only_caption + 0.4:
        cap = f"a {colour} {shape} with the word {word}" if rng.random() < 0.5 else f"{word} written on a {shape}"
    else:
        cap = _object_caption(rng, shape, colour)
    return img, cap


def make_corpus(n: int, seed: int, cfg: CorpusConfig = CorpusConfig(), size: int = w.WORLD_SIZE,
                progress=None) -> tuple[np.ndarray, list[str]]:
    """``n`` pairs as a uint8 array [n, size, size, 3] and a list of captions; deterministic in ``seed``."""
    images, captions, _ = _make(n, seed, cfg, size, progress, keep_clean=False)
    return images, captions


@dataclass(frozen=True)
class CleanTwins:
    """For each neutral twin of a corpus, the same object drawn without its word (pretraining's ``neutral_hold``
    holds the twin's embedding to it)."""
    index: np.ndarray   # [m] the neutral twins' positions in the corpus
    images: np.ndarray  # [m, size, size, 3] uint8, the i-th is ``index[i]``'s object without the word

    @staticmethod
    def none(size: int) -> "CleanTwins":
        return CleanTwins(np.empty(0, np.int64), np.empty((0, size, size, 3), np.uint8))


def make_corpus_with_clean(n: int, seed: int, cfg: CorpusConfig, size: int = w.WORLD_SIZE
                           ) -> tuple[np.ndarray, list[str], CleanTwins]:
    """``make_corpus`` (the same images and captions, draw for draw) and each neutral twin's object without its
    word."""
    return _make(n, seed, cfg, size, None, keep_clean=True)


def _make(n: int, seed: int, cfg: CorpusConfig, size: int, progress, keep_clean: bool
          ) -> tuple[np.ndarray, list[str], CleanTwins]:
    rng = np.random.default_rng(seed)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    captions: list[str] = []
    clean_index: list[int] = []
    clean_images: list[np.ndarray] = []
    i = 0
    while i < n:
        if cfg.word_pairs:
            cleans: list[Image.Image | None] = []
            twins = _twins(rng, cfg, size, cleans if keep_clean else None)
            for j, (img, cap) in enumerate(twins[:n - i]):
                if keep_clean and cleans[j] is not None:
                    clean_index.append(i)
                    clean_images.append(np.asarray(cleans[j]))
                images[i] = np.asarray(img)
                captions.append(cap)
                i += 1
            continue
        img, cap = sample_pair(rng, cfg, size)
        images[i] = np.asarray(img)
        captions.append(cap)
        i += 1
        if progress is not None:
            progress(1)
    if not clean_images:
        return images, captions, CleanTwins.none(size)
    return images, captions, CleanTwins(np.asarray(clean_index, dtype=np.int64), np.stack(clean_images))


def _twins(rng: np.random.Generator, cfg: CorpusConfig, size: int,
           clean: list | None = None) -> list[tuple[Image.Image, str]]:
    """Two neighbouring corpus entries: for an object+word image, the same object (one random state) with two
    different words, each caption naming its word and the object, so that in a batch holding both only reading
    tells the captions apart; for any other kind, two independent pairs. ``clean``, when given, receives for each
    entry the neutral twin's object drawn without its word, else None (drawing it takes nothing from ``rng``)."""
    if rng.random() >= corpus_mix(cfg)["object_word"]:
        if clean is not None:
            clean += [None, None]
        return [sample_pair(rng, CorpusConfig(**{**cfg.__dict__, "object_word_share": 0.0}), size) for _ in range(2)]
    shape, colour = w.pick(rng, w.SHAPES), w.pick(rng, tuple(w.COLOURS))
    first = w.pick(rng, READ_WORDS)
    neutral = cfg.neutral_twins > 0 and rng.random() < cfg.neutral_twins
    neutral_words = NEUTRAL_LENGTH_WORDS if cfg.neutral_lengths else NEUTRAL_TRAIN_WORDS  # one pick either way
    if neutral and cfg.neutral_fresh:
        second = fresh_neutral_word(rng)
    else:
        second = w.pick(rng, neutral_words if neutral else [x for x in READ_WORDS if x != first])
    state = int(rng.integers(0, 2 ** 31))
    font = int(rng.integers(cfg.word_font_min, cfg.word_font_max + 1))
    ink = _word_ink(rng, cfg)
    out = []
    for word, is_neutral in ((first, False), (second, neutral)):
        img = w.render_object_with_word(np.random.default_rng(state), shape, colour, word, size, font_size=font,
                                        **ink)
        if clean is not None:  # the object render_object_with_word draws first from the same state
            clean.append(w.render_object(np.random.default_rng(state), shape, colour, size=size,
                                         radius=w.WORDED_OBJECT_RADIUS) if is_neutral else None)
        if is_neutral and not cfg.neutral_named:
            out.append((img, _object_caption(rng, shape, colour)))
            continue
        u = rng.random()
        word_only = u < cfg.word_only_caption and not (is_neutral and cfg.neutral_keeps_object)
        cap = (word if word_only else
               f"a {colour} {shape} with the word {word}" if rng.random() < 0.5 else f"{word} written on a {shape}")
        out.append((img, cap))
    return out


@functools.lru_cache(maxsize=1)
def _known_words() -> tuple[str, ...]:
    """The words a made-up neutral word may neither hold nor be part of (those of 3+ letters): every corpus word
    and every held-out control word, so no made-up word is partly one the model should read, or is tested on."""
    return tuple(sorted(x for x in corpus_vocabulary() | set(UNSEEN_WORDS) if len(x) >= 3 and x.isalpha()))


def fresh_neutral_word(rng: np.random.Generator) -> str:
    """A made-up word of 3 to 8 letters built from English-like syllables (length drawn evenly; short ones are
    a little rarer, being rejected more often), redrawn until it holds no known word and is part of none."""
    known = _known_words()
    while True:
        length = int(rng.integers(3, 9))
        word = ""
        while len(word) < length:
            word += _ONSETS[int(rng.integers(len(_ONSETS)))] + _VOWELS[int(rng.integers(len(_VOWELS)))] \
                + _CODAS[int(rng.integers(len(_CODAS)))]
        word = word[:length]
        if not any(k in word or word in k for k in known):
            return word


def _word_ink(rng: np.random.Generator, cfg: CorpusConfig) -> dict:
    """Keyword arguments of ``render_object_with_word`` for the ink: none (white) unless ``word_colours``, so the
    default corpus stays bit for bit the shipped one."""
    if not cfg.word_colours:
        return {}
    return {"text_colour": WORD_INKS[int(rng.integers(0, len(WORD_INKS)))]}
