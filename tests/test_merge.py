import pytest
import torch

from paint_core import TaskVector, merge


def _tv(**arrays):
    return TaskVector(vector={k: torch.tensor(v, dtype=torch.float32) for k, v in arrays.items()})


def test_sum_and_mean():
    a, b = _tv(w=[1.0, 2.0]), _tv(w=[3.0, -2.0])
    assert merge([a, b], "sum").vector["w"].tolist() == [4.0, 0.0]
    assert merge([a, b], "mean").vector["w"].tolist() == [2.0, 0.0]


def test_ties_by_hand():
    # k=50: each vector keeps its 2 largest magnitudes out of 4
    a = _tv(w=[4.0, -3.0, 0.5, 0.1])   # keeps 4, -3
    b = _tv(w=[2.0, 5.0, -0.2, 0.3])   # keeps 2, 5
    c = _tv(w=[-1.0, 0.1, -6.0, 0.2])  # keeps -6, -1
    out = merge([a, b, c], "ties", k=50).vector["w"]
    # entry 0: trimmed 4, 2, -1 -> sign +, agreeing 4 and 2 -> mean 3
    # entry 1: trimmed -3, 5, 0 -> sign +, agreeing 5 -> 5
    # entry 2: trimmed 0, 0, -6 -> sign -, agreeing -6 -> -6
    # entry 3: all trimmed -> 0
    assert out.tolist() == [3.0, 5.0, -6.0, 0.0]


def test_dare_drops_and_rescales_reproducibly():
    tv = _tv(w=[1.0] * 10_000)
    out = merge([tv], "dare", p=0.75, seed=3).vector["w"]
    kept = out != 0
    assert torch.all(out[kept] == 4.0)
    assert abs(kept.float().mean().item() - 0.25) < 0.02
    assert out.mean().item() == pytest.approx(1.0, abs=0.08)  # unbiased in expectation
    assert torch.equal(out, merge([tv], "dare", p=0.75, seed=3).vector["w"])


def test_merge_errors():
    with pytest.raises(ValueError, match="Choose from: sum, mean, ties, dare"):
        merge([_tv(w=[1.0])], "average")
    with pytest.raises(ValueError, match="at least one"):
        merge([], "sum")
    with pytest.raises(ValueError, match="'v'"):
        merge([_tv(w=[1.0]), _tv(v=[1.0])], "sum")
    with pytest.raises(ValueError, match="drop rate"):
        merge([_tv(w=[1.0])], "dare", p=1.0)
