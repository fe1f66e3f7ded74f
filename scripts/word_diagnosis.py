"""Why does a reader read some class words and not others (issue 32, item 3)? Cheap measurements, no training:

    python scripts/word_diagnosis.py                          # the Typographic page's reader (64 px)
    python scripts/word_diagnosis.py --model micro-rn-s --weights runs/reading/A.safetensors shipped   # 48 px ones

Once: the open_clip token ids of each class word (alone and in a class template); how often each class word is
written and captioned in the first 20,000 pairs of the reader's pretraining corpus (its recipe read from the
weights' sidecar: the corpus is generated in 5,000-pair chunks seeded 0, 1, ...; this replays the first chunks
and records the written words), and where its token sits in the caption; the glyph each word makes at 48 px
(font 11-15 px of the 64 px world, as the corpus and the tests write it), as ink pixels and width.
Per weights file: the written-word probe's recall per word (a logistic regression on frozen image features: is
the word in the features at all?); the mean logit shift a written word causes on the same object (the word's
class against the others: is the feature aligned with the word's text embedding?), for class words and for
unseen words (which class does ink that names nothing push?); the word rate per font size; and the zero-shot
shape answer on each word written alone, large, on a plain background (the corpus's "word" images).
"""
from __future__ import annotations

import argparse
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from paint_core.data import corpus, world
from paint_core.data.embedded import SHAPE_TEMPLATES
from paint_core.engine.evaluation import image_features, logits, predict, zero_shot_head
from paint_core.models.clip import load_model
from paint_core.studies.diagnostics import (TEXT_COLOURS, control_costs, reading_by_word, trial_images, word_rates,
                                            word_trials, written_word_probe)

WORD_ONLY = ("{}", "the word {}", "a sign that says {}", "text: {}")


def labelled_captions(cfg: corpus.CorpusConfig, n: int, seed: int) -> list[tuple[str, str | None]]:
    """The captions of ``make_corpus(n, seed, cfg)`` (its loop replayed, checked equal), each with the word written
    on its image (None: no word), recorded from the world's two word writers while the pairs are drawn."""
    written: list[str] = []
    labels: list[tuple[str, str | None]] = []
    real = world.render_word, world.render_object_with_word, corpus.sample_pair

    def word_alone(rng, word, *a, **k):
        written.append(word)
        return real[0](rng, word, *a, **k)

    def word_on_object(rng, shape, colour, word, *a, **k):
        written.append(word)
        return real[1](rng, shape, colour, word, *a, **k)

    def one_pair(rng, cfg, size=world.WORLD_SIZE):
        before = len(written)
        img, cap = real[2](rng, cfg, size)
        labels.append((cap, written[before] if len(written) > before else None))
        return img, cap
    world.render_word, world.render_object_with_word, corpus.sample_pair = word_alone, word_on_object, one_pair
    try:
        rng = np.random.default_rng(seed)
        while len(labels) < n:
            before_words, before_labels = len(written), len(labels)
            pairs = corpus._twins(rng, cfg, world.WORLD_SIZE) if cfg.word_pairs else [corpus.sample_pair(rng, cfg)]
            if len(labels) == before_labels:  # a twin of one object: one word per image, in order
                labels += [(cap, word) for (_, cap), word in zip(pairs, written[before_words:])]
    finally:
        world.render_word, world.render_object_with_word, corpus.sample_pair = real
    labels = labels[:n]
    if [c for c, _ in labels] != corpus.make_corpus(n, seed, cfg)[1]:
        raise RuntimeError("the replayed corpus differs from make_corpus: update labelled_captions")
    return labels


def corpus_counts(cfg: corpus.CorpusConfig, chunks: int, chunk: int = 5000) -> pd.DataFrame:
    """Per class word, over the first ``chunks`` chunks of the corpus (seeds 0, 1, ... as pretraining draws
    them): images it is written on, those captioned with the word (word-only among them), captions naming it
    as the object and not written, and the mean token position of the written word in its caption (0: first)."""
    rows = {s: {"written": 0, "captioned_as_word": 0, "word_only_caption": 0, "named_as_object": 0,
                "position": []} for s in world.SHAPES}
    for seed in range(chunks):
        for cap, word in labelled_captions(cfg, chunk, seed):
            tokens = re.findall(r"[a-z0-9]+", cap.lower())
            for shape, row in rows.items():
                if word == shape:
                    row["written"] += 1
                    row["word_only_caption"] += cap in [t.format(shape) for t in WORD_ONLY]
                    if shape in tokens:
                        row["captioned_as_word"] += 1
                        row["position"].append(tokens.index(shape))
                elif shape in tokens or f"{shape}s" in tokens:
                    row["named_as_object"] += 1
    out = pd.DataFrame.from_dict(rows, orient="index")
    out["position"] = out["position"].map(lambda p: float(np.mean(p)) if p else float("nan"))
    return out


def glyph(word: str, font: int, preprocess_size: int = 48) -> tuple[int, int]:
    """(ink pixels, width in pixels) of ``word`` written at ``font`` px of the 64 px world (shrunk to fit as
    render_object_with_word does), seen at ``preprocess_size`` px (bicubic, as the micro models' preprocess)."""
    canvas = Image.new("RGB", (world.WORLD_SIZE, world.WORLD_SIZE))
    world.draw_text(canvas, word, 2, 20, world.fit_text_size(word, font, world.WORLD_SIZE - 4, 6), outline=False)
    small = np.asarray(canvas.convert("L").resize((preprocess_size, preprocess_size), Image.BICUBIC)) > 96
    cols = np.flatnonzero(small.any(0))
    return int(small.sum()), int(cols[-1] - cols[0] + 1) if len(cols) else 0


def glyphs(words=world.SHAPES) -> pd.DataFrame:
    """Per word: letters, and ink pixels and width at 48 px, mean over font sizes 11-15 of the world."""
    rows = {}
    for word in words:
        ink, width = zip(*(glyph(word, font) for font in range(11, 16)))
        rows[word] = {"letters": len(word), "ink_px_48": float(np.mean(ink)), "width_px_48": float(np.mean(width))}
    return pd.DataFrame.from_dict(rows, orient="index")


def matched_ink_rates(model, preprocess, tokenizer, targets: dict[str, float]) -> pd.DataFrame:
    """The word rate (%) per class word with every word written at the font size (6-30 px) whose ink at 48 px is
    nearest each target (columns): equal ink for all words, so what is left is the word's identity."""
    out = {}
    for name, target in targets.items():
        fonts = {w: min(range(6, 31), key=lambda f: abs(glyph(w, f)[0] - target)) for w in world.SHAPES}
        trials = [replace(t, font_size=fonts[t.word]) for t in word_trials(2)]
        rates = word_rates(reading_by_word(model, preprocess, tokenizer, trials))["all"]
        out[name] = {w: f"{100 * rates[w]:.1f} (font {fonts[w]})" for w in world.SHAPES}
    return pd.DataFrame(out)


def token_ids(tokenizer) -> dict[str, dict]:
    """The word's BPE ids alone, and in the template "a drawing of a {}." (start/end/padding dropped)."""
    def ids(text: str) -> list[int]:
        return [int(i) for i in tokenizer([text])[0] if int(i) not in (0, 49406, 49407)]
    return {w: {"alone": ids(w), "in_template": ids(SHAPE_TEMPLATES[1].format(w))} for w in world.SHAPES}


@torch.no_grad()
def logit_shifts(model, preprocess, tokenizer, per_cell: int = 2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean change of each class's logit (columns) when a word (rows) is written on an object, against the same
    object clean: class words and unseen words. The diagonal of the first table is the word's own class; its last
    columns are the mean margin of the object's logit over the written word's, clean and with the word (the word
    is chosen where the second is below zero)."""
    head = zero_shot_head(model, tokenizer, world.SHAPES, SHAPE_TEMPLATES)
    trials = word_trials(per_cell)
    x = torch.stack([preprocess(img) for t in trials for img in trial_images(t)])
    z = torch.cat([logits(model, head, x[i:i + 384]).float().cpu() for i in range(0, len(x), 384)])
    z = z.reshape(len(trials), 3, -1)
    attacked, control = (z[:, 1] - z[:, 0]).numpy(), (z[:, 2] - z[:, 0]).numpy()
    obj = torch.tensor([world.SHAPES.index(t.shape) for t in trials])
    wrd = torch.tensor([world.SHAPES.index(t.word) for t in trials])
    rows = torch.arange(len(trials))
    margins = pd.DataFrame({"word": [t.word for t in trials],  # object's logit minus the written word's
                            "clean margin": (z[rows, 0, obj] - z[rows, 0, wrd]).numpy(),
                            "margin with the word": (z[rows, 1, obj] - z[rows, 1, wrd]).numpy()})
    by_word = pd.DataFrame(attacked, columns=world.SHAPES).assign(word=[t.word for t in trials])
    by_unseen = pd.DataFrame(control, columns=world.SHAPES).assign(word=[t.unseen for t in trials])
    shifts = by_word.groupby("word").mean().loc[list(world.SHAPES)]
    return (shifts.join(margins.groupby("word").mean()),
            by_unseen.groupby("word").mean().loc[list(corpus.UNSEEN_WORDS)])


@torch.no_grad()
def words_alone(model, preprocess, tokenizer, n: int = 60, seed: int = 5) -> dict[str, float]:
    """Per class word: the share of images of the word written alone, large (the corpus's word images), that the
    zero-shot shape head names as that word."""
    head = zero_shot_head(model, tokenizer, world.SHAPES, SHAPE_TEMPLATES)
    rng = np.random.default_rng(seed)
    out = {}
    for i, word in enumerate(world.SHAPES):
        x = torch.stack([preprocess(world.render_word(rng, word)) for _ in range(n)])
        out[word] = float((predict(model, head, x).argmax(-1) == i).float().mean())
    return out


def length_matched_probe(model, preprocess, n: int = 300, seed: int = 17) -> dict[str, dict]:
    """Per class word: a logistic regression on frozen image features telling the word from other words of about
    its length (within one letter; any word of the world or the unseen list), written the same way on random
    objects; ``n`` images each side, 2/3 to train. Near 1: the word's identity is in the features, not only its
    size (the 6-way written-word probe could tell star apart by length alone: it is the shortest class word)."""
    from sklearn.linear_model import LogisticRegression
    pool = set(corpus.READ_WORDS) | set(corpus.NEUTRAL_TRAIN_WORDS) | set(corpus.UNSEEN_WORDS)
    rng = np.random.default_rng(seed)
    out = {}
    for word in world.SHAPES:
        others = sorted(x for x in pool if x != word and abs(len(x) - len(word)) <= 1)
        words = [word] * n + [world.pick(rng, others) for _ in range(n)]
        x = torch.stack([preprocess(world.render_object_with_word(
            rng, world.pick(rng, world.SHAPES), world.pick(rng, tuple(world.COLOURS)), wd,
            text_colour=TEXT_COLOURS[int(rng.integers(0, 3))])) for wd in words])
        feats = image_features(model, x).numpy()
        y = np.array([wd == word for wd in words])
        order = rng.permutation(len(y))
        train, test = order[: 2 * len(y) // 3], order[2 * len(y) // 3:]
        clf = LogisticRegression(max_iter=3000, C=10.0).fit(feats[train], y[train])
        out[word] = {"accuracy": round(float(clf.score(feats[test], y[test])), 3), "distractors": len(others)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="micro-rn-s-64")
    ap.add_argument("--weights", nargs="+", default=["paint_core/weights/micro-rn-s-64-reads.safetensors"],
                    help="weights files of --model ('shipped': its embedded weights, for micro-rn-s and micro-rn-l)")
    ap.add_argument("--chunks", type=int, default=4, help="5,000-pair corpus chunks to count over")
    args = ap.parse_args()
    pd.set_option("display.width", 160)
    _, _, tokenizer = load_model(args.model)
    print("# token ids (open_clip BPE)\n" + json.dumps(token_ids(tokenizer)))
    shapes = glyphs()
    print("# glyph at 48 px (mean over font 11-15)\n" + shapes.round(1).to_string())
    unseen_glyphs = glyphs(corpus.UNSEEN_WORDS)
    sidecar = json.loads(Path(args.weights[0]).with_suffix(".json").read_text())
    cfg = corpus.CorpusConfig(**sidecar["corpus"])
    print(f"# corpus of {args.weights[0]}: first {args.chunks * 5000} pairs\n"
          + corpus_counts(cfg, args.chunks).round(2).to_string())
    for given in args.weights:
        model, preprocess, tok = load_model(args.model, None if given == "shipped" else given)
        results = reading_by_word(model, preprocess, tok)
        by_font = results.assign(read=results["attacked"] == results["word"]).pivot_table(
            index="word", columns="font_size", values="read").loc[list(world.SHAPES)]
        shifts, unseen = logit_shifts(model, preprocess, tok)
        print(f"## {given}\n# probe recall per word: {json.dumps(written_word_probe(model, preprocess)['per_word'])}")
        matched = length_matched_probe(model, preprocess)
        print(f"# length-matched probe (the word against words of its length): {json.dumps(matched)}")
        print(f"# word alone, large: named as the word {json.dumps(words_alone(model, preprocess, tok))}")
        print("# word rate by font size (px of 64)\n" + (100 * by_font).round(1).to_string())
        print("# mean logit shift, class word written (rows) -> class logits\n" + shifts.round(2).to_string())
        print("# mean logit shift, unseen word written (rows) -> class logits\n" + unseen.round(2).to_string())
        rates = word_rates(results)["all"]
        costs = control_costs(results)["all"]
        print("# rank correlation with glyph ink: class words' rate "
              f"{rates.corr(shapes['ink_px_48'], method='spearman'):.2f}, unseen words' cost "
              f"{costs.corr(unseen_glyphs['ink_px_48'], method='spearman'):.2f}")
        targets = {"star's ink": shapes.loc["star", "ink_px_48"], "diamond's ink": shapes.loc["diamond", "ink_px_48"]}
        print("# word rate (%) at matched ink\n" + matched_ink_rates(model, preprocess, tok, targets).to_string())


if __name__ == "__main__":
    main()
