"""The typographic inspector's engine (issue 16): each figure's numbers recomputed another way."""
from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F

from paint_core.core.interpolation import interpolate
from paint_core.data import world
from paint_core.data.embedded import SHAPE_TEMPLATES
from paint_core.engine.attack import attention_rollout, grad_cam, margin_along_alpha, saliency, word_sweep
from paint_core.engine.evaluation import predict, zero_shot_head
from paint_core.models.clip import load_model


@pytest.fixture(scope="module")
def micro():
    model, preprocess, tokenizer = load_model("micro-rn-s")
    head = zero_shot_head(model, tokenizer, world.SHAPES, SHAPE_TEMPLATES)
    image = world.render_object(np.random.default_rng(3), "circle", "red", radius=(0.3, 0.34))
    return model, preprocess, head, image


def test_word_sweep_cells_are_the_predictions_of_the_written_images(micro):
    model, preprocess, head, image = micro
    table = word_sweep(model, head, preprocess, image, world.SHAPES, 0, ["star", "cat"], ("top", "center"), (0.2, 0.3))
    assert len(table) == 2 * 2 * 2
    for row in table.itertuples():
        p = predict(model, head, preprocess(world.write_word(image, row.word, row.position, row.size)).unsqueeze(0))[0]
        assert row.predicted == world.SHAPES[int(p.argmax())]
        assert row.p_true == pytest.approx(float(p[0]), abs=1e-6)
        assert row.p_predicted == pytest.approx(float(p.max()), abs=1e-6)
    with pytest.raises(ValueError, match="at least one word"):
        word_sweep(model, head, preprocess, image, world.SHAPES, 0, [])


def test_margin_along_alpha_equals_models_built_at_each_alpha(two_states, random_micro_file):
    zs, ft = two_states
    model, preprocess, tokenizer = load_model("micro-rn-s", random_micro_file)
    head = zero_shot_head(model, tokenizer, world.SHAPES, SHAPE_TEMPLATES)
    clean = world.render_object(np.random.default_rng(1), "square", "blue", radius=(0.3, 0.34))
    images = {"clean": preprocess(clean), "attacked": preprocess(world.write_word(clean, "star", "center", 0.3))}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    table = margin_along_alpha(model, zs, ft, head, images, 1, 3, [0.0, 0.4, 1.0])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the model is not touched
    ref, _, _ = load_model("micro-rn-s", random_micro_file)
    for alpha in (0.0, 0.4, 1.0):
        ref.load_state_dict(interpolate(zs, ft, alpha))
        with torch.no_grad():
            z = ref.logit_scale.exp() * F.normalize(ref.encode_image(torch.stack(list(images.values()))), dim=-1) @ head.T
        for i, name in enumerate(images):
            row = table[(table["image"] == name) & (table["alpha"] == alpha)].iloc[0]
            assert row["margin"] == pytest.approx(float(z[i, 1] - z[i, 3]), abs=1e-4)
            assert row["p_true"] == pytest.approx(float(z[i].softmax(-1)[1]), abs=1e-6)
            assert row["predicted"] == int(z[i].argmax())


def test_grad_cam_equals_a_hand_written_grad_cam(micro):
    """The hooks-based map against one computed by running the tower's stages by hand."""
    model, preprocess, head, image = micro
    x = preprocess(world.write_word(image, "star", "top", 0.25))
    cam = grad_cam(model, head, x, 3, layer="layer4")
    v = model.visual
    act = v.layer4(v.layer3(v.layer2(v.layer1(v.stem(x.unsqueeze(0)))))).detach().requires_grad_(True)
    feats = F.normalize(v.attnpool(act), dim=-1)
    score = (model.logit_scale.exp() * feats @ head.T)[0, 3]
    (g,) = torch.autograd.grad(score, act)
    ref = F.relu((g.mean((2, 3), keepdim=True) * act).sum(1, keepdim=True)).detach()
    ref = F.interpolate(ref, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    ref = ref / ref.max()
    assert cam.shape == x.shape[-2:] and torch.allclose(cam, ref, atol=1e-5)
    assert float(cam.max()) == pytest.approx(1.0)
    assert all(p.grad is None for p in model.parameters())  # no gradient left on the weights
    # by default the deepest stage with a map of at least 6 x 6: on the 48 px tower, layer2 (layer4 is 2 x 2)
    act2 = v.layer2(v.layer1(v.stem(x.unsqueeze(0)))).detach().requires_grad_(True)
    feats2 = F.normalize(v.attnpool(v.layer4(v.layer3(act2))), dim=-1)
    (g2,) = torch.autograd.grad((model.logit_scale.exp() * feats2 @ head.T)[0, 3], act2)
    assert min(act2.shape[-2:]) >= 6 and min(v.layer3(act2).shape[-2:]) < 6
    ref2 = F.relu((g2.mean((2, 3), keepdim=True) * act2).sum(1, keepdim=True)).detach()
    ref2 = F.interpolate(ref2, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    assert torch.allclose(grad_cam(model, head, x, 3), ref2 / ref2.max(), atol=1e-5)
    with pytest.raises(ValueError, match="ResNet"):
        attention_rollout(model, x)


def test_attention_rollout_of_a_vit_is_the_product_of_its_attention_maps():
    """On a 2-block ViT, the rollout equals ((A2 + I)/rows) @ ((A1 + I)/rows), A from each block's own
    attention module, class token's row over the 4 x 4 patches."""
    cfg = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
           "text_cfg": {"context_length": 16, "vocab_size": 100, "width": 32, "heads": 2, "layers": 1}}
    torch.manual_seed(0)
    model = open_clip.model.CLIP(**cfg).eval()
    x = torch.randn(3, 32, 32)
    got = attention_rollout(model, x)
    v = model.visual
    tokens = []
    hook = v.transformer.resblocks[0].register_forward_pre_hook(lambda m, i: tokens.append(i[0]))
    with torch.no_grad():
        v(x.unsqueeze(0))
    hook.remove()
    h = tokens[0]
    rollout = torch.eye(h.shape[1])
    with torch.no_grad():
        for block in v.transformer.resblocks:
            y = block.ln_1(h)
            _, a = block.attn(y, y, y, need_weights=True)
            a = a[0] + torch.eye(a.shape[-1])
            rollout = (a / a.sum(-1, keepdim=True)) @ rollout
            h = block(h)
    grid = rollout[0, 1:].reshape(1, 1, 4, 4)
    ref = F.interpolate(grid, size=(32, 32), mode="bilinear", align_corners=False)[0, 0]
    assert torch.allclose(got, ref / ref.max(), atol=1e-5)
    with pytest.raises(ValueError, match="ViT"):
        grad_cam(model, torch.randn(2, 32), x, 0)
    assert torch.equal(saliency(model, torch.randn(2, 32), x, 0), got)


def test_batch_attack_agrees_with_attack_scores_and_predict(micro):
    from paint_core.data.tasks import get_task
    from paint_core.engine.attack import batch_attack
    from paint_core.engine.evaluation import attack_scores, materialize
    model, preprocess, head, _ = micro
    task = get_task("typographic")
    data = materialize(task.split("test", preprocess), 60)
    written = task.written_class("test")[:60]
    summary, per_image = batch_attack({"a": model, "b": model}, head, data, written)
    ref = attack_scores(model, head, data, written)
    for row in summary.itertuples():
        assert row.accuracy == ref["accuracy"] and row.attack_success == ref["attack_success"] and row.n == 60
    p = predict(model, head, data.tensors[0])
    assert np.allclose(per_image["a p_true"], p[torch.arange(60), data.tensors[1]].numpy(), atol=1e-6)
    assert np.allclose(per_image["a p_written"], p[torch.arange(60), torch.as_tensor(written)].numpy(), atol=1e-6)
    assert (per_image["a predicted"] == p.argmax(-1).numpy()).all()


def test_embedded_typographic_task_knows_the_word_written_on_each_image(monkeypatch):
    """written_class replays the draw; checked against the word actually handed to the renderer."""
    from paint_core.data import tasks as tasks_mod
    seen = []
    real = world.render_object_with_word
    monkeypatch.setattr(world, "render_object_with_word",
                        lambda rng, shape, colour, word, *a, **k: seen.append(word) or real(rng, shape, colour, word, *a, **k))
    task = tasks_mod.get_task("typographic")
    ds = task.split("val")
    labels = [ds[i][1] for i in range(40)]
    written = task.written_class("val")[:40]
    assert [world.SHAPES[i] for i in written] == seen
    assert all(w != y for w, y in zip(written, labels))
