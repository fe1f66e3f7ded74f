"""Splits are decoded once into a uint8 cache and streamed in bounded memory (issue 12)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

from paint_core.core.interpolation import Interpolator
from paint_core.data.decoded import DecodedSplit, split_preprocess
from paint_core.data.embedded import EMBEDDED_TASKS
from paint_core.data.tasks import Task, get_task
from paint_core.engine.evaluation import build_evals, decode_split, evaluate, materialize, sweep, zero_shot_head
from paint_core.models.clip import load_model
from paint_core.runtime import Runtime, use_runtime


class CountingSplit(Dataset):
    """The digits test split, counting every image decoded."""

    def __init__(self, transform, counter: list[int]):
        self.inner, self.counter = get_task("digits").split("test", transform), counter

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i):
        self.counter[0] += 1
        return self.inner[i]


def counting_task(counter: list[int]) -> Task:
    digits = get_task("digits")
    return Task("counted-digits", digits.classnames, digits.templates,
                lambda split, transform: CountingSplit(transform, counter))


def test_decoded_images_are_exactly_the_preprocessed_ones():
    _, preprocess, _ = load_model("micro-rn-s")
    task = get_task("typographic")
    decoded = decode_split(task, "test", preprocess, limit=40)
    assert isinstance(decoded, DecodedSplit) and len(decoded) == 40
    plain = task.split("test", preprocess)
    for i in (0, 17, 39):
        x, y = decoded[i]
        x0, y0 = plain[i]
        assert y == y0 and torch.equal(x, x0)  # bit for bit, not approximately


@pytest.mark.slow
def test_a_sweep_decodes_each_image_once_and_a_second_run_not_at_all(monkeypatch, two_states, random_micro_file):
    counter = [0]
    task = counting_task(counter)
    monkeypatch.setitem(EMBEDDED_TASKS, task.name, task)
    model, preprocess, tokenizer = load_model("micro-rn-s", random_micro_file)  # the weights of two_states' zs
    zs, ft = two_states
    evals = build_evals(model, preprocess, tokenizer, [task.name], ("test",), max_eval=120)
    table = sweep(Interpolator(model, zs, ft), evals, [0.0, 0.5, 1.0], batch_size=50)
    assert counter[0] == 120  # not 3 x 120
    build_evals(model, preprocess, tokenizer, [task.name], ("test",), max_eval=120)  # another run, same data
    assert counter[0] == 120
    # the streamed accuracy equals the accuracy on the split materialized in memory, at every alpha
    head = zero_shot_head(model, tokenizer, task.classnames, task.templates)
    mem = materialize(task.split("test", preprocess), 120)
    interp = Interpolator(model, zs, ft)
    for alpha in (0.0, 0.5, 1.0):
        interp.set_alpha(alpha)
        assert table.query("alpha == @alpha")["accuracy"].item() == evaluate(model, head, mem)


def test_a_changed_image_folder_is_decoded_again(tmp_path):
    from conftest import write_imagefolder
    write_imagefolder(tmp_path / "f", {"red": (200, 30, 30), "blue": (30, 30, 200)}, per_class=6)
    _, preprocess, _ = load_model("micro-rn-s")
    task = get_task(f"imagefolder:{tmp_path / 'f'}")
    first = decode_split(task, "test", preprocess)
    victim = sorted((tmp_path / "f" / "test" / "red").iterdir())[0]
    Image.new("RGB", (20, 20), (0, 255, 0)).save(victim)
    second = decode_split(get_task(f"imagefolder:{tmp_path / 'f'}"), "test", preprocess)
    assert first.folder != second.folder
    assert not torch.equal(first.read(0, len(first)), second.read(0, len(second)))


def test_workers_decode_the_same_bytes(tmp_path, monkeypatch):
    monkeypatch.setenv("PAINT_CACHE_DIR", str(tmp_path / "a"))
    _, preprocess, _ = load_model("micro-rn-s")
    task = get_task("counting")
    one = decode_split(task, "val", preprocess, limit=100)
    monkeypatch.setenv("PAINT_CACHE_DIR", str(tmp_path / "b"))
    with use_runtime(Runtime("cpu", "fp32", workers=2)):
        two = decode_split(task, "val", preprocess, limit=100)
    assert torch.equal(one.read(0, 100), two.read(0, 100)) and torch.equal(one.labels, two.labels)


def test_a_transform_that_is_not_open_clips_streams_without_a_cache():
    assert split_preprocess(lambda img: img) is None
    _, preprocess, _ = load_model("micro-rn-s")
    assert split_preprocess(preprocess) is not None


MEMORY_PROBE = textwrap.dedent('''
    import json, resource, sys
    import numpy as np, open_clip, torch
    from PIL import Image
    from torch.utils.data import Dataset
    from paint_core.data.tasks import Task
    from paint_core.engine.evaluation import decode_split, evaluate, materialize

    N, SIZE = int(sys.argv[2]), 224

    class Noise(Dataset):  # 256 px photos, decoded on access like files
        def __init__(self, transform): self.transform = transform
        def __len__(self): return N
        def __getitem__(self, i):
            rng = np.random.default_rng(i)
            img = Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))
            return self.transform(img), i % 2

    class TinyClip(torch.nn.Module):  # a 224 px model whose forward costs nothing
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(3, 8)
            self.logit_scale = torch.nn.Parameter(torch.tensor(0.0))
        def encode_image(self, x): return self.proj(x.mean((2, 3)))

    task = Task("noise", ("a", "b"), ("{}",), lambda split, t: Noise(t))
    preprocess = open_clip.image_transform(SIZE, is_train=False)
    model, head = TinyClip(), torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if sys.argv[1] == "stream":
        data = decode_split(task, "test", preprocess)
    else:
        data = materialize(task.split("test", preprocess))
    acc = evaluate(model, head, data, batch_size=64)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_growth_mb": (peak - before) / 1024, "accuracy": acc}))
''')


def _probe(mode: str, n: int, tmp_path) -> dict:
    script = tmp_path / "probe.py"
    script.write_text(MEMORY_PROBE)
    out = subprocess.run([sys.executable, str(script), mode, str(n)], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PAINT_CACHE_DIR": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_streamed_evaluation_memory_does_not_grow_with_the_split(tmp_path):
    """1,500 images at 224 px would take 1,500 x 602 KB = 903 MB as float tensors (what ``materialize`` held);
    streamed from the uint8 cache a batch at a time, the peak grows by what one batch and its decode need
    (measured: 184 MB for 1,500 images and 184 MB for 500: libraries loading, a decode batch, a float batch and
    its normalization temporaries), not with the split."""
    (tmp_path / "s").mkdir()
    big, small = _probe("stream", 1500, tmp_path), _probe("stream", 500, tmp_path / "s")
    materialized_mb = 1500 * 3 * 224 * 224 * 4 / 2 ** 20
    print(f"peak growth streaming 1500: {big['peak_growth_mb']:.0f} MB, 500: {small['peak_growth_mb']:.0f} MB; "
          f"materialized 1500 would hold {materialized_mb:.0f} MB")
    assert big["peak_growth_mb"] < materialized_mb / 3
    assert big["peak_growth_mb"] < small["peak_growth_mb"] + 40  # no growth with the split's size
