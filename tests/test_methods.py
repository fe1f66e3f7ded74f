"""The one registry of methods (paint_core/core/methods.py): every declared method and parameter reaches the CLI,
the study's inputs and the Task arithmetic page; a toy method registered here needs no other edit."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import paint_core.studies.relatives as relatives
from conftest import coefficient_explorer, live_coefficients
from paint_core import evaluate, load_run
from paint_core.cli import build_parser, main
from paint_core.cli.relatives import merges_from
from paint_core.core.methods import MERGE_METHODS, Method, Param, merge, method_inputs, method_label
from paint_core.core.task_vectors import TaskVector
from paint_core.data.tasks import get_task
from paint_core.engine.evaluation import materialize, zero_shot_head
from paint_core.io.results import entry_is_current
from paint_core.studies.multitask_methods import MULTITASK_METHODS
from paint_core.studies.arithmetic import merged_vector
from paint_core.studies.merge_data import RunsData
from paint_core.models.run import run_task_vector

ROOT = Path(__file__).resolve().parent.parent
CACHED = ROOT / "cached_results"
RUNS = [CACHED / "micro-rn-s" / t for t in ("digits", "counting")]  # shipped runs, only read
PARAMS = [(m.name, p) for m in MERGE_METHODS.values() for p in m.params]
CHEAP = {"n": 8, "steps": 2}  # the merges that learn from data, on 8 images and 2 steps: the same code, in seconds


def _cheap(m: Method, params: dict | None = None) -> dict:
    """``params`` with the cheap statistics of CHEAP for a method that declares them (the others: unchanged)."""
    declared = {p.name for p in m.params}
    return {**{k: v for k, v in CHEAP.items() if k in declared and m.learns}, **(params or {})}


def _other(p: Param) -> float:
    """A valid value of ``p`` other than its default."""
    for v in (p.default + p.step, p.default - p.step, (p.low or 0) + p.step):
        try:
            if p.check("x", v) != p.default:
                return p.check("x", v)
        except ValueError:
            continue
    raise AssertionError(f"no other value for {p.name}")


def _scaled(task_vectors: list[TaskVector], factor: float) -> TaskVector:
    return sum(task_vectors[1:], task_vectors[0]) * factor


@pytest.fixture()
def toy_method():
    """A method registered by one declaration plus its function, removed afterwards."""
    toy = Method("scaled", _scaled, "the sum times a factor",
                 (Param("factor", float, 1.0, "the factor of the sum", low=0, high=2, step=0.5),))
    MERGE_METHODS[toy.name] = toy
    yield toy
    del MERGE_METHODS[toy.name]
    assert "scaled" not in MERGE_METHODS


def test_the_reproduced_merges_are_the_shipped_ones():
    """The registry's defaults (and DARE p=0.5) give exactly the inputs the shipped results were computed from,
    so `reproduce` reuses every shipped number; DARE's default p is the 0.9 of the shipped "dare p=0.9"."""
    assert MERGE_METHODS["dare"].params[0].default == 0.9
    for model in ("micro-rn-s", "micro-rn-l"):
        doc = json.loads((CACHED / model / "relatives" / "arithmetic.json").read_text())
        addition = doc["results"]["addition"]
        assert relatives.default_merges() == {name: e["inputs"] for name, e in addition.items()}
        assert all(entry_is_current(addition[n], spec) for n, spec in relatives.default_merges().items())
        multitask = json.loads((CACHED / model / "relatives" / "multitask.json").read_text())
        assert list(multitask["results"]["methods"]) == list(MULTITASK_METHODS)


def test_registry_declarations_are_consistent():
    by_name: dict[str, type] = {}
    for m in MERGE_METHODS.values():
        for p in m.params:
            assert p.check(m.name, p.default) == p.default  # every default lies in its range
            assert by_name.setdefault(p.name, p.type) is p.type  # a shared CLI option has one type
    assert method_label(MERGE_METHODS["dare"], {"p": 0.5, "seed": 3}) == "dare p=0.5"
    assert method_inputs(MERGE_METHODS["dare"], {"p": 0.5}) == {"method": "dare", "p": 0.5, "seed": 0}
    assert method_inputs(MERGE_METHODS["sum"], {}) == {}


def test_bad_parameters_are_refused_with_one_clear_line():
    tv = TaskVector(vector={"w": torch.tensor([1.0, -2.0])})
    cases = [({"method": "ties", "k": 0}, "ties: k is the percent of entries kept, in (0, 100]; got 0"),
             ({"method": "dare", "p": 1.0}, "dare: p is the drop rate, in [0, 1); got 1.0"),
             ({"method": "dare", "seed": 1.5}, "dare: seed is the random seed of the drops, an integer in [0, inf); "
                                               "got 1.5"),
             ({"method": "ties", "q": 1}, "Unknown parameter of ties 'q'. Choose from: k.")]
    for params, message in cases:
        with pytest.raises(ValueError) as e:
            merge([tv], **params)
        assert str(e.value) == message


@pytest.mark.parametrize("method,param", PARAMS, ids=[f"{m}-{p.name}" for m, p in PARAMS])
@pytest.mark.slow
def test_changing_any_declared_parameter_changes_the_inputs_and_recomputes(method, param, tmp_path, monkeypatch):
    m = MERGE_METHODS[method]
    value = _other(param)
    assert method_inputs(m, {param.name: value}) != method_inputs(m, {})
    assert method_inputs(m, {param.name: value})[param.name] == value
    base = _cheap(m)
    if param.name in base:  # a cheap value, and another cheap one
        value = param.check(method, base[param.name] + param.step)
    calls = []
    real = relatives.merged_vector
    monkeypatch.setattr(relatives, "merged_vector", lambda *a, **k: calls.append(k) or real(*a, **k))
    out = tmp_path / "a.json"

    def study(params: dict) -> dict:
        return relatives.arithmetic_study(RUNS, ["shapes"], out, merges={method: {"method": method, **params}},
                                          lambdas=[0.0, 1.0], max_eval=8)["results"]["addition"][method]

    first = study(base)
    study(base)  # equal inputs: reused
    changed = study({**base, param.name: value})
    assert len(calls) == 2 and calls[1][param.name] == value  # computed for the default, then for the new value
    assert first["inputs"] == method_inputs(m, base)
    assert changed["inputs"] == method_inputs(m, {**base, param.name: value})


@pytest.mark.slow
@pytest.mark.parametrize("method", list(MERGE_METHODS))
def test_every_method_runs_through_the_cli_and_the_study(method, tmp_path, capsys):
    m = MERGE_METHODS[method]
    out = tmp_path / "a.json"
    given = _cheap(m)
    assert main(["arithmetic", "--runs", ",".join(map(str, RUNS)), "--supported", "shapes", "--merges", method,
                 "--out", str(out), "--max-eval", "8", *(f"--{k}={v}" for k, v in given.items())]) == 0
    label = method_label(m, given)
    entry = json.loads(out.read_text())["results"]["addition"][label]
    assert entry["inputs"] == method_inputs(m, given) and f"add {label}: lambda" in capsys.readouterr().out
    assert m.scaled or entry["lambda"] == 1.0  # a method that learns its own scale is taken as it is
    runs = [load_run(p) for p in RUNS]  # the chosen lambda's test accuracy, recomputed from merge() here
    model, task = runs[0].model, get_task("digits")
    tau = merge([run_task_vector(r) for r in runs], method, RunsData(runs), **given)
    model.load_state_dict(tau.apply_to(runs[0].theta_zs, entry["lambda"]))
    head = zero_shot_head(model, runs[0].tokenizer, task.classnames, task.templates)
    assert evaluate(model, head, materialize(task.split("test", runs[0].preprocess), 8)) == entry["test"]["digits"]


def test_a_registered_method_reaches_the_cli_and_the_study_inputs(toy_method):
    args = build_parser().parse_args(["arithmetic", "--runs", "r", "--supported", "shapes", "--out", "o.json",
                                      "--merges", "sum,scaled", "--factor", "0.5"])
    assert args.factor == 0.5 and "scaled" in args.merges.split(",")
    assert merges_from(args) == {"sum": {}, "scaled factor=0.5": {"method": "scaled", "factor": 0.5}}
    help_text = build_parser()._subparsers._group_actions[0].choices["arithmetic"].format_help()
    assert "scaled: the sum times a factor" in help_text and "--factor" in help_text
    assert relatives.default_merges()["scaled factor=1"] == {"method": "scaled", "factor": 1.0}
    assert main(["arithmetic", "--runs", "r", "--supported", "shapes", "--out", "/tmp/never.json",
                 "--merges", "scaled", "--factor", "3"]) == 1  # its declared range is checked like any other


@pytest.mark.slow
def test_every_method_and_a_registered_one_get_their_widgets_on_the_page(toy_method):
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("app_pages/arithmetic.py").run()
    at.selectbox(key="ta_model").set_value("micro-rn-s").run()
    at.multiselect(key="ta_tasks").set_value(["digits", "counting"]).run()
    assert at.selectbox(key="ta_method").options == list(MERGE_METHODS)
    for m in MERGE_METHODS.values():
        at.selectbox(key="ta_method").set_value(m.name).run()
        assert not at.exception, (m.name, at.exception)
        for p in m.params:
            widget = at.get("slider" if p.type is float else "number_input")
            shown = {w.key: w for w in widget}[f"ta_{m.name}_{p.name}"]
            assert shown.value == p.default and shown.label == f"{p.name}: {p.help}"
    at.selectbox(key="ta_method").set_value("scaled").run()
    at.slider(key="ta_scaled_factor").set_value(0.0).run()  # a zero factor: the zero-shot model, on every task
    assert not at.exception, at.exception
    assert live_coefficients(at) and all(m["delta"] == "+0.0 pts" for m in live_coefficients(at))
    at.slider(key="ta_scaled_factor").set_value(2.0).run()
    assert any(m["delta"] != "+0.0 pts" for m in live_coefficients(at))
    at.selectbox(key="ta_method").set_value("regmean").run()  # learns from data: computed when asked
    assert live_coefficients(at) is None and any(b.key == "ta_learn" for b in at.button)
    assert coefficient_explorer(at)["learns"] and coefficient_explorer(at)["settings"] == {}
    at.number_input(key="ta_regmean_n").set_value(8).run()
    at.button(key="ta_learn").click().run()
    assert not at.exception, at.exception
    shown = {m["label"]: m["value"] for m in live_coefficients(at)}
    runs = [load_run(p) for p in RUNS]  # the page's default coefficients, 0.3 each, scale the vectors first
    tau = merged_vector([run_task_vector(r) for r in runs], "regmean", [0.3, 0.3], data=RunsData(runs), n=8)
    model, task = runs[0].model, get_task("digits")
    model.load_state_dict(tau.apply_to(runs[0].theta_zs, 1.0))
    head = zero_shot_head(model, runs[0].tokenizer, task.classnames, task.templates)
    digits = next(m for m in live_coefficients(at) if m["label"] == "digits")
    n_shown = int(digits["sample"].rsplit("n=", 1)[1].split()[0])
    expected = evaluate(model, head, materialize(task.split("test", runs[0].preprocess), n_shown))
    assert shown["digits"] == f"{100 * expected:.1f}%"


def test_regmean_layer_equals_its_closed_form_and_the_mean_for_equal_grams():
    import numpy as np
    from paint_core import regmean_layer
    g = torch.Generator().manual_seed(0)
    weights = [torch.randn(3, 4, generator=g) for _ in range(2)]
    xs = [torch.randn(10, 4, generator=g) for _ in range(2)]
    grams = [x.T @ x for x in xs]
    for alpha in (1.0, 0.5, 0.0):
        tilde = [np.where(np.eye(4, dtype=bool), G.numpy(), alpha * G.numpy()).astype(np.float64) for G in grams]
        expected = (np.linalg.inv(tilde[0] + tilde[1])
                    @ (tilde[0] @ weights[0].numpy().T + tilde[1] @ weights[1].numpy().T)).T
        got = regmean_layer(weights, grams, alpha=alpha)
        assert got.shape == (3, 4) and got.dtype == torch.float32
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)
    # the merged layer minimises sum_i |X_i W^T - X_i W_i^T|^2: its gradient there is zero
    w = regmean_layer(weights, grams).double().requires_grad_()
    loss = sum(((x.double() @ w.T - x.double() @ wi.double().T) ** 2).sum() for x, wi in zip(xs, weights))
    loss.backward()
    assert w.grad.abs().max() < 1e-4  # float32 rounding of the result; a wrong W gives gradients of order 10
    same = [grams[0]] * 3
    three = weights + [torch.randn(3, 4, generator=g)]
    torch.testing.assert_close(regmean_layer(three, same), sum(three) / 3, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError) as e:
        regmean_layer(weights, [grams[0], torch.eye(3)])
    assert str(e.value) == "regmean_layer: model 1 has weight (3, 4) and Gram (3, 3); expected (3, 4) and (4, 4)"
    with pytest.raises(ValueError, match="one Gram per weight; got 2 weights, 1 Grams"):
        regmean_layer(weights, grams[:1])
