"""Shared fixtures: a micro CLIP with random weights saved to and loaded back from a local file."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from paint_core.io.checkpoints import save_checkpoint
from paint_core.models.clip import register_embedded_configs


@pytest.fixture(scope="session", autouse=True)
def decode_cache(tmp_path_factory):
    """The decoded-split cache of this test session, never the user's (subprocesses inherit it)."""
    import os
    path = tmp_path_factory.mktemp("decoded")
    old = os.environ.get("PAINT_CACHE_DIR")
    os.environ["PAINT_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("PAINT_CACHE_DIR", None)
    else:
        os.environ["PAINT_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def random_micro_file(tmp_path_factory) -> str:
    register_embedded_configs()
    torch.manual_seed(0)
    model = open_clip.create_model("micro-rn-s", pretrained=None)
    path = tmp_path_factory.mktemp("weights") / "micro-random.safetensors"
    save_checkpoint(path, model.state_dict(), {"model": "micro-rn-s", "pretrained": None})
    return str(path)


@pytest.fixture()
def two_states(random_micro_file):
    """Zero-shot and 'fine-tuned' (perturbed image tower) state dicts of the micro model."""
    from paint_core import load_checkpoint
    zs, _ = load_checkpoint(random_micro_file)
    g = torch.Generator().manual_seed(1)
    ft = {k: (v + 0.1 * torch.randn(v.shape, generator=g)) if v.is_floating_point() and k.startswith("visual.")
          else v.clone() for k, v in zs.items()}
    return zs, ft


def write_imagefolder(root, classes: dict[str, tuple[int, int, int]], per_class: int, seed: int = 0) -> None:
    """Tiny ImageFolder: one colour per class with noise, so the task is learnable."""
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for name, rgb in classes.items():
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                arr = np.clip(np.array(rgb) + rng.normal(0, 20, (40, 40, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(arr).save(d / f"{i}.png")


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` (hidden ones too) with its content hash: a test compares two to show
    that a refused input wrote and lost nothing."""
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            for p in sorted(root.rglob("*"))}


def coefficient_explorer(at) -> dict:
    """The data the Task arithmetic page's coefficient explorer draws from (its browser side only displays it)."""
    import json
    [component] = [c for c in at.get("bidi_component")
                   if c.proto.component_name == "paint_explorer.coefficient_explorer"]
    return json.loads(component.proto.json)


def typographic_charts(at) -> list[dict]:
    """The data of the Typographic page's browser-drawn charts, in page order (word sweeps, then the margin)."""
    import json
    return [json.loads(c.proto.json) for c in at.get("bidi_component")
            if c.proto.component_name == "paint_explorer.typographic_charts"]


def live_coefficients(at) -> list[dict] | None:
    """What the explorer shows at the page's coefficients: one metric per task (label, value, delta, sample);
    None while that setting is not computed."""
    from dashboard.explorer.coefficients import setting_key
    data = coefficient_explorer(at)
    return data["settings"].get(setting_key(data["values"]))
