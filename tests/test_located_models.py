"""Issue 30, item 1: models named as open_clip names them, ``local-dir:PATH`` and ``hf-hub:ORG/REPO``, tested
offline: a folder in open_clip's layout, and a local Hugging Face cache laid out as the hub client keeps it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import open_clip
import pytest
import torch
from safetensors.torch import save_file

from paint_core.models.clip import load_model, locate_model, save_open_clip_config

ROOT = Path(__file__).resolve().parent.parent
REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """micro-rn-s saved as open_clip's save_for_hf lays a model out: config + open_clip_model.safetensors."""
    out = tmp_path_factory.mktemp("located") / "micro-rn-s"
    out.mkdir()
    model, _, _ = load_model("micro-rn-s")
    save_open_clip_config(model, "micro-rn-s", out / "open_clip_config.json")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "open_clip_model.safetensors")
    return out


@pytest.fixture(scope="module")
def hf_home(folder, tmp_path_factory) -> Path:
    """A Hugging Face cache holding the repo paint/micro-rn-s at one revision, as huggingface_hub writes it."""
    home = tmp_path_factory.mktemp("hf")
    repo = home / "hub" / "models--paint--micro-rn-s"
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    for f in folder.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    return home


def test_a_local_dir_name_loads_the_folders_weights_and_refuses_an_empty_folder(folder, tmp_path):
    model, preprocess, tokenizer = load_model("local-dir:" + str(folder))
    reference, _, _ = load_model("micro-rn-s")
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in model.state_dict().items())
    text = ["a photo of a circle", "the number: 7"]
    assert torch.equal(tokenizer(text), open_clip.get_tokenizer("micro-rn-s")(text))
    assert preprocess.transforms[0].size == 48  # the folder's own preprocessing (the micro models see 48 px)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "open_clip_config.json").write_text((folder / "open_clip_config.json").read_text())
    with pytest.raises(FileNotFoundError, match="no weights in"):  # never random weights in silence
        load_model("local-dir:" + str(empty))
    with pytest.raises(FileNotFoundError, match="no open_clip_config.json"):
        load_model("local-dir:" + str(tmp_path))


def _cli(args: list[str], hf_home: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "paint_core", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.mark.slow
def test_a_hub_name_finetunes_sweeps_and_exports_from_the_local_cache(hf_home, tmp_path):
    name = "hf-hub:paint/micro-rn-s"
    done = _cli(["finetune", "--model", name, "--task", "digits", "--steps", "3", "--batch-size", "8",
                 "--out", "runs/hub"], hf_home, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    meta = json.loads((tmp_path / "runs/hub/run.json").read_text())
    assert meta["model"] == name and meta["provenance"]["model_revision"] == REVISION
    done = _cli(["sweep", "--run", "runs/hub", "--supported", "shapes", "--alphas", "0,1", "--max-eval", "20"],
                hf_home, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    done = _cli(["export", "--run", "runs/hub", "--alpha", "1", "--out", "runs/hub-patched"], hf_home, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    model, _, _ = open_clip.create_model_and_transforms("local-dir:" + str(tmp_path / "runs/hub-patched"))
    from safetensors.torch import load_file
    tuned = load_file(tmp_path / "runs/hub/finetuned.safetensors")
    state = model.state_dict()
    assert all(torch.equal(state[k], v.to(state[k].dtype)) for k, v in tuned.items())  # alpha 1: the fine-tune
    missing = _cli(["finetune", "--model", "hf-hub:paint/not-there", "--task", "digits", "--steps", "1",
                    "--out", "runs/x"], hf_home, tmp_path)
    assert missing.returncode == 1 and "not-there: cannot get open_clip_config.json" in missing.stderr
    assert "local cache (HF_HOME)" in missing.stderr and not (tmp_path / "runs/x").exists()


def test_the_hub_revision_comes_from_the_cache(hf_home, monkeypatch):
    import huggingface_hub.constants as hc
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    located = locate_model("hf-hub:paint/micro-rn-s")
    assert located.revision == REVISION and located.weights.name == "open_clip_model.safetensors"


def test_batched_heads_equal_the_one_class_at_a_time_heads():
    """Issue 30, item 5: heads built ten classes per text-tower call equal the heads built class by class."""
    import torch.nn.functional as F
    from paint_core.data.tasks import get_task
    from paint_core.engine.evaluation import zero_shot_head
    model, _, tokenizer = load_model("micro-rn-s")
    task = get_task("digits")  # 10 classes; with the shapes' 6 classes below, batches both full and partial
    for names, templates in ((task.classnames, task.templates), ([f"class {i}" for i in range(23)], task.templates)):
        with torch.no_grad():
            one_by_one = torch.stack([F.normalize(F.normalize(model.encode_text(tokenizer(
                [t.format(c) for t in templates])), dim=-1).mean(0), dim=-1) for c in names])
        batched = zero_shot_head(model, tokenizer, names, templates)
        assert batched.shape == one_by_one.shape
        torch.testing.assert_close(batched, one_by_one, rtol=0, atol=2e-6)
        assert torch.equal(batched.argmax(0), one_by_one.argmax(0))


def test_requirements_txt_is_the_packages_dependencies():
    import tomllib
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    listed = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert listed == declared


def test_the_dashboard_offers_located_models_by_pattern_and_inside_its_roots(folder, tmp_path, monkeypatch):
    from dashboard.policy import check_finetune, check_model, policy
    from paint_core.io.writes import WriteRefused
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PAINT_MODELS", "micro-rn-s,local-dir:*,hf-hub:paint/*")
    monkeypatch.setenv("PAINT_DATA_ROOTS", str(folder.parent))
    monkeypatch.delenv("PAINT_ALLOW_DOWNLOAD", raising=False)
    server = policy()
    assert check_model(server, f"local-dir:{folder}") == f"local-dir:{folder.resolve()}"
    with pytest.raises(WriteRefused, match="outside"):  # a folder outside the readable roots
        check_model(server, f"local-dir:{tmp_path}")
    with pytest.raises(WriteRefused, match="PAINT_ALLOW_DOWNLOAD"):
        check_model(server, "hf-hub:paint/micro-rn-s")
    with pytest.raises(WriteRefused, match="not offered"):
        check_model(server, "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K")
    monkeypatch.setenv("PAINT_ALLOW_DOWNLOAD", "1")
    assert check_model(policy(), "hf-hub:paint/micro-rn-s") == "hf-hub:paint/micro-rn-s"
    req = check_finetune(policy(), f"local-dir:{folder}", "", "digits", "shapes", "runs/x", 10, 10)
    assert req.model == f"local-dir:{folder.resolve()}" and req.pretrained is None


@pytest.mark.slow
def test_a_hub_export_carries_a_model_card_and_reloads_with_equal_weights(tmp_path):
    """Issue 30, item 3: `export --format hub` writes open_clip's hub folder plus a README.md card naming the base
    model, the sha256 of the fine-tune, alpha and the sweep's accuracies at it; plain open_clip loads it."""
    from paint_core import interpolate, load_run
    from paint_core.cli import main
    run_dir = ROOT / "cached_results" / "micro-rn-s" / "digits"
    out = tmp_path / "hub"
    assert main(["export", "--run", str(run_dir), "--alpha", "0.5", "--format", "hub", "--out", str(out)]) == 0
    card = (out / "README.md").read_text()
    meta = json.loads((run_dir / "run.json").read_text())
    import pandas as pd
    sweep = pd.read_csv(run_dir / "sweep.csv")
    digits = sweep[(sweep["alpha"] == 0.5) & (sweep["task"] == "digits") & (sweep["split"] == "test")].iloc[0]
    assert card.startswith("---\ntags:\n- clip\n") and "library_name: open_clip" in card
    assert "- **Coefficient:** alpha 0.5 (key 0.5)" in card and meta["finetuned_sha256"] in card
    assert f"digits (test, {int(digits['n'])} images): {100 * digits['accuracy']:.1f}%" in card
    assert "- **Base model:** micro-rn-s" in card
    model, _, _ = open_clip.create_model_and_transforms("local-dir:" + str(out))
    run = load_run(run_dir)
    expected = interpolate(run.theta_zs, run.theta_ft, 0.5)
    state = model.state_dict()
    assert all(torch.equal(state[k], v.to(state[k].dtype)) for k, v in expected.items())
    assert main(["export", "--run", str(run_dir), "--alpha", "0.5", "--format", "hub",
                 "--out", str(tmp_path / "x.safetensors")]) == 1  # a hub export is a folder


@pytest.mark.slow
def test_the_dashboard_exports_a_hub_folder_as_a_zip(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest
    monkeypatch.chdir(tmp_path)
    for var in ("PAINT_WRITE_ROOT", "PAINT_READ_ONLY"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "runs").mkdir()
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("app_pages/models_runs.py").run()
    at.text_input(key="ex_run").set_value(str(ROOT / "cached_results" / "micro-rn-s" / "digits"))
    at.text_input(key="ex_alpha").set_value("0.5")
    at.text_input(key="ex_out").set_value("runs/hub-export")
    at.checkbox(key="ex_hub").check()
    at.button(key="ex_go").click().run()
    assert not at.error, [e.value for e in at.error]
    assert any("README.md model card" in s.value and "alpha 0.5" in s.value for s in at.success)
    assert "- **Coefficient:** alpha 0.5" in (tmp_path / "runs/hub-export/README.md").read_text()
    assert any("Download the folder as a zip" in str(d.proto) for d in at.get("download_button"))


@pytest.mark.slow
def test_a_timm_hub_name_loads_its_weights_from_the_local_cache(tmp_path):
    """timm hub names for the closed-vocabulary encoders: a repository saved by timm's own save_for_hf, found in a
    local Hugging Face cache offline, gives exactly the saved weights."""
    import timm
    from timm.models._hub import save_for_hf
    torch.manual_seed(1)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, depth=2)
    snapshot = tmp_path / "hub" / "models--paint--tiny-vit" / "snapshots" / REVISION
    save_for_hf(model, str(snapshot), model_args={"depth": 2}, safe_serialization=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text(REVISION)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "expected.safetensors")
    code = ("import torch; from safetensors.torch import load_file; "
            "from paint_core.models.encoders import create_encoder; "
            "enc, _ = create_encoder('hf-hub:paint/tiny-vit'); exp = load_file('expected.safetensors'); "
            "st = enc.state_dict(); assert set(st) == set(exp), 'keys'; "
            "assert all(torch.equal(st[k], exp[k]) for k in exp), 'values'; print('same weights')")
    env = {**os.environ, "HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and "same weights" in done.stdout, done.stderr[-2000:]
