"""Smoke tests parametrized over the registries themselves, so a new entry is exercised without a new test:
every dashboard page, every merge method, every prompt kind, every embedded task and model."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from paint_core.core.methods import MERGE_METHODS, merge
from paint_core.core.task_vectors import TaskVector
from paint_core.data.embedded import EMBEDDED_TASKS
from paint_core.data.tasks import get_task
from paint_core.engine.prompts import KINDS, PromptConfig, PromptLearner
from paint_core.models.clip import EMBEDDED_MODELS, load_model

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
PAGES = re.findall(r'st\.Page\(PAGES / "([a-z_]+\.py)", title="([^"]+)"', APP.read_text())


def test_the_page_registry_is_read():
    assert len(PAGES) == 10 and PAGES[0] == ("story.py", "Start here") and ("patch.py", "Patch") in PAGES


@pytest.mark.slow
@pytest.mark.parametrize("page, title", PAGES)
def test_every_dashboard_page_renders(page, title):
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(APP), default_timeout=300)
    at.run()
    at.switch_page(f"app_pages/{page}").run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.title and at.title[0].value  # the page drew its own heading


@pytest.mark.parametrize("method", MERGE_METHODS)
def test_every_merge_method_keeps_keys_shapes_and_base(method):
    g = torch.Generator().manual_seed(0)
    a = TaskVector(vector={"w": torch.randn(4, 3, generator=g), "b": torch.randn(3, generator=g)}, base="m@1")
    b = TaskVector(vector={"w": torch.randn(4, 3, generator=g), "b": torch.randn(3, generator=g)}, base="m@1")
    out = merge([a, b], method, _ToyData())
    assert out.base == "m@1" and {k: v.shape for k, v in out.vector.items()} == {"w": (4, 3), "b": (3,)}
    assert any(not torch.equal(out.vector[k], torch.zeros_like(out.vector[k])) for k in out.vector)
    with pytest.raises(ValueError, match="different base models"):
        merge([a, TaskVector(vector=b.vector, base="other@2")], method, _ToyData())


class _ToyData:
    """Statistics for two toy task vectors ({"w": [4, 3], "b": [3]}), for the merges that learn from data."""

    def fishers(self, n):
        return [{"w": torch.ones(4, 3)}, {"w": torch.full((4, 3), 3.0)}]

    def grams(self, n):
        return [{"w": torch.eye(3)}, {"w": 2 * torch.eye(3)}]

    def learn_coefficients(self, vectors, layerwise, n, init, steps, lr):
        return [{"all": 0.5, "w": 0.5, "b": 0.5} for _ in vectors]


@pytest.mark.parametrize("kind", KINDS)
def test_every_prompt_kind_builds_text_features(kind):
    model, _, tokenizer = load_model("micro-rn-s")
    learner = PromptLearner(128, PromptConfig(kind=kind))
    feats = learner.text_features(model, tokenizer, ["circle", "square", "star"])
    assert feats.shape == (3, 128) and torch.allclose(feats.norm(dim=-1), torch.ones(3), atol=1e-5)


@pytest.mark.parametrize("name", list(EMBEDDED_TASKS))
def test_every_embedded_task_has_three_splits(name):
    task = get_task(name)
    assert len(task.classnames) >= 2 and all(len(task.split(s)) > 0 for s in ("train", "val", "test"))
    image, label = task.split("test")[0]
    assert 0 <= label < len(task.classnames) and image.size[0] >= 8


@pytest.mark.parametrize("name", list(EMBEDDED_MODELS))
def test_every_embedded_model_loads_verified(name):
    model, preprocess, tokenizer = load_model(name)
    assert not model.training and tokenizer(["a photo"]).shape[0] == 1
