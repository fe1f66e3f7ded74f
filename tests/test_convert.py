"""`convert` never runs anything from the file (issue 13): hostile archives are refused with nothing written,
and the research code's own checkpoint kinds convert bit-exactly."""
from __future__ import annotations

import copy
import io
import os
import pickle
import sys
import types
import zipfile
from pathlib import Path

import open_clip
import pytest
import torch

import torch._utils
from paint_core import load_checkpoint
from paint_core.cli import main
from paint_core.io.safe_pickle import LEGACY_MAGIC, UnsafePickleError, read_objects
from paint_core.models.clip import register_embedded_configs


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _convert(src: Path, out: Path, model: str = "micro-rn-s") -> int:
    return main(["convert", str(src), "--model", model, "--out", str(out)])


class Payload:
    """Unpickled by a careless loader, it runs a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_torchscript_archive_is_refused_unopened(tmp_path, capsys):
    scripted = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), scripted)
    assert _convert(scripted, tmp_path / "o.safetensors") == 1
    assert "TorchScript archive" in capsys.readouterr().err
    # the same layout with a payload in its pickle: refused before any pickle is read
    marker = tmp_path / "pwned"
    crafted = tmp_path / "crafted.pt"
    with zipfile.ZipFile(crafted, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"w": Payload(marker)}))
        zf.writestr("archive/constants.pkl", pickle.dumps(Payload(marker)))
        zf.writestr("archive/code/__torch__.py", "import os\nos.system('touch pwned')\n")
    before = _snapshot(tmp_path)
    assert _convert(crafted, tmp_path / "o.safetensors") == 1
    assert "TorchScript archive" in capsys.readouterr().err
    assert not marker.exists() and _snapshot(tmp_path) == before


@pytest.mark.parametrize("save", ["torch.save", "torch.save legacy", "pickle.dump"])
def test_nested_reduce_payload_is_refused(tmp_path, save, capsys):
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.pt"
    obj = {"state_dict": {"w": torch.zeros(2)}, "args": {"nested": [Payload(marker)]}}
    if save == "pickle.dump":
        bad.write_bytes(pickle.dumps(obj))
    else:
        torch.save(obj, bad, _use_new_zipfile_serialization=(save == "torch.save"))
    before = _snapshot(tmp_path)
    assert _convert(bad, tmp_path / "o.safetensors") == 1
    assert "refused to load global posix.system" in capsys.readouterr().err
    assert not marker.exists() and _snapshot(tmp_path) == before


def _ops(*parts: bytes) -> bytes:
    return b"\x80\x02" + b"".join(parts) + b"."


def _str(s: str) -> bytes:
    return b"X" + len(s.encode()).to_bytes(4, "little") + s.encode()


@pytest.mark.parametrize("target", ["torch._utils\n_rebuild_tensor_v2\n", "collections\nOrderedDict\n",
                                    "torch\nfloat32\n"])
def test_build_on_an_allowed_callable_or_class_is_refused(tmp_path, target):
    name_before = torch._utils._rebuild_tensor_v2.__name__
    data = _ops(b"c" + target.encode(), b"}", _str("__name__"), _str("pwned"), b"s", b"b")
    (tmp_path / "build.pt").write_bytes(data)
    with pytest.raises(UnsafePickleError, match="refused to set the state"):
        read_objects(tmp_path / "build.pt")
    assert torch._utils._rebuild_tensor_v2.__name__ == name_before


def _legacy_file(path: Path, obj: object, persistent_id) -> None:
    """torch's legacy container around ``obj``, with our own persistent ids (as an attacker would write it)."""
    buf = io.BytesIO()
    for header in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(header, buf, protocol=2)
    p = pickle.Pickler(buf, protocol=2)
    p.persistent_id = persistent_id
    p.dump(obj)
    pickle.dump([], buf, protocol=2)
    path.write_bytes(buf.getvalue())


class Victim:
    """A class whose source a legacy 'module' persistent id would make torch compare and patch."""


def test_legacy_module_persistent_id_is_refused_and_writes_no_patch(tmp_path):
    src = tmp_path / "victim.py"
    src.write_text("class Victim:\n    pass\n")
    path = tmp_path / "legacy.pt"
    _legacy_file(path, {"m": Victim()}, lambda o: ("module", Victim, str(src), "class Other:\n    pass\n")
                 if isinstance(o, Victim) else None)
    before = _snapshot(tmp_path)
    obj = read_objects(path)  # the id is answered with the inert stand-in; the source is never compared
    assert obj["m"].__name__ == "Victim" and obj["m"] is not Victim and obj["m"].__module__.startswith("paint_core.stub")
    assert _snapshot(tmp_path) == before  # no victim.patch
    _legacy_file(path, {"m": Victim()}, lambda o: ("module", "not a class", str(src), "") if isinstance(o, Victim) else None)
    with pytest.raises(UnsafePickleError, match="names no class"):
        read_objects(path)


@pytest.fixture(scope="module")
def research_model():
    register_embedded_configs()
    torch.manual_seed(3)
    return open_clip.create_model("micro-rn-s", pretrained=None)


@pytest.fixture()
def research_classes(monkeypatch):
    """Stand-ins for the research code's classes under their own module names (the files name them)."""
    modules = {}
    for name in ("src", "src.modeling", "clip", "clip.model"):
        modules[name] = types.ModuleType(name)
        monkeypatch.setitem(sys.modules, name, modules[name])

    class ImageEncoder(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

    class ClassificationHead(torch.nn.Linear):
        pass

    for cls, mod in ((ImageEncoder, "src.modeling"), (ClassificationHead, "src.modeling")):
        cls.__module__ = mod
        cls.__qualname__ = cls.__name__
        setattr(modules[mod], cls.__name__, cls)
    return ImageEncoder, ClassificationHead


@pytest.mark.parametrize("kind", ["patching pickle.dump fp32", "patching pickle.dump fp16 (GPU run)",
                                  "task_vectors torch.save encoder", "torch.save legacy encoder",
                                  "zero-shot state dict"])
@pytest.mark.slow
def test_research_checkpoints_convert_bit_exactly(tmp_path, research_model, research_classes, kind, monkeypatch):
    ImageEncoder, _ = research_classes
    model = copy.deepcopy(research_model)
    with torch.no_grad():
        model.visual.attnpool.c_proj.weight.add_(0.5)  # not the random init: the file's own values
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    src = tmp_path / "checkpoint.pt"
    encoder = ImageEncoder(model)
    if kind.startswith("patching"):
        if "fp16" in kind:
            encoder = encoder.half()
            reference = {k: v.half().float() if v.is_floating_point() else v for k, v in reference.items()}
        src.write_bytes(pickle.dumps(encoder.cpu()))
    elif kind == "task_vectors torch.save encoder":
        torch.save(encoder, src)
    elif kind == "torch.save legacy encoder":
        torch.save(encoder, src, _use_new_zipfile_serialization=False)
    else:
        torch.save({"state_dict": model.state_dict()}, src)
    for name in ("src", "src.modeling", "clip", "clip.model"):  # the user's machine has no research code
        monkeypatch.delitem(sys.modules, name)
    out = tmp_path / "converted.safetensors"
    assert _convert(src, out) == 0
    state, meta = load_checkpoint(out)
    assert set(state) == set(reference)
    assert all(torch.equal(state[k], reference[k].to(state[k].dtype)) for k in reference)
    assert meta["converted_from"] == str(src)


def test_truncated_and_garbage_files_are_one_line_errors(tmp_path, research_model, capsys):
    good = tmp_path / "good.pt"
    torch.save(research_model.state_dict(), good, _use_new_zipfile_serialization=False)
    cases = {"truncated.pt": good.read_bytes()[: len(good.read_bytes()) // 2], "garbage.pt": os.urandom(4096),
             "empty.pt": b"", "text.pt": b"not a checkpoint at all\n"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        assert _convert(tmp_path / name, tmp_path / f"{name}.safetensors") == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, (name, err)
        assert not (tmp_path / f"{name}.safetensors").exists()


@pytest.fixture()
def tiny_pair(tmp_path):
    """A tiny open_clip config and its -quickgelu twin, registered from tmp_path (as open_clip's tests do)."""
    import json
    cfg = {"embed_dim": 32, "vision_cfg": {"image_size": 48, "layers": [1, 1, 1, 1], "width": 16, "patch_size": None},
           "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}}
    for name, quick in (("tiny-act", False), ("tiny-act-quickgelu", True)):
        (tmp_path / f"{name}.json").write_text(json.dumps({**cfg, **({"quick_gelu": True} if quick else {})}))
        open_clip.add_model_config(tmp_path / f"{name}.json")
    return "tiny-act", "tiny-act-quickgelu"


def test_activation_is_read_from_the_file(tmp_path, tiny_pair, research_classes, monkeypatch, capsys):
    from paint_core.models.clip import load_model
    ImageEncoder, _ = research_classes
    gelu, quick = tiny_pair
    torch.manual_seed(0)
    research = open_clip.create_model(quick, pretrained=None).eval()  # OpenAI-style: QuickGELU
    src = tmp_path / "openai_style.pt"
    src.write_bytes(pickle.dumps(ImageEncoder(research)))
    monkeypatch.delitem(sys.modules, "src.modeling")
    assert _convert(src, tmp_path / "wrong.safetensors", model=gelu) == 1
    err = capsys.readouterr().err
    assert "trained with QuickGELU activations" in err and f"Use --model {quick}." in err
    assert not (tmp_path / "wrong.safetensors").exists()
    assert _convert(src, tmp_path / "right.safetensors", model=quick) == 0
    assert "activation quick_gelu" in capsys.readouterr().out
    converted = load_model(quick, str(tmp_path / "right.safetensors"))[0]
    tokens = open_clip.get_tokenizer(quick)(["a photo of a red circle"])
    with torch.no_grad():
        assert torch.equal(converted.encode_text(tokens), research.encode_text(tokens))
        # the same weights read as the GELU model give other features: the mismatch the check prevents
        as_gelu = open_clip.create_model(gelu, pretrained=None).eval()
        as_gelu.load_state_dict(converted.state_dict())
        assert not torch.allclose(as_gelu.encode_text(tokens), research.encode_text(tokens), atol=1e-3)


@pytest.mark.slow
def test_the_sidecar_activation_is_checked_on_every_load(tmp_path, tiny_pair, research_classes, monkeypatch,
                                                         capsys):
    """Issue 25: a converted QuickGELU checkpoint loaded as the GELU model (load_model, import-run; the
    dashboard's checkpoint fields call load_model) is refused, naming the right model, by the sidecar's
    activation or, for files that record only the model, by its name."""
    from paint_core.io.checkpoints import CheckpointError, save_checkpoint
    from paint_core.models.clip import load_model
    ImageEncoder, _ = research_classes
    gelu, quick = tiny_pair
    torch.manual_seed(0)
    src = tmp_path / "openai_style.pt"
    src.write_bytes(pickle.dumps(ImageEncoder(open_clip.create_model(quick, pretrained=None))))
    monkeypatch.delitem(sys.modules, "src.modeling")
    converted = tmp_path / "converted.safetensors"
    assert _convert(src, converted, model=quick) == 0
    refusal = (f"{converted} was trained with QuickGELU activations (its sidecar: model {quick}, activation "
               f"quick_gelu) but {gelu} uses GELU: its features would be wrong. Use --model {quick}.")
    with pytest.raises(CheckpointError) as e:
        load_model(gelu, str(converted))
    assert str(e.value) == refusal
    capsys.readouterr()
    assert main(["import-run", "--model", gelu, "--zeroshot", str(converted), "--finetuned", str(converted),
                 "--task", "digits", "--out", str(tmp_path / "run")]) == 1
    assert capsys.readouterr().err == f"error: {refusal}\n"
    assert not (tmp_path / "run").exists()
    state, _ = load_checkpoint(converted)
    named = tmp_path / "named.safetensors"  # a sidecar with the model's name only (an export, a fine-tune)
    save_checkpoint(named, state, {"model": quick})
    with pytest.raises(CheckpointError) as e:
        load_model(gelu, str(named))
    assert str(e.value) == (f"{named} was trained with QuickGELU activations (its sidecar: model {quick}) but "
                            f"{gelu} uses GELU: its features would be wrong. Use --model {quick}.")
    gelu_file = tmp_path / "gelu.safetensors"
    save_checkpoint(gelu_file, state, {"model": gelu})
    with pytest.raises(CheckpointError, match=f"trained with GELU activations .* Use --model {gelu}.$"):
        load_model(quick, str(gelu_file))
    loaded = load_model(quick, str(converted))[0].state_dict()  # the right model loads it
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_activation_without_a_variant_is_said(tmp_path, research_classes, monkeypatch, capsys):
    ImageEncoder, _ = research_classes
    register_embedded_configs()
    src = tmp_path / "quick.pt"
    src.write_bytes(pickle.dumps(ImageEncoder(open_clip.create_model("micro-rn-s", force_quick_gelu=True))))
    monkeypatch.delitem(sys.modules, "src.modeling")
    assert _convert(src, tmp_path / "o.safetensors") == 1
    assert "open_clip has no QuickGELU variant of micro-rn-s" in capsys.readouterr().err


@pytest.mark.slow
def test_import_run_from_research_checkpoints(tmp_path, research_model, research_classes, monkeypatch, capsys):
    """A PAINT-style experiment (pickled zero-shot and fine-tuned image encoders) becomes a run directory
    that sweep / select / load_run use, with the sweep's alpha-1 accuracy that of the fine-tuned model."""
    from paint_core import evaluate, load_run
    from paint_core.data.tasks import get_task
    from paint_core.engine.evaluation import materialize, zero_shot_head
    ImageEncoder, _ = research_classes
    zs_model = copy.deepcopy(research_model)
    ft_model = copy.deepcopy(research_model)
    with torch.no_grad():
        for p in ft_model.visual.parameters():
            p.add_(0.01 * torch.randn_like(p))
    (tmp_path / "zeroshot.pt").write_bytes(pickle.dumps(ImageEncoder(zs_model)))
    torch.save(ImageEncoder(ft_model), tmp_path / "finetuned.pt")
    monkeypatch.delitem(sys.modules, "src.modeling")
    run_dir = tmp_path / "runs" / "imported"
    assert main(["import-run", "--zeroshot", str(tmp_path / "zeroshot.pt"), "--finetuned", str(tmp_path / "finetuned.pt"),
                 "--model", "micro-rn-s", "--task", "digits", "--supported", "shapes", "--alphas", "0,1",
                 "--max-eval", "30", "--out", str(run_dir)]) == 0
    run = load_run(run_dir)
    assert all(torch.equal(run.theta_zs[k], v) for k, v in zs_model.state_dict().items())
    assert all(torch.equal(run.theta_ft[k], v) for k, v in ft_model.state_dict().items())
    task = get_task("digits")
    head = zero_shot_head(zs_model, open_clip.get_tokenizer("micro-rn-s"), task.classnames, task.templates)
    _, _, preprocess = open_clip.create_model_and_transforms("micro-rn-s", pretrained=None)
    expected = evaluate(ft_model.eval(), head, materialize(task.split("test", preprocess), 30))
    import pandas as pd
    sweep = pd.read_csv(run_dir / "sweep.csv")
    got = sweep.query("alpha == 1.0 and task == 'digits' and split == 'test'")["accuracy"].item()
    assert got == pytest.approx(expected, abs=1e-9)
    assert main(["select", "--run", str(run_dir)]) == 0
    # a fine-tuned file that also changed the text tower is not a PAINT patch
    with torch.no_grad():
        ft_model.token_embedding.weight.add_(1.0)
    torch.save(ft_model.state_dict(), tmp_path / "both_towers.pt")
    assert main(["import-run", "--zeroshot", str(tmp_path / "zeroshot.pt"), "--finetuned",
                 str(tmp_path / "both_towers.pt"), "--model", "micro-rn-s", "--task", "digits",
                 "--out", str(tmp_path / "runs" / "bad")]) == 1
    assert "outside the image encoder (first: 'token_embedding.weight')" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["imported"]  # nothing half-written


@pytest.mark.slow
def test_import_run_names_a_precision_mismatch(tmp_path, research_model, capsys):
    """Issue 25: a float32 zero-shot with a float16 fine-tune was refused as 'changes weights outside the
    image encoder', without a word about precision; a real change outside it is still that refusal."""
    zs = research_model.state_dict()
    ft = {k: (v + 0.01 if k.startswith("visual.") else v).half() if v.is_floating_point() else v for k, v in zs.items()}
    torch.save(zs, tmp_path / "zs32.pt")
    torch.save(ft, tmp_path / "ft16.pt")
    args = ["import-run", "--zeroshot", str(tmp_path / "zs32.pt"), "--model", "micro-rn-s", "--task", "digits"]
    assert main([*args, "--finetuned", str(tmp_path / "ft16.pt"), "--out", str(tmp_path / "run")]) == 1
    assert capsys.readouterr().err == (
        f"error: {tmp_path / 'ft16.pt'} and {tmp_path / 'zs32.pt'} differ outside the image encoder only by rounding "
        "to float16: they were saved at different precisions (e.g. a float32 zero-shot and a float16 fine-tune). "
        "Save both at one precision (e.g. both in float16) and import again\n")
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in zs.items()}, tmp_path / "zs16.pt")
    assert main(["import-run", "--zeroshot", str(tmp_path / "zs16.pt"), "--model", "micro-rn-s", "--task", "digits",
                 "--finetuned", str(tmp_path / "ft16.pt"), "--out", str(tmp_path / "run")]) == 0  # the advice works
    ft["token_embedding.weight"] = ft["token_embedding.weight"] + 1
    torch.save(ft, tmp_path / "ft16_text.pt")
    assert main([*args, "--finetuned", str(tmp_path / "ft16_text.pt"), "--out", str(tmp_path / "run2")]) == 1
    assert "changes weights outside the image encoder (first: 'token_embedding.weight')" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ft16.pt", "ft16_text.pt", "run", "zs16.pt", "zs32.pt"]
