import torch

from paint_core import Run, evaluate, interpolate, load_model
from paint_core.evaluation import zero_shot_head
from paint_core.live import EvalSet, PatchSession
from torch.utils.data import TensorDataset


def test_patch_session_is_private_and_remembers_alphas(two_states, random_micro_file, monkeypatch):
    zs, ft = two_states
    model, preprocess, tok = load_model("micro-rn-s", random_micro_file)
    run = Run(None, {"task": "t"}, model, preprocess, tok, zs, ft)
    head = zero_shot_head(model, tok, ["a", "b", "c"], ["{}"])
    images, labels = torch.randn(30, 3, 48, 48), torch.arange(30) % 3
    session = PatchSession(run, {"t": EvalSet("t", ("a", "b", "c"), images, labels, head)})
    session.set_alpha(0.6)
    ref, _, _ = load_model("micro-rn-s", random_micro_file)
    ref.load_state_dict(interpolate(zs, ft, 0.6))
    assert session.accuracies()["t"] == evaluate(ref, head, TensorDataset(images, labels))
    assert all(torch.equal(model.state_dict()[k], zs[k]) for k in zs)  # the shared run's model is untouched
    calls = []
    monkeypatch.setattr("paint_core.live.predict", lambda *a, **k: calls.append(1) or torch.zeros(30, 3))
    first = session.probabilities()
    session.set_alpha(0.2)
    session.probabilities()
    session.set_alpha(0.6)
    assert session.probabilities() is first and len(calls) == 1  # 0.6 was remembered, 0.2 computed once
