"""torchrun on the CPU (gloo): N processes give one process's results (issue 12). Each launch costs ~6 s."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from paint_core.io.checkpoints import load_checkpoint
from paint_core.models.clip import load_model

pytestmark = pytest.mark.slow
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "paint_core"]
ONE = [sys.executable, "-m", "paint_core"]


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, **kw)


FINETUNE = ["finetune", "--model", "micro-rn-s", "--task", "digits", "--steps", "4", "--batch-size", "16",
            "--warmup", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same fine-tune on 2 processes (global batch 16 = 2 x 8) and on one (batch 16)."""
    d = tmp_path_factory.mktemp("ddp")
    two = _run(TORCHRUN + FINETUNE + ["--out", str(d / "two")])
    assert two.returncode == 0, two.stderr[-3000:]
    one = _run(ONE + FINETUNE + ["--out", str(d / "one")])
    assert one.returncode == 0, one.stderr[-3000:]
    return d


def test_two_process_finetune_gives_one_process_weights(runs):
    """DDP averages the two halves' gradients: mathematically the one-process gradient of the global batch,
    in another float summation order. AdamW divides by sqrt(v), so coordinates whose gradient is rounding noise
    can move differently by up to lr per step; the bound is 1% of the update's norm (measured: ~0.1%)."""
    one, _ = load_checkpoint(runs / "one" / "finetuned.safetensors")
    two, _ = load_checkpoint(runs / "two" / "finetuned.safetensors")
    zs = load_model("micro-rn-s")[0].state_dict()
    keys = [k for k in one if one[k].is_floating_point() and "running" not in k]
    update = torch.cat([(one[k] - zs[k]).flatten() for k in keys])
    diff = torch.cat([(one[k] - two[k]).flatten() for k in keys])
    print(f"update norm {update.norm():.3e}, one vs two processes {diff.norm():.3e} (max {diff.abs().max():.1e})")
    assert float(update.norm()) > 1e-3
    assert float(diff.norm()) < 0.01 * float(update.norm())
    for k in one:  # BatchNorm statistics are frozen while fine-tuning: identical
        if "running" in k:
            assert torch.equal(one[k], two[k])
    meta = (runs / "two" / "run.json").read_text()
    assert '"processes": 2' in meta


SWEEP = ["--supported", "shapes", "--max-eval", "90", "--batch-size", "32", "--device", "cpu"]


def test_two_process_sweep_gives_exactly_the_one_process_accuracies(runs, tmp_path):
    """90 images in batches of 32: rank 0 scores batches 0 and 2, rank 1 batch 1; the counts are added."""
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(runs / "one", a)
    shutil.copytree(runs / "one", b)
    two = _run(TORCHRUN + ["sweep", "--run-dir", str(a), "--alphas", "0,0.5,1"] + SWEEP)
    assert two.returncode == 0, two.stderr[-3000:]
    one = _run(ONE + ["sweep", "--run", str(b), "--alphas", "0,0.5,1"] + SWEEP)
    assert one.returncode == 0, one.stderr[-3000:]
    ta, tb = pd.read_csv(a / "sweep.csv"), pd.read_csv(b / "sweep.csv")
    assert len(ta) == 3 * 2 * 2 and ta.equals(tb)
    assert two.stdout.count("alpha") == one.stdout.count("alpha")  # rank 0 alone reports


def test_a_killed_distributed_sweep_resumes_to_the_same_table(runs, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(runs / "one", a)
    shutil.copytree(runs / "one", b)
    args = ["sweep", "--run-dir", str(a), "--alphas", "0:1:0.05"] + SWEEP
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(TORCHRUN + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (a / "sweep.csv").is_file() and pd.read_csv(a / "sweep.csv")["alpha"].nunique() >= 2:
            break
        time.sleep(0.05)
    # SIGTERM, as a user's kill or a scheduler's preemption sends it: torchrun stops its workers (which run in
    # sessions of their own, so a SIGKILL of torchrun's group left them running on and holding the run's lock)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=120)
    partial = pd.read_csv(a / "sweep.csv")["alpha"].nunique()
    assert 2 <= partial < 21, f"the sweep was not caught midway ({partial} alphas)"
    again = _run(TORCHRUN + args)
    assert again.returncode == 0, again.stderr[-3000:]
    one = _run(ONE + ["sweep", "--run", str(b), "--alphas", "0:1:0.05"] + SWEEP)
    assert one.returncode == 0, one.stderr[-3000:]
    assert pd.read_csv(a / "sweep.csv").equals(pd.read_csv(b / "sweep.csv"))


def test_uneven_batches_and_single_process_commands_are_clear_errors(tmp_path):
    bad = _run(TORCHRUN + ["finetune", "--model", "micro-rn-s", "--task", "digits", "--steps", "1", "--batch-size",
                           "15", "--device", "cpu", "--out", str(tmp_path / "x")])
    assert bad.returncode != 0 and "cannot be split evenly over 2 processes" in bad.stderr
    assert not (tmp_path / "x").exists()
