"""The real path, no download: ViT-B-32 with random weights saved to a local file, on an ImageFolder."""
import json
import os

import open_clip
import pandas as pd
import pytest
import torch

from paint_core import CheckpointError, load_checkpoint, load_model
from paint_core.cli import main
from paint_core.io.checkpoints import save_checkpoint
from conftest import write_imagefolder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vit_file(tmp_path_factory):
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    path = tmp_path_factory.mktemp("vit") / "vitb32-random.safetensors"
    save_checkpoint(path, model.state_dict(), {"model": "ViT-B-32"})
    return path


def test_cli_patches_vit_b32_on_an_imagefolder(tmp_path, vit_file, capsys):
    write_imagefolder(tmp_path / "patch", {"red_thing": (220, 30, 30), "blue_thing": (30, 30, 220)}, per_class=6)
    write_imagefolder(tmp_path / "sup", {"light": (230, 230, 230), "dark": (20, 20, 20)}, per_class=4, seed=1)
    run = tmp_path / "run"
    assert main(["finetune", "--model", "ViT-B-32", "--pretrained", str(vit_file), "--task",
                 f"imagefolder:{tmp_path / 'patch'}", "--out", str(run), "--steps", "2", "--batch-size", "4",
                 "--lr", "1e-5", "--warmup", "1"]) == 0
    meta = json.loads((run / "run.json").read_text())
    assert meta["model"] == "ViT-B-32" and meta["config"]["steps"] == 2
    ft, side = load_checkpoint(run / "finetuned.safetensors")
    assert all(k.startswith("visual.") for k in ft) and side["contains"] == "visual"
    model, _, _ = load_model("ViT-B-32", str(vit_file))
    zs = model.state_dict()
    assert any(not torch.equal(ft[k], zs[k]) for k in ft), "two steps of AdamW changed the image tower"

    assert main(["sweep", "--run", str(run), "--supported", f"imagefolder:{tmp_path / 'sup'}",
                 "--alphas", "0:1:0.5", "--batch-size", "8"]) == 0
    df = pd.read_csv(run / "sweep.csv")
    assert sorted(df["alpha"].unique()) == [0.0, 0.5, 1.0]
    assert set(df["split"]) == {"val", "test"} and len(df) == 3 * 2 * 2
    capsys.readouterr()
    assert main(["select", "--run", str(run), "--json"]) == 0
    choice = json.loads(capsys.readouterr().out)
    val = df[df.split == "val"].pivot(index="alpha", columns="task", values="accuracy")
    score = val.mean(axis=1)  # one patch and one supported task: the mean of the two
    assert choice["alpha"] == float(score[score == score.max()].index.min())

    out = tmp_path / "patched.safetensors"
    assert main(["export", "--run", str(run), "--alpha", "0", "--out", str(out)]) == 0
    exported, side = load_checkpoint(out)
    assert side["alpha"] == 0 and all(torch.equal(exported[k], zs[k]) for k in zs)
    assert main(["export", "--run", str(run), "--alpha", "1.5", "--out", str(out)]) == 1


def test_vit_b32_quickgelu_file_is_refused_as_vit_b32(tmp_path, vit_file):
    """Issue 25: the reviewer's case, a file whose sidecar says ViT-B-32-quickgelu / quick_gelu loaded as
    ViT-B-32 (features 4e-2 off), and the GELU file loaded as ViT-B-32-quickgelu."""
    quick = tmp_path / "vitb32-openai.safetensors"
    os.link(vit_file, quick)  # the same bytes (and sha256) under a sidecar that says QuickGELU
    meta = json.loads(vit_file.with_suffix(".json").read_text())
    quick.with_suffix(".json").write_text(json.dumps({**meta, "model": "ViT-B-32-quickgelu",
                                                      "activation": "quick_gelu"}))
    with pytest.raises(CheckpointError) as e:
        load_model("ViT-B-32", str(quick))
    assert str(e.value) == (f"{quick} was trained with QuickGELU activations (its sidecar: model ViT-B-32-quickgelu, "
                            "activation quick_gelu) but ViT-B-32 uses GELU: its features would be wrong. "
                            "Use --model ViT-B-32-quickgelu.")
    with pytest.raises(CheckpointError) as e:
        load_model("ViT-B-32-quickgelu", str(vit_file))
    assert str(e.value) == (f"{vit_file} was trained with GELU activations (its sidecar: model ViT-B-32) but "
                            "ViT-B-32-quickgelu uses QuickGELU: its features would be wrong. Use --model ViT-B-32.")
