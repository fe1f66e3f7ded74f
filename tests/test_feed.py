"""The feed (issue 28): batches reach the device whole, in the DataLoader's order, with the preprocess's values;
the loop reads the loss every N steps; live numbers say their precision. CUDA paths: the gpu-marked tests."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from paint_core.data.decoded import DecodedSplit, uint8_split
from paint_core.data.tasks import get_task
from paint_core.engine import feed
from paint_core.engine.evaluation import decode_split, evaluate, materialize, run_batches, zero_shot_head
from paint_core.engine.feed import eval_batches, train_batches
from paint_core.engine.finetune import FinetuneConfig, finetune
from paint_core.engine.training import adamw, train_loop
from paint_core.models.clip import load_model
from paint_core.runtime import Runtime, use_runtime

NO_CUDA = not torch.cuda.is_available()
ROOT = Path(__file__).resolve().parent.parent


class NoSingleItems(TensorDataset):
    """In-memory tensors that refuse to be read one sample at a time."""

    def __getitem__(self, i):
        raise AssertionError("per-sample indexing of an in-memory tensor")


def _take(it, k):
    return [next(it) for _ in range(k)]


def test_shuffled_batches_are_the_dataloaders_own_order_and_never_one_sample_at_a_time():
    x, y = torch.randn(50, 3), torch.arange(50)
    reference = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, drop_last=True,
                           generator=torch.Generator().manual_seed(3))
    expected = [b for _ in range(3) for b in reference]  # three epochs, each its own order
    got = _take(train_batches(NoSingleItems(x, y), 8, seed=3), len(expected))
    assert all(torch.equal(g[0], e[0]) and torch.equal(g[1], e[1]) for g, e in zip(got, expected))
    shares = [_take(train_batches(NoSingleItems(x, y), 8, seed=3, rank=r, world=2), 12) for r in (0, 1)]
    assert all(torch.equal(torch.cat([shares[0][k][1], shares[1][k][1]]), expected[k][1]) for k in range(12))


def test_evaluation_cuts_in_memory_tensors_whole():
    x, y = torch.randn(70, 5), torch.arange(70) % 4
    out, labels = run_batches(lambda b: b * 2, NoSingleItems(x, y), torch.nn.Linear(1, 1), batch_size=16)
    assert torch.equal(out, x * 2) and torch.equal(labels, y)
    mine = [b[1] for b in eval_batches(NoSingleItems(x, y), 16, torch.device("cpu"), world=2, rank=1)]
    assert torch.equal(torch.cat(mine), torch.cat([y[16:32], y[48:64]]))  # batches 1 and 3 of 0..4


@pytest.fixture(scope="module")
def digits():
    model, preprocess, tokenizer = load_model("micro-rn-s")
    task = get_task("digits")
    return model, preprocess, task, zero_shot_head(model, tokenizer, task.classnames, task.templates)


def test_uint8_batches_normalised_where_they_land_are_the_preprocess_tensors_and_give_the_same_logits(digits):
    """The decoded path used to hand the model channels-last strides (equal values): logits then differed from
    the preprocess path's by up to 8e-5. Now the inputs, and so the model's outputs, are identical."""
    model, preprocess, task, _ = digits
    uint8 = uint8_split(lambda t: task.split("train", t), preprocess)
    plain = task.split("train", preprocess)
    got = next(train_batches(uint8, 64, seed=1))
    want = next(iter(DataLoader(plain, batch_size=64, shuffle=True, drop_last=True,
                                generator=torch.Generator().manual_seed(1))))
    assert got[0].dtype == torch.float32 and got[0].is_contiguous()
    assert torch.equal(got[0], want[0]) and torch.equal(torch.as_tensor(got[1]), want[1])
    with torch.no_grad():
        assert torch.equal(model.encode_image(got[0]), model.encode_image(want[0]))


def _weights(model, head, train_set):
    state = finetune(model, head, train_set, FinetuneConfig(steps=3, batch_size=16, warmup=1, seed=5), progress=False)
    return torch.cat([v.flatten().float() for k, v in sorted(state.items()) if k.startswith("visual.")])


@pytest.mark.slow
def test_fine_tuning_from_uint8_or_a_decoded_split_gives_the_preprocessed_splits_weights(digits, monkeypatch):
    model, preprocess, task, head = digits
    start = {k: v.clone() for k, v in model.state_dict().items()}

    def trained(train_set):
        model.load_state_dict(start)
        return _weights(model, head, train_set)
    plain = trained(task.split("train", preprocess))
    assert torch.equal(trained(uint8_split(lambda t: task.split("train", t), preprocess)), plain)
    decoded = decode_split(task, "train", preprocess)
    assert isinstance(decoded, DecodedSplit)
    assert torch.equal(trained(decoded), plain)  # read a batch of rows at a time from the file
    monkeypatch.setattr(feed, "fits", lambda nbytes, device: True)
    assert torch.equal(trained(decoded), plain)  # held whole where it is computed on, cut there
    model.load_state_dict(start)


@pytest.mark.slow
def test_a_decoded_split_that_fits_is_read_once_for_every_alpha(digits, monkeypatch):
    model, preprocess, task, head = digits
    split = decode_split(task, "test", preprocess, limit=300)
    streamed = evaluate(model, head, split, batch_size=64)
    reads = []
    original = DecodedSplit.read
    monkeypatch.setattr(DecodedSplit, "read", lambda self, a, b: reads.append((a, b)) or original(self, a, b))
    monkeypatch.setattr(feed, "fits", lambda nbytes, device: True)
    held = [evaluate(model, head, split, batch_size=64) for _ in range(3)]
    assert held == [streamed] * 3 and reads == [(0, feed.READ_CHUNK)]  # 300 images: one chunk, once
    assert streamed == evaluate(model, head, materialize(task.split("test", preprocess), 300), batch_size=64)


def test_the_loop_reads_the_loss_every_n_steps_and_reports_every_step(monkeypatch):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.zeros(3))
    x, y = torch.randn(40, 3), torch.randn(40)
    items = []
    original_item = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda self: items.append(1) or original_item(self))
    reports = []
    losses = train_loop(iter([(x, y)] * 25), lambda b: ((b[0] @ w - b[1]) ** 2).mean(),
                        torch.optim.SGD([w], lr=0.01), 25, lambda s: 0.01, progress=False, loss_every=10,
                        on_progress=lambda p: reports.append(p))
    assert items == []  # no wait for the device per step (it was one .item() per step)
    assert [p.done for p in reports] == list(range(1, 26))
    assert [p.loss for p in reports][9] == losses[9] and reports[8].loss is None and reports[12].loss == losses[9]
    assert reports[-1].loss == losses[24] and len(losses) == 25
    w2 = torch.nn.Parameter(torch.zeros(3))  # the same steps by hand give the same losses
    opt, expected = torch.optim.SGD([w2], lr=0.01), []
    for _ in range(25):
        loss = ((x @ w2 - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        expected.append(float(loss.detach()))
    assert losses == expected


def test_adamw_keeps_pytorchs_default_on_the_cpu():
    assert not adamw([torch.nn.Parameter(torch.zeros(2))], lr=1e-3).defaults.get("fused")


def test_compile_wraps_the_tower_for_the_run_and_gives_it_back(digits, monkeypatch):
    from paint_core.cli import build_parser
    model, preprocess, task, head = digits
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda module: compiled.append(module) or module)
    tower = model.visual
    with use_runtime(Runtime("cpu", compile=True)):
        finetune(model, head, materialize(task.split("train", preprocess), 32),
                 FinetuneConfig(steps=1, batch_size=16, warmup=0), progress=False)
    assert compiled == [tower] and model.visual is tower
    args = build_parser().parse_args(["finetune", "--model", "micro-rn-s", "--task", "digits", "--out", "r", "--compile"])
    assert args.compile is True


def test_live_numbers_use_bfloat16_on_cuda_unless_told_otherwise(monkeypatch):
    from paint_core.live.sessions import PredictionStore, live_runtime
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert live_runtime(Runtime("cuda:0")).precision == "amp_bf16"
    assert live_runtime(Runtime("cuda:0"), "fp32").precision == "fp32"
    assert live_runtime(Runtime("cpu")) == Runtime("cpu")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert live_runtime(Runtime("cuda:0")).precision == "amp"
    with pytest.raises(ValueError, match="unknown live precision 'fp8'; choose auto or one of: fp32, amp, amp_bf16"):
        live_runtime(Runtime("cpu"), "fp8")
    with use_runtime(Runtime("cpu", "amp_bf16")):
        assert PredictionStore().runtime == Runtime("cpu", "amp_bf16")


def _benchmark(name: str):
    """``benchmarks.NAME``, the package taken from the repository this file is in (not the working directory)."""
    if "benchmarks" not in sys.modules:
        spec = importlib.util.spec_from_file_location("benchmarks", ROOT / "benchmarks" / "__init__.py",
                                                      submodule_search_locations=[str(ROOT / "benchmarks")])
        sys.modules["benchmarks"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules["benchmarks"])
    return importlib.import_module(f"benchmarks.{name}")


@pytest.mark.gpu
@pytest.mark.skipif(NO_CUDA, reason="needs CUDA")
def test_cuda_feed_moves_the_same_batches_and_evaluates_like_the_cpu(digits):
    model, preprocess, task, head = digits
    data = materialize(task.split("train", preprocess), 200)
    cpu = _take(train_batches(data, 32, seed=2), 8)
    with use_runtime(Runtime("cuda:0")):
        gpu = _take(train_batches(data, 32, seed=2), 8)  # held on the device, gathered there
        split = decode_split(task, "test", preprocess, limit=300)
        gpu_model, _, tok = load_model("micro-rn-s")
        gpu_head = zero_shot_head(gpu_model, tok, task.classnames, task.templates)
        held = evaluate(gpu_model, gpu_head, split)
        streamed = run_batches(lambda x: x.float().mean((1, 2, 3)), materialize(task.split("test", preprocess), 300),
                               gpu_model, 64)[0]
    assert all(g[0].is_cuda and torch.equal(g[0].cpu(), c[0]) and torch.equal(g[1].cpu(), c[1])
               for g, c in zip(gpu, cpu))
    assert abs(held - evaluate(model, head, split)) <= 0.02
    x = materialize(task.split("test", preprocess), 300).tensors[0]
    assert torch.allclose(streamed, x.mean((1, 2, 3)), atol=1e-5)
    assert adamw([torch.nn.Parameter(torch.zeros(2, device="cuda"))], lr=1e-3).defaults.get("fused")


@pytest.mark.gpu
@pytest.mark.skipif(NO_CUDA, reason="needs CUDA")
def test_the_sweep_benchmarks_reference_runs_on_cuda_with_its_heads_from_the_cpu(digits):
    """Its bare passes kept the text heads on the CPU: 'Expected all tensors to be on the same device'."""
    model, preprocess, task, head = digits
    bench = _benchmark("sweep")
    with use_runtime(Runtime("cuda:0", "amp_bf16")):
        gpu_model, _, _ = load_model("micro-rn-s")
        zs = {k: v.clone() for k, v in gpu_model.state_dict().items()}
        data = materialize(task.split("test", preprocess), 64).tensors
        acc = bench.bare_passes(gpu_model, zs, zs, {"digits": (*data, head)}, 32, Runtime("cuda:0", "amp_bf16"))
    assert len(acc) == 11 and len(set(acc.values())) == 1  # the same weights at every alpha
    assert abs(acc[(0.0, "digits")] - evaluate(model, head, TensorDataset(*data))) <= 0.03
