"""The one training loop: its contract, and fine-tuning through it equal to the loop written out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from paint_core.engine.finetune import FinetuneConfig, finetune_visual, set_batchnorm_eval
from paint_core.engine.training import Progress, cosine_lr, epochs, param_groups, train_loop


def test_train_loop_contract():
    torch.manual_seed(0)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5])
    w = torch.zeros(3, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.0)
    lrs, after, reports = [], [], []

    def lr_at(step: int) -> float:
        lrs.append(step)
        return 0.1

    losses = train_loop(epochs([(x, y)]), lambda b: ((b[0] @ w - b[1]) ** 2).mean(), opt, 30, lr_at,
                        after_step=lambda s, l: after.append(s), on_progress=reports.append, progress=False)
    assert lrs == list(range(30)) and after == list(range(30)) and len(losses) == 30
    assert reports[-1] == Progress(30, 30, "train", losses[-1]) and losses[-1] < 0.01 * losses[0]
    assert torch.allclose(w.detach(), torch.tensor([1.0, -2.0, 0.5]), atol=0.05)

    def cancel(p: Progress) -> None:
        if p.done == 3:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train_loop(epochs([(x, y)]), lambda b: ((b[0] @ w - b[1]) ** 2).mean(), opt, 30, lambda s: 0.1,
                   on_progress=cancel, progress=False)


def test_cosine_without_warmup_is_the_plain_cosine():
    for step in range(50):
        assert cosine_lr(step, 50, 2e-3, warmup=0) == pytest.approx(0.5 * 2e-3 * (1 + np.cos(np.pi * step / 50)),
                                                                     rel=1e-12)
    assert cosine_lr(0, 100, 1.0, warmup=10) == pytest.approx(0.1) and cosine_lr(100, 100, 1.0, 10) == 0.0


def _finetune_by_hand(model, train_set, loss_fn, cfg: FinetuneConfig):
    """The fine-tuning loop as it was written before train_loop existed (an independent reference)."""
    torch.manual_seed(cfg.seed)
    for p in model.parameters():
        p.requires_grad_(False)
    visual = list(model.visual.parameters())
    for p in visual:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay, only=visual), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, generator=gen, drop_last=True)
    model.eval()
    model.visual.train()
    set_batchnorm_eval(model.visual)
    step = 0
    while step < cfg.steps:
        for batch in loader:
            if step >= cfg.steps:
                break
            for g in opt.param_groups:
                g["lr"] = 0.5 * cfg.lr * (1 + math.cos(math.pi * min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)))) \
                    if step >= cfg.warmup else cfg.lr * (step + 1) / cfg.warmup
            loss = loss_fn(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(visual, cfg.grad_clip)
            opt.step()
            step += 1
    model.eval()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.slow
def test_finetune_through_the_loop_equals_the_loop_by_hand(random_micro_file):
    from paint_core.models.clip import load_model
    cfg = FinetuneConfig(steps=7, batch_size=4, warmup=2, lr=1e-3)  # 7 steps over 3 batches: crosses epochs
    g = torch.Generator().manual_seed(3)
    data = TensorDataset(torch.randn(12, 3, 48, 48, generator=g), torch.randint(0, 5, (12,), generator=g))
    head = F.normalize(torch.randn(5, 128, generator=g), dim=-1)
    states = []
    for run in (finetune_visual, _finetune_by_hand):
        model = load_model("micro-rn-s", random_micro_file)[0]
        loss_fn = (lambda m: lambda b: F.cross_entropy(F.normalize(m.encode_image(b[0]), dim=-1) @ head.T * 10, b[1]))(model)
        states.append(run(model, data, loss_fn, cfg) if run is _finetune_by_hand
                      else run(model, data, loss_fn, cfg, progress=False))
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert any(not torch.equal(states[0][k], load_model("micro-rn-s", random_micro_file)[0].state_dict()[k])
               for k in states[0] if k.startswith("visual."))


def _entries(root) -> list[str]:
    return sorted(p.name for p in root.iterdir())


@pytest.mark.slow
def test_a_diverging_finetune_is_an_error_and_leaves_no_run(tmp_path, capsys):
    """Issue 25: lr 1e6 made a run of 99.8% NaN weights that exited 0; now the loss is read as it goes."""
    from paint_core.cli import main
    out = tmp_path / "X"
    args = ["finetune", "--model", "micro-rn-s", "--task", "digits", "--warmup", "0", "--batch-size", "8",
            "--out", str(out)]
    assert main([*args, "--steps", "3", "--lr", "1e6"]) == 1
    err = capsys.readouterr().err  # (after the progress bar's lines)
    assert err.splitlines()[-1] == ("error: training diverged: the loss is nan at step 2 of 3 (learning rate "
                                    "7.5e+05); lower the learning rate") and "Traceback" not in err
    assert _entries(tmp_path) == []  # no run, no hidden partial folder
    # one step: the loss before it was fine, the weights after it exploded (finite, ~1e6 times their size)
    assert main([*args, "--steps", "1", "--lr", "1e6"]) == 1
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("error: fine-tuning diverged: the weights' norm grew ")
    assert float(err.split("grew ")[1].split("-fold")[0]) > 1e5
    assert err.endswith("-fold (more than 100); lower the learning rate")
    assert _entries(tmp_path) == []
    for lr in ("inf", "nan", "-inf"):
        assert main([*args, "--steps", "3", f"--lr={lr}"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: fine-tuning needs steps >= 1, batch size >= 1, a finite lr > 0, warmup >= 0, "
                              "a finite weight decay >= 0 and a finite grad clip > 0; got FinetuneConfig(") \
            and f"lr={lr}," in err and err.count("\n") == 1
    assert _entries(tmp_path) == []


def test_weights_with_nan_are_named():
    from paint_core.engine.training import TrainingDiverged, check_not_diverged
    good = {"visual.a": torch.ones(3), "visual.n": torch.tensor([1, 2])}
    check_not_diverged(good, torch.tensor(math.sqrt(3.0)), "fine-tuning")  # unchanged weights: fine
    with pytest.raises(TrainingDiverged) as e:
        check_not_diverged({**good, "visual.b": torch.tensor([1.0, float("nan")])}, torch.tensor(1.0), "fine-tuning")
    assert str(e.value) == ("fine-tuning diverged: 1 of 2 weight tensors hold NaN or inf (first: 'visual.b'); "
                            "lower the learning rate")
