"""Issue 30, item 2: a transformers CLIPModel folder converts to open_clip's layout exactly: image and text
features of the converted model equal transformers' own (tiny random configs saved locally, both activations)."""
from __future__ import annotations

import json
from pathlib import Path

import open_clip
import pytest
import torch

transformers = pytest.importorskip("transformers")

from paint_core.cli import main  # noqa: E402
from paint_core.models.hf_clip import convert_transformers_clip  # noqa: E402


def _tiny(tmp_path: Path, act: str) -> Path:
    cfg = transformers.CLIPConfig(
        text_config=dict(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=16, hidden_act=act, eos_token_id=99,
                         bos_token_id=98, pad_token_id=0),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                           num_attention_heads=3, hidden_act=act),
        projection_dim=24)
    torch.manual_seed(0)
    model = transformers.CLIPModel(cfg).eval()
    with torch.no_grad():  # nothing left at its init value: every tensor must land in the right place
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    folder = tmp_path / f"hf-{act}"
    model.save_pretrained(folder)
    return folder


def _features(hf_out) -> torch.Tensor:
    return hf_out if isinstance(hf_out, torch.Tensor) else hf_out.pooler_output


@pytest.mark.parametrize("act", ["quick_gelu", "gelu"])
@pytest.mark.slow
def test_a_transformers_clip_converts_with_equal_features(tmp_path, act):
    src = _tiny(tmp_path, act)
    out = tmp_path / f"oc-{act}"
    assert main(["convert", str(src), "--out", str(out)]) == 0
    oc, _, _ = open_clip.create_model_and_transforms("local-dir:" + str(out))
    oc.eval()
    hf = transformers.CLIPModel.from_pretrained(src).eval()
    assert any(type(m).__name__ == "QuickGELU" for m in oc.modules()) == (act == "quick_gelu")
    images = torch.randn(3, 3, 32, 32)
    ids = torch.randint(1, 97, (4, 16))
    ids[:, 0] = 98
    for row, end in enumerate([5, 9, 15, 3]):  # the end-of-text token (the highest id) pools the text
        ids[row, end] = 99
        ids[row, end + 1:] = 0
    with torch.no_grad():
        torch.testing.assert_close(oc.encode_image(images), _features(hf.get_image_features(pixel_values=images)),
                                   rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(oc.encode_text(ids), _features(hf.get_text_features(input_ids=ids)),
                                   rtol=1e-5, atol=1e-5)
        assert torch.allclose(oc.logit_scale, hf.logit_scale)
    cfg = json.loads((out / "open_clip_config.json").read_text())["model_cfg"]
    assert cfg["vision_cfg"]["width"] == 48 and cfg["text_cfg"]["vocab_size"] == 100 and cfg["embed_dim"] == 24


def test_what_does_not_convert_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        convert_transformers_clip(tmp_path, tmp_path / "out")
    src = _tiny(tmp_path, "quick_gelu")
    from safetensors.torch import load_file, save_file
    state = load_file(src / "model.safetensors")
    save_file({**state, "extra.head.weight": torch.zeros(2)}, src / "model.safetensors")
    with pytest.raises(ValueError, match="no open_clip place .*extra.head.weight"):
        convert_transformers_clip(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_vision_tower_alone_converts_with_its_base_clip(tmp_path):
    """FusionBench's task models are CLIPVisionModel folders: the fine-tuned tower with its base's text tower."""
    base = _tiny(tmp_path, "quick_gelu")
    hf = transformers.CLIPModel.from_pretrained(base).eval()
    tuned = transformers.CLIPVisionModel(hf.config.vision_config).eval()
    tuned.load_state_dict(hf.vision_model.state_dict())
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(0.01 * torch.randn_like(p))  # "fine-tuned"
    tuned.save_pretrained(tmp_path / "task")
    assert main(["convert", str(tmp_path / "task"), "--out", str(tmp_path / "nobase")]) == 1  # needs --base
    assert main(["convert", str(tmp_path / "task"), "--base", str(base), "--out", str(tmp_path / "oc")]) == 0
    oc, _, _ = open_clip.create_model_and_transforms("local-dir:" + str(tmp_path / "oc"))
    oc.eval()
    hf.vision_model.load_state_dict(tuned.state_dict())  # the expected model: base + tuned tower
    images = torch.randn(2, 3, 32, 32)
    ids = torch.tensor([[98, 5, 7, 99] + [0] * 12])
    with torch.no_grad():
        torch.testing.assert_close(oc.encode_image(images), _features(hf.get_image_features(pixel_values=images)),
                                   rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(oc.encode_text(ids), _features(hf.get_text_features(input_ids=ids)),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_a_hub_id_converts_from_the_local_cache(tmp_path):
    import os
    import subprocess
    import sys
    src = _tiny(tmp_path, "gelu")
    rev = "fedcba9876543210fedcba9876543210fedcba98"
    snapshot = tmp_path / "hf" / "hub" / "models--paint--tiny-clip" / "snapshots" / rev
    snapshot.mkdir(parents=True)
    for f in src.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text(rev)
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-m", "paint_core", "convert", "hf-hub:paint/tiny-clip", "--out",
                           str(tmp_path / "oc")], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    oc, _, _ = open_clip.create_model_and_transforms("local-dir:" + str(tmp_path / "oc"))
    hf = transformers.CLIPModel.from_pretrained(src).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(oc.eval().encode_image(images),
                                   _features(hf.get_image_features(pixel_values=images)), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_a_fusionbench_style_task_model_becomes_a_run(tmp_path, capsys):
    """The path of a FusionBench task model: the base CLIPModel and the fine-tuned vision tower converted, then
    `import-run` with the base as `local-dir:`; the run's endpoints are the two converted towers."""
    from safetensors.torch import load_file
    from paint_core import load_run
    base = tmp_path / "base"
    cfg = transformers.CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2), projection_dim=16)  # the real tokenizer's vocabulary and context
    torch.manual_seed(0)
    clip = transformers.CLIPModel(cfg)
    clip.save_pretrained(base)
    task = transformers.CLIPVisionModel(cfg.vision_config)
    task.load_state_dict(clip.vision_model.state_dict())
    with torch.no_grad():
        for p in task.parameters():
            p.add_(0.01 * torch.randn_like(p))
    task.save_pretrained(tmp_path / "task")
    assert main(["convert", str(base), "--out", str(tmp_path / "b")]) == 0
    assert main(["convert", str(tmp_path / "task"), "--base", str(base), "--out", str(tmp_path / "t")]) == 0
    assert main(["import-run", "--zeroshot", str(tmp_path / "b/open_clip_model.safetensors"), "--finetuned",
                 str(tmp_path / "t/open_clip_model.safetensors"), "--model", f"local-dir:{tmp_path / 'b'}",
                 "--task", "digits", "--supported", "shapes", "--max-eval", "20", "--out",
                 str(tmp_path / "run")]) == 0
    run = load_run(tmp_path / "run")
    tuned = load_file(tmp_path / "t/open_clip_model.safetensors")
    visual = [k for k in run.theta_ft if k.startswith("visual.")]
    assert visual and all(torch.equal(run.theta_ft[k], tuned[k].to(run.theta_ft[k].dtype)) for k in visual)
    assert any(not torch.equal(run.theta_zs[k], run.theta_ft[k]) for k in visual)  # the tower moved
    assert all(torch.equal(run.theta_zs[k], run.theta_ft[k]) for k in run.theta_zs if not k.startswith("visual."))

    # the same two transformers folders given to import-run directly: the same endpoints, with no conversion step
    assert main(["import-run", "--zeroshot", str(base), "--finetuned", str(tmp_path / "task"), "--task", "digits",
                 "--out", str(tmp_path / "direct")]) == 0
    (tmp_path / "direct").rename(tmp_path / "moved")  # the converted base travels inside the run
    direct = load_run(tmp_path / "moved")
    assert direct.meta["model"] == f"local-dir:{(tmp_path / 'moved' / 'model').resolve()}"
    assert all(torch.equal(direct.theta_zs[k], run.theta_zs[k]) and torch.equal(direct.theta_ft[k], run.theta_ft[k])
               for k in run.theta_zs)
    assert main(["export", "--run", str(tmp_path / "moved"), "--alpha", "0.5", "--format", "hub", "--out",
                 str(tmp_path / "hub")]) == 0
    import open_clip
    reloaded = open_clip.create_model_and_transforms(f"local-dir:{tmp_path / 'hub'}")[0].state_dict()
    assert all(torch.allclose(reloaded[k].float(), (0.5 * (run.theta_zs[k] + run.theta_ft[k])).float(), atol=1e-6)
               for k in visual)
    capsys.readouterr()
    assert main(["import-run", "--zeroshot", str(base), "--finetuned", str(tmp_path / "task"), "--task", "digits",
                 "--model", "ViT-B-32", "--out", str(tmp_path / "again")]) == 1
    assert "leave --model out" in capsys.readouterr().err
    assert main(["import-run", "--zeroshot", str(tmp_path / "b/open_clip_model.safetensors"), "--finetuned",
                 str(tmp_path / "task"), "--task", "digits", "--out", str(tmp_path / "again")]) == 1
    assert "--model is needed" in capsys.readouterr().err
    assert not (tmp_path / "again").exists()
