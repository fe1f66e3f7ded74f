"""An export carries its config: a folder in open_clip's own layout, which plain open_clip loads (issue 26)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from paint_core import interpolate, load_run
from paint_core.cli import main
from paint_core.configs import FinetuneConfig
from paint_core.data.world import render_object
from paint_core.io.paths import CACHED_RESULTS_DIR
from paint_core.studies.patch import run_finetune

PLAIN_OPEN_CLIP = """
import json, sys
import numpy as np, torch, open_clip
from PIL import Image
folder, image, out = sys.argv[1:]
model, _, preprocess = open_clip.create_model_and_transforms("local-dir:" + folder)
tokenizer = open_clip.get_tokenizer("local-dir:" + folder)
model.eval()
with torch.no_grad():
    x = preprocess(Image.open(image)).unsqueeze(0)
    np.savez(out, pixels=x.numpy(), image=model.encode_image(x).numpy(),
             text=model.encode_text(tokenizer(["a photo of a circle.", "a photo of the number seven."])).numpy())
print(json.dumps(sorted(m for m in sys.modules if m.startswith("paint_core"))))
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "run"
    run_finetune(out, "micro-rn-s", None, "digits", FinetuneConfig(steps=2, batch_size=8, warmup=1))
    return out


@pytest.mark.slow
def test_a_folder_export_loads_in_plain_open_clip_with_the_tools_features(run, tmp_path, capsys):
    """`paint-core export --out DIR` writes open_clip_config.json + open_clip_model.safetensors; a fresh
    interpreter that never imports paint_core (no add_model_config) loads it with local-dir: and computes the
    same preprocessing, image and text features as the tool's model at that alpha."""
    folder = tmp_path / "patched"
    assert main(["export", "--run", str(run), "--alpha", "0.5", "--out", str(folder)]) == 0
    assert f"open_clip.create_model_and_transforms('local-dir:{folder}')" in capsys.readouterr().out
    assert sorted(p.name for p in folder.iterdir()) == ["open_clip_config.json", "open_clip_model.json",
                                                        "open_clip_model.safetensors"]
    config = json.loads((folder / "open_clip_config.json").read_text())
    assert config["model_cfg"]["vision_cfg"]["width"] == 32 and config["preprocess_cfg"]["mean"]
    image = tmp_path / "circle.png"
    render_object(np.random.default_rng(3), "circle", "red").resize((96, 80)).save(image)
    out = tmp_path / "features.npz"
    done = subprocess.run([sys.executable, "-c", PLAIN_OPEN_CLIP, str(folder), str(image), str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []  # plain open_clip: paint_core never imported
    theirs = np.load(out)

    r = load_run(run)
    r.model.load_state_dict(interpolate(r.theta_zs, r.theta_ft, 0.5))
    from PIL import Image
    with torch.no_grad():
        x = r.preprocess(Image.open(image)).unsqueeze(0)
        image_features = r.model.encode_image(x).numpy()
        text_features = r.model.encode_text(r.tokenizer(["a photo of a circle.",
                                                           "a photo of the number seven."])).numpy()
    np.testing.assert_array_equal(theirs["pixels"], x.numpy())
    np.testing.assert_allclose(theirs["image"], image_features, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(theirs["text"], text_features, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_a_folder_export_replaces_only_an_earlier_export_and_only_when_asked(run, tmp_path, capsys):
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"someone's photo")
    assert main(["export", "--run", str(run), "--alpha", "0.5", "--out", str(foreign), "--overwrite"]) == 1
    assert "is not an export made by this tool" in capsys.readouterr().err
    assert [p.name for p in foreign.iterdir()] == ["cat.jpg"]
    assert main(["export", "--run", str(run), "--alpha", "0.5", "--out",
                 str(CACHED_RESULTS_DIR / "patched")]) == 1
    assert "shipped results" in capsys.readouterr().err and not (CACHED_RESULTS_DIR / "patched").exists()

    folder = tmp_path / "patched"
    assert main(["export", "--run", str(run), "--alpha", "0.5", "--out", str(folder)]) == 0
    first = (folder / "open_clip_model.safetensors").read_bytes()
    assert main(["export", "--run", str(run), "--alpha", "1", "--out", str(folder)]) == 1
    assert "replacing it must be asked for (CLI: --overwrite)" in capsys.readouterr().err
    assert (folder / "open_clip_model.safetensors").read_bytes() == first
    assert main(["export", "--run", str(run), "--alpha", "1", "--out", str(folder), "--overwrite"]) == 0
    assert json.loads((folder / "open_clip_model.json").read_text())["alpha"] == 1.0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".patched")]  # no staging folder left behind
