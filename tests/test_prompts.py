"""CoOp / ContCoOp mechanics against independent computations (random micro CLIPs, no shipped weights needed)."""
from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F

from paint_core import load_model
from paint_core.io.checkpoints import save_checkpoint
from paint_core.models.clip import register_embedded_configs
from paint_core.engine.prompts import (PromptConfig, PromptLearner, few_shot_indices, load_prompt, save_prompt, train_prompt)

NAMES = ["one", "two", "three"]


@pytest.fixture(scope="module")
def micro(random_micro_file):
    return load_model("micro-rn-s", random_micro_file)


def test_coop_with_word_embeddings_as_context_equals_encode_text(micro):
    """Context vectors set to the embeddings of 'a photo of a' give exactly the text 'a photo of a {name}.'"""
    model, _, tokenizer = micro
    learner = PromptLearner(128, PromptConfig(kind="coop", n_ctx=4))
    words = tokenizer(["a photo of a"])[0, 1:5]
    with torch.no_grad():
        learner.ctx.copy_(model.token_embedding(words))
        got = learner.text_features(model, tokenizer, NAMES)
        expected = F.normalize(model.encode_text(tokenizer([f"a photo of a {n}." for n in NAMES])), dim=-1)
    assert torch.allclose(got, expected, atol=1e-5)


def test_contcoop_attention_is_class_conditioned(micro):
    model, _, tokenizer = micro
    learner = PromptLearner(128, PromptConfig(kind="contcoop", n_ctx=4))
    ids, mask = learner._tokens(tokenizer, ["one", "twenty two"])
    assert mask.sum(1).tolist() == [1, 2]  # exactly the class name's tokens enter the attention
    with torch.no_grad():
        emb = model.token_embedding(ids)
        ctx = learner.context(emb, mask)
        assert ctx.shape == (2, 4, 128)
        assert not torch.allclose(ctx[0], ctx[1])  # different names, different context
        emb2 = emb.clone()
        emb2[1, ~mask[1]] += 1.0  # changing tokens outside the class name leaves the context unchanged
        assert torch.allclose(learner.context(emb2, mask), ctx, atol=1e-6)
        emb3 = emb.clone()
        emb3[1, mask[1]] += 1.0  # changing the class name's tokens changes that class's context only
        ctx3 = learner.context(emb3, mask)
        assert torch.allclose(ctx3[0], ctx[0]) and not torch.allclose(ctx3[1], ctx[1])
    coop = PromptLearner(128, PromptConfig(kind="coop"))
    with torch.no_grad():
        shared = coop.context(emb, mask)
    assert torch.equal(shared[0], shared[1])


def test_prompt_moves_only_between_equal_widths(micro, tmp_path):
    model, _, tokenizer = micro
    learner = PromptLearner(128, PromptConfig(kind="contcoop"))
    save_prompt(tmp_path / "p.safetensors", learner, {"model": "micro-rn-s"})
    loaded = load_prompt(tmp_path / "p.safetensors", model)
    with torch.no_grad():
        assert torch.allclose(loaded.text_features(model, tokenizer, NAMES), learner.text_features(model, tokenizer, NAMES))
    wide = PromptLearner(256, PromptConfig())
    save_prompt(tmp_path / "w.safetensors", wide)
    with pytest.raises(ValueError, match="token width 256.*128 wide"):
        load_prompt(tmp_path / "w.safetensors", model)
    with pytest.raises(ValueError, match="not a prompt file"):
        save_checkpoint(tmp_path / "x.safetensors", {"a": torch.zeros(1)}, {})
        load_prompt(tmp_path / "x.safetensors")


def test_few_shot_indices_and_zero_shots():
    labels = np.array([0, 1, 0, 2, 1, 0, 2, 2])
    idx = few_shot_indices(labels, 2, seed=0)
    assert sorted(np.bincount(labels[idx]).tolist()) == [2, 2, 2]
    assert len(few_shot_indices(labels, 5)) == len(labels)  # a class with fewer examples gives all it has
    with pytest.raises(ValueError, match="at least 1"):
        few_shot_indices(labels, 0)


@pytest.mark.slow
def test_training_reduces_the_loss_and_leaves_the_model_untouched(micro):
    model, _, tokenizer = micro
    before = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    centres = F.normalize(torch.randn(3, 128, generator=g), dim=-1)
    labels = torch.arange(3).repeat(8)
    feats = F.normalize(centres[labels] + 0.05 * torch.randn(24, 128, generator=g), dim=-1)
    with torch.no_grad():
        head = F.normalize(model.encode_text(tokenizer([f"a {n}." for n in NAMES])), dim=-1)
    scale = model.logit_scale.exp()

    def loss(learner):
        with torch.no_grad():
            return float(F.cross_entropy(scale * feats @ learner.text_features(model, tokenizer, NAMES).T, labels))

    for kind in ("coop", "contcoop"):
        cfg = PromptConfig(kind=kind, steps=60, lr=5e-3)
        untrained = PromptLearner(128, cfg)
        trained = train_prompt(model, tokenizer, NAMES, feats, labels, head, cfg, progress=False)
        assert loss(trained) < 0.5 * loss(untrained)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    with pytest.raises(ValueError, match="at least one shot"):
        train_prompt(model, tokenizer, NAMES, feats[:0], labels[:0], head, PromptConfig(steps=1), progress=False)


def test_update_study_refuses_different_widths(tmp_path):
    """A tiny open_clip config registered from tmp_path (as open_clip's own tests do): token width 64."""
    import json
    from paint_core.studies.prompt_update import update_study
    config = {"embed_dim": 32, "vision_cfg": {"image_size": 48, "layers": [1, 1, 1, 1], "width": 16, "patch_size": None},
              "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}}
    (tmp_path / "tiny-text64.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "tiny-text64.json")
    register_embedded_configs()
    torch.manual_seed(0)
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(path, open_clip.create_model("tiny-text64", pretrained=None).state_dict(), {"model": "tiny-text64"})
    with pytest.raises(ValueError, match="token width 64.*has 128"):
        update_study("tiny-text64", "micro-rn-l", ["digits"], old_pretrained=str(path), new_pretrained=None)
