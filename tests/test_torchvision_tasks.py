"""torchvision tasks on fake local roots in torchvision's own on-disk formats (issue 13, part 5)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from paint_core.data.tasks import get_task


def _idx(path, magic: int, shape: tuple[int, ...], data: np.ndarray) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in shape)
    path.write_bytes(header + data.astype(np.uint8).tobytes())


@pytest.fixture()
def fake_mnist(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 50), ("t10k", 20)):
        _idx(raw / f"{prefix}-images-idx3-ubyte", 2051, (n, 28, 28), rng.integers(0, 256, (n, 28, 28)))
        _idx(raw / f"{prefix}-labels-idx1-ubyte", 2049, (n,), np.arange(n) % 10)
    return tmp_path


def test_mnist_any_case_with_clean_names_and_carved_val(fake_mnist):
    for name in ("torchvision:MNIST", "torchvision:mnist", "torchvision:Mnist"):
        task = get_task(name, root=str(fake_mnist))
        assert task.name == "torchvision:MNIST"
        assert task.classnames == tuple(str(d) for d in range(10))  # not "0 - zero"
    assert len(task.split("test")) == 20
    train, val = task.split("train"), task.split("val")
    assert len(train) + len(val) == 50 and len(val) == 5
    assert set(train.indices) | set(val.indices) == set(range(50)) and not set(train.indices) & set(val.indices)
    assert list(get_task("torchvision:mnist", root=str(fake_mnist)).split("val").indices) == list(val.indices)


def test_eurosat_has_one_set_carved_70_10_20(tmp_path):
    for cls in ("AnnualCrop", "HerbaceousVegetation", "River"):
        folder = tmp_path / "eurosat" / "2750" / cls
        folder.mkdir(parents=True)
        for i in range(10):
            Image.new("RGB", (64, 64), (i * 20, 100, 50)).save(folder / f"{cls}_{i}.jpg")
    task = get_task("torchvision:eurosat", root=str(tmp_path))
    assert task.classnames == ("annual crop", "herbaceous vegetation", "river")
    sizes = [len(task.split(s)) for s in ("train", "val", "test")]
    assert sizes == [21, 3, 6] and sum(sizes) == 30


def test_unknown_and_non_dataset_names(tmp_path):
    with pytest.raises(ValueError, match="Did you mean: CIFAR10"):
        get_task("torchvision:cifr10", root=str(tmp_path))
    with pytest.raises(ValueError, match="Unknown torchvision dataset 'utils'"):  # a module, not a dataset
        get_task("torchvision:utils", root=str(tmp_path))
