import hashlib
import os

import pytest
import torch

from paint_core import CheckpointError, load_checkpoint, load_model, save_checkpoint
from paint_core.cli import main


def test_roundtrip_is_bit_exact_and_sidecar_hash_matches(tmp_path, two_states):
    zs, _ = two_states
    path = tmp_path / "w.safetensors"
    save_checkpoint(path, zs, {"model": "micro-rn-s", "task": "digits", "alpha": 0.3})
    loaded, meta = load_checkpoint(path)
    assert set(loaded) == set(zs) and all(torch.equal(loaded[k], zs[k]) for k in zs)
    assert meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert meta["model"] == "micro-rn-s" and meta["alpha"] == 0.3 and meta["code_version"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(path)


def test_truncated_checkpoint_is_a_clear_error(tmp_path, two_states):
    path = tmp_path / "w.safetensors"
    save_checkpoint(path, two_states[0])
    path.write_bytes(path.read_bytes()[:100])
    path.with_suffix(".json").unlink()  # no sidecar: the safetensors reader itself must refuse it
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(path)


def test_pt_state_dict_loads_through_the_safe_reader(tmp_path, two_states):
    zs, _ = two_states
    torch.save({"state_dict": {"module." + k: v for k, v in zs.items()}}, tmp_path / "w.pt")
    model, _, _ = load_model("micro-rn-s", str(tmp_path / "w.pt"))
    assert all(torch.equal(model.state_dict()[k], zs[k]) for k in zs)


def test_mismatched_architecture_names_first_key(random_micro_file):
    with pytest.raises(CheckpointError, match="differ at 'visual"):
        load_model("micro-rn-l", random_micro_file)


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_payload_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.pt"
    torch.save({"weight": torch.zeros(2), "x": Payload(marker)}, bad)
    with pytest.raises(CheckpointError, match="refused to load global posix.system: .* nothing was run"):
        load_model("micro-rn-s", str(bad))
    assert main(["convert", str(bad), "--model", "micro-rn-s", "--out", str(tmp_path / "o.safetensors")]) == 1
    assert not marker.exists()
    assert not (tmp_path / "o.safetensors").exists()


class ImageEncoder(torch.nn.Module):
    """Like the research code's wrapper: the open_clip model under `.model`, plus a head."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.classification_head = torch.nn.Linear(128, 10)


@pytest.mark.slow
def test_convert_pickled_whole_module(tmp_path, random_micro_file, monkeypatch):
    model, _, _ = load_model("micro-rn-s", random_micro_file)
    with torch.no_grad():
        model.visual.attnpool.c_proj.weight.add_(1.0)
    old = tmp_path / "old.pt"
    torch.save(ImageEncoder(model), old)  # a pickled whole module, as the research code writes
    with pytest.raises(CheckpointError, match="is a pickled whole module .ImageEncoder., not a state dict.*convert"):
        load_model("micro-rn-s", str(old))
    out = tmp_path / "new.safetensors"
    assert main(["convert", str(old), "--model", "micro-rn-s", "--out", str(out)]) == 0
    state, meta = load_checkpoint(out)
    ref = model.state_dict()
    assert set(state) == set(ref) and all(torch.equal(state[k], ref[k]) for k in ref)
    assert meta["unmatched_keys"] == ["classification_head.weight", "classification_head.bias"]
