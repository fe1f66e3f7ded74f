"""The relatives' mechanics against independent computations on small tensors and a random micro CLIP."""
from __future__ import annotations

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from paint_core import TaskVector, load_model, merge
from paint_core.studies.arithmetic import edit_sweep, merged_vector
from paint_core.engine.evaluation import evaluate
from paint_core.core.selection import choose_addition, choose_negation, select_alpha
from paint_core.core.interpolation import interpolate
from paint_core.studies.multitask import BalancedTasks, multitask_loss
from paint_core.core.state_dicts import average_states
from paint_core.studies.transfer import transfer_matrix
from paint_core.studies.wiseft import all_logits, ensemble_sweep, output_ensemble, robustness_summary


def test_output_ensemble_is_the_mix_of_two_logits():
    a, b = torch.tensor([[2.0, -1.0, 0.5]]), torch.tensor([[0.0, 3.0, 1.0]])
    assert torch.allclose(output_ensemble(a, b, 0.25), torch.tensor([[1.5, 0.0, 0.625]]))
    assert torch.equal(output_ensemble(a, b, 0.0), a) and torch.equal(output_ensemble(a, b, 1.0), b)
    with pytest.raises(ValueError, match="alpha"):
        output_ensemble(a, b, 1.5)
    with pytest.raises(ValueError, match="shapes differ"):
        output_ensemble(a, b[:, :2], 0.5)


def test_average_states_and_integer_buffers():
    s1 = {"w": torch.tensor([1.0, 3.0]), "n": torch.tensor(5)}
    s2 = {"w": torch.tensor([3.0, 5.0]), "n": torch.tensor(5)}
    avg = average_states([s1, s2])
    assert torch.equal(avg["w"], torch.tensor([2.0, 4.0])) and int(avg["n"]) == 5
    with pytest.raises(ValueError, match="differs"):
        average_states([s1, {**s2, "n": torch.tensor(6)}])


def test_balanced_tasks_round_robin():
    small = TensorDataset(torch.zeros(2, 1), torch.tensor([0, 1]))
    big = TensorDataset(torch.ones(5, 1), torch.arange(5))
    ds = BalancedTasks([small, big])
    assert len(ds) == 10
    tags = [ds[i][2] for i in range(len(ds))]
    assert tags == [0, 1] * 5  # each task equally often, the small one repeated
    assert [int(ds[i][1]) for i in range(1, 10, 2)] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="at least one"):
        BalancedTasks([])


def test_multitask_loss_equals_per_task_cross_entropy(random_micro_file):
    model, _, _ = load_model("micro-rn-s", random_micro_file)
    g = torch.Generator().manual_seed(0)
    heads = [F.normalize(torch.randn(3, 128, generator=g), dim=-1), F.normalize(torch.randn(5, 128, generator=g), dim=-1)]
    x = torch.randn(4, 3, 48, 48, generator=g)
    y, t = torch.tensor([2, 4, 0, 1]), torch.tensor([0, 1, 0, 1])
    with torch.no_grad():
        got = multitask_loss(model, heads)([x, y, t])
        feats = F.normalize(model.encode_image(x), dim=-1) * model.logit_scale.exp()
        expected = sum(F.cross_entropy(feats[i:i + 1] @ heads[int(t[i])].T, y[i:i + 1]) for i in range(4)) / 4
    assert torch.allclose(got, expected, atol=1e-5)


def test_select_alpha_with_several_patch_tasks():
    rows = [(a, t, acc) for a, accs in {0.0: (0.2, 0.4, 1.0), 0.5: (0.8, 0.6, 0.9), 1.0: (1.0, 0.9, 0.5)}.items()
            for t, acc in zip(("p1", "p2", "s"), accs)]
    df = pd.DataFrame([{"alpha": a, "task": t, "split": "val", "accuracy": acc, "n": 10} for a, t, acc in rows])
    # scores: 0.0 -> (0.3 + 1)/2 = 0.65, 0.5 -> (0.7 + 0.9)/2 = 0.8, 1.0 -> (0.95 + 0.5)/2 = 0.725
    choice = select_alpha(df, ["p1", "p2"], ["s"])
    assert choice["alpha"] == 0.5 and choice["patch_accuracy"] == pytest.approx(0.7)


def _lambda_table(values: dict[float, dict[str, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"lambda": l, "task": t, "split": "val", "accuracy": a, "n": 10}
                         for l, accs in values.items() for t, a in accs.items()])


def test_choose_negation_keeps_control_and_choose_addition_normalizes():
    table = _lambda_table({0.0: {"target": 0.6, "ctrl": 1.0}, 0.5: {"target": 0.3, "ctrl": 0.97},
                           1.0: {"target": 0.1, "ctrl": 0.90}})
    assert choose_negation(table, "target", ["ctrl"]) == 0.5  # 1.0 would drop control below 95%
    add = _lambda_table({0.0: {"a": 0.5, "b": 0.4}, 0.5: {"a": 0.9, "b": 0.5}, 1.0: {"a": 0.6, "b": 0.8}})
    # normalized by fine-tuned a=1.0, b=0.5: 0.5 -> (0.9 + 1.0)/2 = 0.95; 1.0 -> (0.6 + 1.6)/2 = 1.1
    assert choose_addition(add, ["a", "b"], {"a": 1.0, "b": 0.5}) == 1.0
    with pytest.raises(ValueError, match="never on the test split"):
        choose_addition(add, ["a"], {"a": 1.0}, split="test")


def test_merged_vector_scales_each_vector_before_merging():
    t1, t2 = TaskVector(vector={"w": torch.tensor([1.0, -2.0])}), TaskVector(vector={"w": torch.tensor([3.0, 4.0])})
    got = merged_vector([t1, t2], "sum", [2.0, -0.5])
    assert torch.equal(got.vector["w"], torch.tensor([0.5, -6.0]))
    with pytest.raises(ValueError, match="2 coefficients for 1"):
        merged_vector([t1], "sum", [1.0, 2.0])


def test_task_vectors_of_different_bases_are_refused():
    t1 = TaskVector(vector={"w": torch.zeros(2)}, base="micro-rn-l@aaaa")
    t2 = TaskVector(vector={"w": torch.zeros(2)}, base="micro-rn-s@bbbb")
    with pytest.raises(ValueError, match="different base models: micro-rn-l@aaaa vs micro-rn-s@bbbb"):
        merge([t1, t2], "sum")
    t3 = TaskVector(vector={"w": torch.zeros(3)})
    with pytest.raises(ValueError, match="shape"):
        merge([t1, t3], "ties", k=50)


def test_edit_sweep_equals_apply_to(two_states, random_micro_file):
    zs, ft = two_states
    model, _, _ = load_model("micro-rn-s", random_micro_file)
    tau = TaskVector(zs, ft)
    g = torch.Generator().manual_seed(2)
    ds = TensorDataset(torch.randn(12, 3, 48, 48, generator=g), torch.randint(0, 4, (12,), generator=g))
    head = F.normalize(torch.randn(4, 128, generator=g), dim=-1)
    table = edit_sweep(model, zs, -tau, {("t", "val"): (ds, head)}, [0.0, 1.5])
    model.load_state_dict((-tau).apply_to(zs, 1.5))
    assert table[table["lambda"] == 1.5]["accuracy"].item() == evaluate(model, head, ds)


def test_weight_and_output_ensembles_against_direct_computation(two_states, random_micro_file):
    zs, ft = two_states
    model, _, _ = load_model("micro-rn-s", random_micro_file)
    g = torch.Generator().manual_seed(3)
    ds = TensorDataset(torch.randn(16, 3, 48, 48, generator=g), torch.randint(0, 3, (16,), generator=g))
    head = F.normalize(torch.randn(3, 128, generator=g), dim=-1)
    evals = {("id", "test"): (ds, head), ("shift", "test"): (ds, head)}
    table = ensemble_sweep(model, zs, ft, evals, [0.0, 0.3, 1.0])
    model.load_state_dict(zs)
    lz, y = all_logits(model, head, ds)
    model.load_state_dict(ft)
    lf, _ = all_logits(model, head, ds)
    out = table[(table.ensemble == "output") & (table.alpha == 0.3) & (table.task == "id")]["accuracy"].item()
    assert out == pytest.approx(float(((0.7 * lz + 0.3 * lf).argmax(-1) == y).float().mean()))
    model.load_state_dict(interpolate(zs, ft, 0.3))
    weight = table[(table.ensemble == "weight") & (table.alpha == 0.3) & (table.task == "id")]["accuracy"].item()
    assert weight == evaluate(model, head, ds)
    summary = robustness_summary(table, "id", "shift")
    assert set(summary) == {"weight", "output"}


def test_robustness_summary_line():
    rows = [{"ensemble": "weight", "alpha": a, "task": t, "split": "test", "accuracy": acc, "n": 10}
            for a, (i, s) in {0.0: (0.5, 0.4), 0.5: (0.8, 0.7), 1.0: (1.0, 0.6)}.items()
            for t, acc in (("id", i), ("sh", s))]
    s = robustness_summary(pd.DataFrame(rows), "id", "sh")["weight"]
    # the line from (0.5, 0.4) to (1.0, 0.6) at x = 0.8 is 0.52; the point is at 0.7 -> 0.18 above
    assert s["max_effective_robustness"] == pytest.approx(0.18)
    assert s["beats_both_endpoints_on_shift"] and s["best_shift_alpha"] == 0.5


def test_transfer_matrix_change_is_patched_minus_zero_shot(two_states, random_micro_file):
    zs, ft = two_states
    model, _, _ = load_model("micro-rn-s", random_micro_file)
    g = torch.Generator().manual_seed(4)
    ds = TensorDataset(torch.randn(10, 3, 48, 48, generator=g), torch.randint(0, 3, (10,), generator=g))
    head = F.normalize(torch.randn(3, 128, generator=g), dim=-1)
    table = transfer_matrix(model, zs, {"A": (ft, 0.5)}, {("B", "test"): (ds, head)})
    model.load_state_dict(zs)
    z = evaluate(model, head, ds)
    model.load_state_dict(interpolate(zs, ft, 0.5))
    p = evaluate(model, head, ds)
    row = table.iloc[0]
    assert (row.zero_shot, row.patched) == (z, p) and row.change == pytest.approx(p - z)
