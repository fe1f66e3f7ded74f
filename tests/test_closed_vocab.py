"""Closed-vocabulary task addition: mechanics on random timm encoders and small tensors."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from paint_core.io.checkpoints import CheckpointError, save_checkpoint
from paint_core.core.task_vectors import TaskVector, apply_vectors
from paint_core.models.encoders import create_encoder
from paint_core.studies.closed_vocab import disentanglement_error, finetune_encoder
from paint_core.engine.probes import encode, linear_probe_head
from paint_core.engine.finetune import FinetuneConfig


def test_unknown_timm_name_lists_close_matches():
    with pytest.raises(ValueError, match="Did you mean: vit_tiny_patch16_224"):
        create_encoder("vit_tiny_patch16_22")


def test_random_init_is_reproducible_and_checkpoint_round_trip(tmp_path):
    a, _ = create_encoder("test_vit", "random")
    b, preprocess = create_encoder("test_vit", "random")
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    path = tmp_path / "enc.safetensors"
    with torch.no_grad():
        for p in a.parameters():
            p.add_(0.01)
    save_checkpoint(path, a.state_dict(), {"model": "test_vit"})
    c, _ = create_encoder("test_vit", str(path))
    assert all(torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())
    with pytest.raises(CheckpointError, match="differ"):
        create_encoder("test_resnet", str(path))  # another architecture's checkpoint


@pytest.mark.slow
def test_head_is_bit_identical_after_encoder_finetuning():
    encoder, _ = create_encoder("test_vit", "random")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, *encoder.default_cfg["input_size"][1:], generator=g)
    y = torch.randint(0, 3, (16,), generator=g)
    head = linear_probe_head(encode(encoder, x), y, 3, steps=20)
    head_before = {k: v.clone() for k, v in head.state_dict().items()}
    enc_before = {k: v.clone() for k, v in encoder.state_dict().items()}
    state = finetune_encoder(encoder, head, TensorDataset(x, y), FinetuneConfig(steps=3, batch_size=8, warmup=1),
                             progress=False)
    assert all(torch.equal(v, head.state_dict()[k]) for k, v in head_before.items())
    assert set(state) == set(enc_before)  # the task vector is over encoder weights only
    assert any(not torch.equal(state[k], enc_before[k]) for k in enc_before)


def test_apply_vectors_by_hand():
    pre = {"w": torch.tensor([1.0, 1.0]), "n": torch.tensor(3)}
    taus = [TaskVector(vector={"w": torch.tensor([1.0, 0.0])}), TaskVector(vector={"w": torch.tensor([0.0, 2.0])})]
    out = apply_vectors(pre, taus, [0.5, -1.0])
    assert torch.equal(out["w"], torch.tensor([1.5, -1.0])) and int(out["n"]) == 3
    with pytest.raises(ValueError, match="2 coefficients for 1 task vectors"):
        apply_vectors(pre, taus[:1], [1.0, 1.0])


def test_disentanglement_error_by_hand():
    """A toy 'model': state w (2 numbers); task a predicts sign(w0 * x), task b predicts sign(w1 + w0 * x)."""
    xs = torch.tensor([-2.0, -0.5, 0.5, 2.0])
    pre = {"w": torch.tensor([1.0, 0.0])}
    taus = (TaskVector(vector={"w": torch.tensor([-1.0, 0.0])}), TaskVector(vector={"w": torch.tensor([0.0, 1.0])}))

    def predict(state, task):
        w0, w1 = state["w"]
        return (w0 * xs > 0) if task == "a" else (w1 + w0 * xs > 0)

    grid = [0.0, 2.0]
    xi = disentanglement_error(predict, pre, taus, ("a", "b"), grid)
    # (l1, l2) = (0, 0): nothing changes -> 0. (2, 0): task a same as alone (0); task b compares
    # w=(-1, 0) with w=(1, 0) (b's edit alone at 0): predictions flip on all 4 -> 1.0.
    assert xi[0, 0] == 0 and xi[1, 0] == pytest.approx(1.0)
    # (0, 2): task a: w=(1,2) vs w=(1,0): same sign of w0 x -> 0; task b: same state as b alone -> 0.
    assert xi[0, 1] == 0
    # (2, 2): a: w=(-1,2) vs (-1,0): same -> 0; b: w=(-1,2) vs (1,2): 2 - x > 0 vs 2 + x > 0 differ at x=+-2 -> 0.5
    assert xi[1, 1] == pytest.approx(0.5)
