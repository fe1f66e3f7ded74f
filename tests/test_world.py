import numpy as np
import pytest

from paint_core import get_task, list_tasks
from paint_core.data import world
from paint_core.data.corpus import make_corpus


def test_world_is_deterministic():
    a, ca = make_corpus(20, seed=3)
    b, cb = make_corpus(20, seed=3)
    assert np.array_equal(a, b) and ca == cb
    c, _ = make_corpus(20, seed=4)
    assert not np.array_equal(a, c)


def test_generator_rejects_nonsense():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="Unknown colour 'mauve'. Choose from: red"):
        world.render_object(rng, "circle", "mauve")
    with pytest.raises(ValueError, match="count must be between 1 and 6"):
        world.render_count(rng, 0, ("circle",), ("red",))
    with pytest.raises(ValueError, match="Unknown shape"):
        world.render_object(rng, "blob", "red")


def test_digit_pipeline_is_the_sklearn_one():
    from sklearn.datasets import load_digits
    d = load_digits()
    img = np.asarray(world.digit_grid_to_image(d.images[0]))
    assert img.shape == (64, 64, 3)
    # corner pixels of a digit are blank in sklearn's grid, so black here
    assert img[0, 0].sum() == 0 and img.max() > 200


@pytest.mark.parametrize("name", list(list_tasks()))
def test_every_task_has_three_disjoint_splits(name):
    task = get_task(name)
    sizes = {s: len(task.split(s)) for s in ("train", "val", "test")}
    assert all(n > 0 for n in sizes.values())
    img, label = task.split("val")[0]
    assert 0 <= label < len(task.classnames)
    img2, label2 = task.split("val")[0]
    assert np.array_equal(np.asarray(img), np.asarray(img2)) and label == label2
    assert not np.array_equal(np.asarray(task.split("test")[0][0]), np.asarray(img))


def test_digits_splits_are_disjoint_and_cover_sklearn():
    from paint_core.data.tasks import _sklearn_digits
    _, targets, idx = _sklearn_digits()
    all_idx = np.concatenate(list(idx.values()))
    assert len(set(all_idx)) == len(all_idx) == len(targets)


def test_unknown_task_lists_choices():
    with pytest.raises(ValueError, match="Did you mean: digits"):
        get_task("digts")


def test_torchvision_task_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="needs a data root"):
        get_task("torchvision:MNIST")
    with pytest.raises(ValueError, match="Did you mean: CIFAR10"):
        get_task("torchvision:CIFR10", root=str(tmp_path))
    with pytest.raises(ValueError, match="not readable under .*add --download"):
        get_task("torchvision:MNIST", root=str(tmp_path))
