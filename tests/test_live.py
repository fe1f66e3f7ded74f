import numpy as np
import pytest
import torch

from paint_core import Run, evaluate, interpolate, load_model
from paint_core.engine.evaluation import zero_shot_head
from paint_core.live.sessions import EvalSet, PatchSession
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
    monkeypatch.setattr("paint_core.live.sessions.predict", lambda *a, **k: calls.append(1) or torch.zeros(30, 3))
    first = session.probabilities()
    session.set_alpha(0.2)
    session.probabilities()
    session.set_alpha(0.6)
    assert session.probabilities() is first and len(calls) == 1  # 0.6 was remembered, 0.2 computed once


def test_prediction_store_is_shared_and_warm_up_matches_direct_computation(two_states, random_micro_file, monkeypatch):
    from paint_core.engine.evaluation import predict
    from paint_core.live.sessions import PredictionStore

    zs, ft = two_states
    model, preprocess, tok = load_model("micro-rn-s", random_micro_file)
    run = Run(None, {"task": "t"}, model, preprocess, tok, zs, ft)
    head = zero_shot_head(model, tok, ["a", "b", "c"], ["{}"])
    images, labels = torch.randn(20, 3, 48, 48), torch.arange(20) % 3
    sets = {"t": EvalSet("t", ("a", "b", "c"), images, labels, head)}
    store = PredictionStore()
    store.warm(run, sets, [0.0, 0.3, 1.0], start=0.3).join()
    assert store.alphas() == [0.0, 0.3, 1.0] and store.warm_seconds is not None
    ref, _, _ = load_model("micro-rn-s", random_micro_file)
    ref.load_state_dict(interpolate(zs, ft, 0.3))
    assert torch.allclose(store.get(0.3)["t"], predict(ref, head, images))
    from paint_core.live import sessions
    for thread in list(sessions._WARM_THREADS):  # earlier tests' warm-ups and prefetches must not count below
        thread.join(timeout=600)
        assert not thread.is_alive(), f"{thread.name} still running after 10 minutes"
    calls = []
    monkeypatch.setattr("paint_core.live.sessions.predict", lambda *a, **k: calls.append(1) or torch.zeros(20, 3))
    a, b = PatchSession(run, sets, store), PatchSession(run, sets, store)
    assert len(calls) == 0  # zero-shot (alpha 0) came from the store
    a.set_alpha(0.3)
    assert a.probabilities() is store.get(0.3) and len(calls) == 0
    b.set_alpha(0.7)  # not stored: b computes it once and shares it
    b.probabilities()
    a.set_alpha(0.7)
    assert a.probabilities() is b.probabilities() and len(calls) == 1
    assert all(torch.equal(model.state_dict()[k], zs[k]) for k in zs)


def test_one_sample_along_alpha_equals_models_built_at_each_alpha(two_states, random_micro_file):
    from paint_core.core.interpolation import interpolate
    from paint_core.engine.evaluation import predict
    from paint_core.live.sessions import PredictionStore

    zs, ft = two_states
    model, preprocess, tok = load_model("micro-rn-s", random_micro_file)
    run = Run(None, {"task": "t"}, model, preprocess, tok, zs, ft)
    head = zero_shot_head(model, tok, ["a", "b", "c"], ["{}"])
    images = torch.randn(6, 3, 48, 48, generator=torch.Generator().manual_seed(2))
    sets = {"t": EvalSet("t", ("a", "b", "c"), images, torch.arange(6) % 3, head)}
    store = PredictionStore()
    store.warm(run, sets, [0.5], start=0.5).join()  # one position shared, the others computed for the image
    session = PatchSession(run, sets, store)
    session.set_alpha(0.3)
    story = session.along_alpha("t", 4, [0.0, 0.5, 0.75, 1.0])
    assert session.alpha == 0.3 and list(story.columns) == ["a", "b", "c"]
    ref, _, _ = load_model("micro-rn-s", random_micro_file)
    for alpha in (0.0, 0.5, 0.75, 1.0):
        ref.load_state_dict(interpolate(zs, ft, alpha))
        assert np.allclose(story.loc[alpha].to_numpy(), predict(ref, head, images[4:5])[0].numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="not in the 6-image subsample"):
        session.along_alpha("t", 6)


@pytest.mark.slow
def test_sessions_own_no_weights_and_borrow_from_the_runs_pool(two_states, random_micro_file):
    """Two sessions at different alphas over one pool of one model: each gets theta(its alpha), the pool made
    one copy in all, and the run's endpoints are never written."""
    from paint_core.core.interpolation import interpolate as interp_fn
    from paint_core.engine.evaluation import predict
    from paint_core.live.sessions import ModelPool
    zs, ft = two_states
    model, preprocess, tok = load_model("micro-rn-s", random_micro_file)
    run = Run(None, {"task": "t"}, model, preprocess, tok, zs, ft)
    head = zero_shot_head(model, tok, ["a", "b", "c"], ["{}"])
    images = torch.randn(4, 3, 48, 48)
    sets = {"t": EvalSet("t", ("a", "b", "c"), images, torch.arange(4) % 3, head)}
    pool = ModelPool(run, size=1)
    a, b = PatchSession(run, sets, pool=pool), PatchSession(run, sets, pool=pool)
    assert not hasattr(a, "model") and pool.made == 1
    a.set_alpha(0.3)
    b.set_alpha(0.9)
    ref, _, _ = load_model("micro-rn-s", random_micro_file)
    for session, alpha in ((a, 0.3), (b, 0.9), (a, 0.3)):
        ref.load_state_dict(interp_fn(zs, ft, alpha))
        assert torch.allclose(session.probabilities()["t"], predict(ref, head, images), atol=1e-5)
        with session.patched_model() as patched:
            expected = interp_fn(zs, ft, alpha)
            assert all(torch.allclose(v, expected[k], atol=1e-6) for k, v in patched.state_dict().items()
                       if v.is_floating_point())
    assert pool.made == 1
    assert all(torch.equal(run.theta_zs[k], zs[k]) for k in zs)  # the endpoints are never written


@pytest.mark.slow
def test_a_pool_lends_each_model_to_one_borrower_at_a_time(two_states, random_micro_file):
    import threading
    from paint_core.live.sessions import ModelPool
    zs, ft = two_states
    model, preprocess, tok = load_model("micro-rn-s", random_micro_file)
    pool = ModelPool(Run(None, {"task": "t"}, model, preprocess, tok, zs, ft), size=2)
    with pool.borrow(0.2) as first, pool.borrow(0.8) as second:
        assert first is not second and pool.made == 2
        got = []
        waiter = threading.Thread(target=lambda: got.append(pool.borrow(0.5).__enter__()))
        waiter.start()
        waiter.join(timeout=1.0)
        assert waiter.is_alive() and not got  # both are lent: the third borrower waits
    waiter.join(timeout=10)
    assert got and got[0] in (first, second) and pool.made == 2


def test_sessions_share_the_frozen_text_tower_with_the_run_and_never_write_it(two_states, random_micro_file):
    zs, ft = two_states  # ft differs from zs only in the image tower
    model, preprocess, tok = load_model("micro-rn-s", random_micro_file)
    run = Run(None, {"task": "t"}, model, preprocess, tok, zs, ft)
    head = zero_shot_head(model, tok, ["a", "b", "c"], ["{}"])
    sets = {"t": EvalSet("t", ("a", "b", "c"), torch.randn(4, 3, 48, 48), torch.arange(4) % 3, head)}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = PatchSession(run, sets)
    a.set_alpha(0.7)
    text = "token_embedding.weight"
    visual = next(k for k in zs if k.startswith("visual.") and zs[k].is_floating_point() and not torch.equal(zs[k], ft[k]))
    expected = interpolate(zs, ft, 0.7)
    with a.patched_model() as patched:
        assert patched.state_dict()[text].data_ptr() == model.state_dict()[text].data_ptr()  # shared, not copied
        assert patched.state_dict()[visual].data_ptr() != model.state_dict()[visual].data_ptr()
        assert all(torch.allclose(v, expected[k], atol=1e-6) for k, v in patched.state_dict().items()
                   if v.is_floating_point())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the run's model is untouched


def test_edit_session_uses_the_merge_it_is_given_and_computes_each_setting_once(two_states, random_micro_file,
                                                                                   monkeypatch):
    """live/ knows no study: the application layer gives the session its task vectors and merge. The session's
    accuracies are those of theta_zs + merge(c_i * tau_i), and a setting asked twice is computed once."""
    from paint_core.core.task_vectors import TaskVector
    from paint_core.live.sessions import EditSession

    zs, ft = two_states
    model, preprocess, tok = load_model("micro-rn-s", random_micro_file)
    run = Run(None, {"task": "t"}, model, preprocess, tok, zs, ft)
    head = zero_shot_head(model, tok, ["a", "b", "c"], ["{}"])
    images, labels = torch.randn(30, 3, 48, 48), torch.arange(30) % 3
    sets = {"t": EvalSet("t", ("a", "b", "c"), images, labels, head)}
    tau = TaskVector(zs, ft)
    asked = []

    def merge(vectors, method, coefficients, **params):
        asked.append((method, list(coefficients), params))
        return sum(v * c for v, c in zip(vectors, coefficients))

    session = EditSession(run, {"t": tau, "u": tau * -1.0}, sets, merge)
    assert asked == [("sum", [0.0, 0.0], {})]  # the zero-shot accuracies, made at once
    got = session.accuracies({"u": -0.2, "t": 0.4}, "sum", k=3)
    assert asked[-1] == ("sum", [0.4, -0.2], {"k": 3})  # coefficients in the vectors' order, parameters passed on
    expected = interpolate(zs, ft, 0.6)  # 0.4 tau + (-0.2)(-tau) = 0.6 tau
    held = session.model.state_dict()
    assert all(torch.allclose(held[k], expected[k], atol=1e-6) for k in expected if expected[k].is_floating_point())
    assert got["t"] == evaluate(session.model, head, TensorDataset(images, labels))
    assert session.accuracies({"t": 0.4, "u": -0.2}, "sum", k=3) is got and len(asked) == 2
    assert all(torch.equal(model.state_dict()[k], zs[k]) for k in zs)  # the shared run's model is untouched
    with pytest.raises(ValueError, match="at least one"):
        EditSession(run, {}, sets, merge)


def test_slider_neighbours_are_one_step_each_way_within_the_range():
    from paint_core.live.sessions import slider_neighbours
    assert slider_neighbours({"a": 0.3, "b": 2.0}, 0.1, -1.5, 2.0) == [
        {"a": 0.4, "b": 2.0}, {"a": 0.2, "b": 2.0}, {"a": 0.3, "b": 1.9}]  # b cannot go above 2.0
    assert slider_neighbours({"a": -1.5}, 0.1, -1.5, 2.0) == [{"a": -1.4}]
    # further along each slider, nearest first: the whole line through the setting within the range
    assert slider_neighbours({"a": 0.3, "b": 1.9}, 0.1, -1.5, 2.0, reach=2) == [
        {"a": 0.4, "b": 1.9}, {"a": 0.3, "b": 2.0}, {"a": 0.2, "b": 1.9}, {"a": 0.3, "b": 1.8},
        {"a": 0.5, "b": 1.9}, {"a": 0.1, "b": 1.9}, {"a": 0.3, "b": 1.7}]
    line = slider_neighbours({"a": 0.3}, 0.1, -1.5, 2.0, reach=35)
    assert sorted(c["a"] for c in line) == [round(-1.5 + 0.1 * i, 4) for i in range(36) if i != 18]


@pytest.mark.slow
def test_edit_session_prefetches_the_next_moves_with_the_same_answers(two_states, random_micro_file):
    """Settings handed to prefetch are computed in the background, the latest list replacing the earlier one, and
    each equals what a fresh session computes when asked directly."""
    import time
    from paint_core.core.task_vectors import TaskVector
    from paint_core.live.sessions import EditSession, slider_neighbours

    zs, ft = two_states
    model, preprocess, tok = load_model("micro-rn-s", random_micro_file)
    run = Run(None, {"task": "t"}, model, preprocess, tok, zs, ft)
    head = zero_shot_head(model, tok, ["a", "b", "c"], ["{}"])
    images, labels = torch.randn(30, 3, 48, 48), torch.arange(30) % 3
    sets = {"t": EvalSet("t", ("a", "b", "c"), images, labels, head)}
    tau = TaskVector(zs, ft)
    merge = lambda vectors, method, coefficients, **params: sum(v * c for v, c in zip(vectors, coefficients))
    session = EditSession(run, {"t": tau, "u": tau * 0.5}, sets, merge)
    ahead = slider_neighbours({"t": 0.3, "u": 0.3}, 0.1, -1.5, 2.0)
    session.prefetch(ahead)
    deadline = time.monotonic() + 120
    while not all(session.knows(c) for c in ahead) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(session.knows(c) for c in ahead)
    fresh = EditSession(run, {"t": tau, "u": tau * 0.5}, sets, merge)
    for c in ahead:
        assert session.accuracies(c) == fresh.accuracies(c)
        expected = interpolate(zs, ft, c["t"] + 0.5 * c["u"])  # written out: theta_zs + (c_t + c_u / 2) tau
        model.load_state_dict(expected)
        assert session.accuracies(c)["t"] == evaluate(model, head, TensorDataset(images, labels))
    model.load_state_dict(zs)
    worker = session._worker
    if worker is not None:  # with nothing left to compute the worker ends (a joined thread never waits forever)
        worker.join(timeout=30)
        assert not worker.is_alive() and session._worker is None
    session.prefetch([{"t": 0.9, "u": 0.3}])  # and the next prefetch starts a new one
    deadline = time.monotonic() + 120
    while not session.knows({"t": 0.9, "u": 0.3}) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert session.knows({"t": 0.9, "u": 0.3})
    # what a browser is sent: every setting computed with this method, keyed by coefficients in the vectors' order
    computed = session.computed("sum")
    assert set(computed) == {(0.0, 0.0), (0.9, 0.3), *[(c["t"], c["u"]) for c in ahead]}
    assert computed[(0.9, 0.3)] == session.accuracies({"t": 0.9, "u": 0.3}) and session.computed("mean") == {}
    # nobody asking for AHEAD_FOR_S: the list is dropped and the worker ends without computing it
    import threading
    import paint_core.live.sessions as sessions
    worker = session._worker
    if worker is not None:
        worker.join(timeout=30)
    session._asked_at = time.monotonic() - sessions.AHEAD_FOR_S - 1
    worker = threading.Thread(target=session._compute_ahead, daemon=True)
    with session._wake:  # as if asked long ago: prefetch's own list, with its time moved back
        session._ahead = [({"t": 1.5, "u": 1.5}, "sum", {})]
        session._worker = worker
        worker.start()
    worker.join(timeout=30)
    assert not session.knows({"t": 1.5, "u": 1.5}) and session._ahead == [] and session._worker is None
