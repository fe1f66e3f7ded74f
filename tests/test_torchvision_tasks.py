"""torchvision tasks on fake local roots in torchvision's own on-disk formats (issue 13, part 5)."""
from __future__ import annotations

import json

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
        assert task.templates == ('a photo of the number: "{}".',)  # CLIP's MNIST template
    assert len(task.split("test")) == 20
    train, val = task.split("train"), task.split("val")
    assert len(train) + len(val) == 50 and len(val) == 5
    assert set(train.indices) | set(val.indices) == set(range(50)) and not set(train.indices) & set(val.indices)
    assert list(get_task("torchvision:mnist", root=str(fake_mnist)).split("val").indices) == list(val.indices)


EUROSAT = ("AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture", "PermanentCrop",
           "Residential", "River", "SeaLake")


def _image_folders(base, classes, n: int, ext: str = "jpg", prefix: str = "") -> None:
    for cls in classes:
        folder = base / cls
        folder.mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (32, 32), (i * 20, 100, 50)).save(folder / f"{prefix}{cls.replace('/', '_')}_{i}.{ext}")


def test_eurosat_has_one_set_carved_70_10_20_with_clips_names(tmp_path):
    _image_folders(tmp_path / "eurosat" / "2750", EUROSAT, 3)
    task = get_task("torchvision:eurosat", root=str(tmp_path))
    assert task.classnames[:3] == ("annual crop land", "forest", "brushland or shrubland")  # CLIP's, not the folders'
    assert len(task.classnames) == 10 and task.templates[0] == "a centered satellite photo of {}."
    sizes = [len(task.split(s)) for s in ("train", "val", "test")]
    assert sizes == [21, 3, 6] and sum(sizes) == 30


def test_an_incomplete_copy_is_an_error_not_misnamed_classes(tmp_path):
    _image_folders(tmp_path / "eurosat" / "2750", ("AnnualCrop", "River", "SeaLake"), 2)
    with pytest.raises(ValueError, match="has 3 classes where the full dataset has 10"):
        get_task("torchvision:EuroSAT", root=str(tmp_path))


def test_gtsrb_gets_clips_sign_names_though_torchvision_has_none(tmp_path):
    base = tmp_path / "gtsrb"
    _image_folders(base / "GTSRB" / "Training", ("00000", "00001"), 5, ext="ppm")
    (base / "GTSRB" / "Final_Test" / "Images").mkdir(parents=True)
    rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    for i in range(4):
        Image.new("RGB", (32, 32)).save(base / "GTSRB" / "Final_Test" / "Images" / f"{i:05d}.ppm")
        rows.append(f"{i:05d}.ppm;32;32;0;0;31;31;{i % 2}")
    (base / "GT-final_test.csv").write_text("\n".join(rows) + "\n")
    task = get_task("torchvision:gtsrb", root=str(tmp_path))
    assert len(task.classnames) == 43
    assert task.classnames[:2] == ("red and white circle 20 kph speed limit", "red and white circle 30 kph speed limit")
    assert task.templates[0] == 'a zoomed in photo of a "{}" traffic sign.'
    assert [task.split("test")[i][1] for i in range(4)] == [0, 1, 0, 1]
    assert len(task.split("train")) + len(task.split("val")) == 10


def test_sun397_food101_dtd_clean_names_and_clips_templates(tmp_path):
    sun = tmp_path / "SUN397"
    _image_folders(sun, ("a/abbey", "b/bakery/shop"), 3, prefix="sun_")
    (sun / "ClassName.txt").write_text("/a/abbey\n/b/bakery/shop\n")
    task = get_task("torchvision:sun397", root=str(tmp_path))
    assert task.classnames == ("abbey", "bakery shop") and task.templates == ("a photo of a {}.", "a photo of the {}.")
    labels = [task.split(s)[i][1] for s in ("train", "val", "test") for i in range(len(task.split(s)))]
    assert sorted(labels) == [0, 0, 0, 1, 1, 1]  # one set, carved 70/10/20

    food = tmp_path / "food-101"
    _image_folders(food / "images", ("apple_pie", "baby_back_ribs"), 2)
    meta = {c: [f"{c}/{c}_{i}" for i in range(2)] for c in ("apple_pie", "baby_back_ribs")}
    (food / "meta").mkdir()
    for split in ("train", "test"):
        (food / "meta" / f"{split}.json").write_text(json.dumps(meta))
    task = get_task("torchvision:Food101", root=str(tmp_path))
    assert task.classnames == ("apple pie", "baby back ribs")
    assert task.templates == ("a photo of {}, a type of food.",)

    dtd = tmp_path / "dtd" / "dtd"
    _image_folders(dtd / "images", ("banded", "bubbly"), 2)
    (dtd / "labels").mkdir()
    for split in ("train", "val", "test"):
        (dtd / "labels" / f"{split}1.txt").write_text("".join(f"{c}/{c}_{i}.jpg\n" for c in ("banded", "bubbly")
                                                             for i in range(2)))
    task = get_task("torchvision:DTD", root=str(tmp_path))
    assert task.classnames == ("banded", "bubbly") and task.templates[0] == "a photo of a {} texture."


def test_svhn_names_come_from_clip_since_torchvision_has_none():
    from paint_core.data.torchvision_tasks import _torchvision_prompts
    names, templates = _torchvision_prompts("SVHN", None)
    assert names == ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    assert templates[0] == "a photo of the number {} written on a sign"
    with pytest.raises(ValueError, match="no .classes list"):
        _torchvision_prompts("Kitti", None)  # object detection: no class labels


def test_imagenet_names_and_templates_equal_open_clips_own_copy():
    """An independent source: open_clip ships OpenAI's ImageNet names and 80 templates."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES
    from paint_core.data.clip_prompts import clip_prompts
    imagenet = clip_prompts("ImageNet")
    assert imagenet.classnames == tuple(IMAGENET_CLASSNAMES)
    assert [t.format("otter") for t in imagenet.templates] == [f("otter") for f in OPENAI_IMAGENET_TEMPLATES]


def test_every_template_has_one_slot():
    from paint_core.data.clip_prompts import clip_prompts, known_datasets
    for name in known_datasets():
        assert all(t.count("{}") == 1 for t in clip_prompts(name).templates), name


def test_unknown_and_non_dataset_names(tmp_path):
    with pytest.raises(ValueError, match="Did you mean: CIFAR10"):
        get_task("torchvision:cifr10", root=str(tmp_path))
    with pytest.raises(ValueError, match="Unknown torchvision dataset 'utils'"):  # a module, not a dataset
        get_task("torchvision:utils", root=str(tmp_path))
