import pytest
import torch

from paint_core import Interpolator, TaskVector, interpolate, load_model


@pytest.mark.slow
def test_interpolate_endpoints_and_formula(two_states):
    zs, ft = two_states
    assert all(torch.equal(interpolate(zs, ft, 0.0)[k], zs[k]) for k in zs)
    assert all(torch.equal(interpolate(zs, ft, 1.0)[k], ft[k]) for k in zs)
    mid = interpolate(zs, ft, 0.3)
    for k in zs:
        if zs[k].is_floating_point():
            torch.testing.assert_close(mid[k], 0.7 * zs[k] + 0.3 * ft[k], rtol=0, atol=1e-6)
        else:
            assert torch.equal(mid[k], zs[k])


def test_integer_buffers_are_copied_not_averaged(two_states):
    zs, ft = two_states
    ints = [k for k in zs if not zs[k].is_floating_point()]
    assert ints, "the micro ResNet has BatchNorm num_batches_tracked buffers"
    ft = dict(ft)
    ft[ints[0]] = zs[ints[0]] + 10
    assert torch.equal(interpolate(zs, ft, 0.5)[ints[0]], zs[ints[0]])


def test_alpha_range(two_states):
    zs, ft = two_states
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        interpolate(zs, ft, 1.5)
    with pytest.raises(ValueError, match="finite"):
        interpolate(zs, ft, float("nan"))
    k = "visual.attnpool.c_proj.weight"
    torch.testing.assert_close(interpolate(zs, ft, 1.5, allow_extrapolation=True)[k], zs[k] + 1.5 * (ft[k] - zs[k]))


def test_mismatched_state_dicts_name_the_key(two_states):
    zs, ft = two_states
    ft = dict(ft)
    ft["visual.attnpool.c_proj.weight"] = ft["visual.attnpool.c_proj.weight"][:, :3]
    with pytest.raises(ValueError, match="visual.attnpool.c_proj.weight.*shape"):
        interpolate(zs, ft, 0.5)
    del ft["visual.attnpool.c_proj.weight"]
    with pytest.raises(ValueError, match="missing"):
        interpolate(zs, ft, 0.5)


@pytest.mark.slow
def test_interpolator_matches_pure_interpolation_and_keeps_endpoints(two_states, random_micro_file):
    zs, ft = two_states
    zs_copy = {k: v.clone() for k, v in zs.items()}
    ft_copy = {k: v.clone() for k, v in ft.items()}
    model, _, _ = load_model("micro-rn-s", random_micro_file)
    interp = Interpolator(model, zs, ft)
    x = torch.randn(4, 3, 48, 48)
    for alpha in (0.0, 0.25, 1.0, 0.6):
        interp.set_alpha(alpha)
        expected = interpolate(zs, ft, alpha)
        live = model.state_dict()
        for k in expected:
            torch.testing.assert_close(live[k], expected[k], rtol=0, atol=1e-6)
        # an independent model built with load_state_dict gives the same outputs
        ref, _, _ = load_model("micro-rn-s", random_micro_file)
        ref.load_state_dict(expected)
        with torch.no_grad():
            torch.testing.assert_close(model.encode_image(x), ref.encode_image(x), rtol=1e-5, atol=1e-5)
    assert all(torch.equal(zs[k], zs_copy[k]) and torch.equal(ft[k], ft_copy[k]) for k in zs)
    assert all(isinstance(p, torch.nn.Parameter) for p in model.parameters())
    with pytest.raises(ValueError):
        interp.set_alpha(-0.1)


@pytest.mark.slow
def test_task_vector_algebra(two_states):
    zs, ft = two_states
    tv = TaskVector(zs, ft)
    assert all(torch.allclose(tv.apply_to(zs, 1.0)[k], ft[k], atol=1e-6) for k in zs)
    assert all(torch.equal(tv.apply_to(zs, 0.0)[k], zs[k]) for k in zs)
    k = "visual.attnpool.q_proj.weight"
    torch.testing.assert_close((tv + tv).vector[k], (2 * tv).vector[k])
    torch.testing.assert_close((-tv).apply_to(zs)[k], zs[k] - (ft[k] - zs[k]))
    torch.testing.assert_close((tv * 0.5).vector[k], 0.5 * (ft[k] - zs[k]))
    torch.testing.assert_close(sum([tv, tv, -tv]).vector[k], tv.vector[k])
    assert set(tv.vector) == {key for key in zs if zs[key].is_floating_point()}
    assert not any(key.endswith("num_batches_tracked") for key in tv.vector)
    other = TaskVector(vector={kk: v for kk, v in tv.vector.items() if kk != k})
    with pytest.raises(ValueError, match=k):
        tv + other
