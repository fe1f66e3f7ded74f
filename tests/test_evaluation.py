import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from paint_core import Interpolator, evaluate, load_model, select_alpha, sweep, zero_shot_head
from paint_core.engine.evaluation import parse_alphas


def _table(rows):
    return pd.DataFrame([{"alpha": a, "task": t, "split": s, "accuracy": acc, "n": 100} for a, t, s, acc in rows])


def test_select_alpha_on_a_hand_made_table():
    rows = []
    #            alpha: patch, sup1, sup2 (val)      score = (patch + mean(sup)) / 2
    for a, p, s1, s2 in [(0.0, 0.20, 0.90, 0.80),   # (0.20 + 0.85) / 2 = 0.525
                         (0.5, 0.70, 0.88, 0.78),   # (0.70 + 0.83) / 2 = 0.765
                         (1.0, 0.90, 0.60, 0.50)]:  # (0.90 + 0.55) / 2 = 0.725
        rows += [(a, "digits", "val", p), (a, "shapes", "val", s1), (a, "colours", "val", s2)]
        rows += [(a, "digits", "test", 1.0 - a)]  # test must never influence the choice
    choice = select_alpha(_table(rows), "digits", ["shapes", "colours"])
    assert choice["alpha"] == 0.5
    assert choice["score"] == pytest.approx(0.765)
    assert choice["supported_accuracy"] == pytest.approx(0.83)
    with pytest.raises(ValueError, match="never on the test split"):
        select_alpha(_table(rows), "digits", ["shapes"], split="test")
    with pytest.raises(ValueError, match="no val rows for: cars"):
        select_alpha(_table(rows), "cars", ["shapes"])


def test_select_alpha_ties_go_to_smaller_alpha():
    rows = [(a, "p", "val", 0.5) for a in (0.0, 0.3, 0.6)] + [(a, "s", "val", 0.5) for a in (0.0, 0.3, 0.6)]
    assert select_alpha(_table(rows), "p", ["s"])["alpha"] == 0.0


def test_parse_alphas():
    assert parse_alphas("0:1:0.25") == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert parse_alphas("0,0.5") == [0.0, 0.5]
    with pytest.raises(ValueError):
        parse_alphas("0:1:0")


def test_zero_shot_head_matches_independent_computation(random_micro_file):
    model, _, tok = load_model("micro-rn-s", random_micro_file)
    head = zero_shot_head(model, tok, ["circle", "square"], ["a {}.", "the {}"])
    assert head.shape == (2, 128)
    torch.testing.assert_close(head.norm(dim=-1), torch.ones(2))
    with torch.no_grad():
        e = F.normalize(model.encode_text(tok(["a square.", "the square"])), dim=-1).mean(0)
    torch.testing.assert_close(head[1], F.normalize(e, dim=0))
    with pytest.raises(ValueError, match="empty"):
        zero_shot_head(model, tok, [], ["a {}."])
    with pytest.raises(ValueError, match="duplicate class names: cat"):
        zero_shot_head(model, tok, ["cat", "dog", "cat"], ["a {}."])


def test_evaluate_equals_manual_argmax(random_micro_file):
    model, _, tok = load_model("micro-rn-s", random_micro_file)
    head = zero_shot_head(model, tok, ["a", "b", "c"], ["{}"])
    x = torch.randn(37, 3, 48, 48)
    with torch.no_grad():
        pred = (F.normalize(model.encode_image(x), dim=-1) @ head.T).argmax(-1)
    y = torch.arange(37) % 3
    assert evaluate(model, head, TensorDataset(x, y), batch_size=8) == pytest.approx((pred == y).float().mean().item())


def test_sweep_resumes_after_being_killed(two_states, random_micro_file):
    zs, ft = two_states
    model, _, tok = load_model("micro-rn-s", random_micro_file)
    head = zero_shot_head(model, tok, ["a", "b"], ["{}"])
    ds = TensorDataset(torch.randn(20, 3, 48, 48), torch.arange(20) % 2)
    evals = {("t", "val"): (ds, head)}
    interp = Interpolator(model, zs, ft)
    full = sweep(interp, evals, [0, 0.5, 1])
    saved = []

    def kill_after_two(table):
        saved.append(table.copy())
        if len(saved) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep(interp, evals, [0, 0.5, 1], on_alpha=kill_after_two)
    assert list(saved[-1]["alpha"]) == [0.0, 0.5]
    calls = []
    resumed = sweep(interp, evals, [0, 0.5, 1], done=saved[-1], on_alpha=lambda t: calls.append(len(t)))
    assert calls == [3]  # only alpha 1 was computed
    pd.testing.assert_frame_equal(resumed, full)
