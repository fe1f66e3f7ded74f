import json

import numpy as np
import pytest

from paint_core.engine.pretrain import PretrainConfig, pretrain

pytestmark = pytest.mark.slow


def test_pretrain_loss_goes_down_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr("paint_core.engine.training.LOSS_EVERY", 1)  # each report then carries its own step's loss
    cfg = PretrainConfig(steps=40, batch_size=32, corpus_size=1200, warmup=5, lr=1e-3)
    seen = []

    def killed_after_26(p):
        seen.append((p.done, p.loss))
        if p.done == 26:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain("micro-rn-s", tmp_path, cfg, save_every=10, on_progress=killed_after_26)
    assert (tmp_path / "micro-rn-s.train_state.pt").is_file()
    resumed = []
    path = pretrain("micro-rn-s", tmp_path, cfg, save_every=10, on_progress=lambda p: resumed.append((p.done, p.loss)))
    assert resumed[0][0] == 21  # restarted after the last state written (20 steps done), not from 0
    losses = [l for _, l in seen[:20]] + [l for _, l in resumed]
    assert len(losses) == 40
    assert np.mean(losses[-8:]) < np.mean(losses[:8]) - 0.3
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["config"]["steps"] == 40 and meta["sha256"]
    assert not (tmp_path / "micro-rn-s.train_state.pt").exists()
