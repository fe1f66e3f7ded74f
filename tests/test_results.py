"""One results format with honest resume: a study reuses only what was computed from the same inputs."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import paint_core.studies.relatives as relatives
from paint_core.engine.finetune import FinetuneConfig
from paint_core.io.results import RESULTS_SCHEMA, resume, write_results
from paint_core.studies.patch import run_finetune, run_sweep

ROOT = Path(__file__).resolve().parent.parent
CACHED = ROOT / "cached_results"
TINY = FinetuneConfig(steps=3, batch_size=8, warmup=1)


def test_resume_needs_equal_inputs(tmp_path):
    f = tmp_path / "r.json"
    write_results(f, "demo", {"k": 20, "tasks": ("a", "b")}, {"acc": 0.5}, command="test")
    doc = json.loads(f.read_text())
    assert doc["schema"] == RESULTS_SCHEMA and doc["inputs"] == {"k": 20, "tasks": ["a", "b"]}
    assert doc["provenance"]["command"] == "test" and doc["provenance"]["code_version"]
    assert resume(f, "demo", {"k": 20, "tasks": ["a", "b"]}) == {"acc": 0.5}
    assert resume(f, "demo", {"k": 80, "tasks": ["a", "b"]}) == {}
    with pytest.raises(ValueError, match="holds demo results, not other"):
        resume(f, "other", {"k": 20})
    before = f.read_text()
    write_results(f, "demo", {"k": 20, "tasks": ["a", "b"]}, {"acc": 0.5}, command="again")
    assert f.read_text() == before  # the same results from the same inputs: the file is left as it was


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("runs")
    out = []
    for task in ("digits", "counting"):
        run_finetune(root / task, "micro-rn-s", None, task, TINY)
        run_sweep(root / task, ["shapes"], [0.0, 1.0], max_eval=20)
        out.append(root / task)
    return out


def _ties(runs, out: Path, k: float, max_eval: int = 20) -> dict:
    return relatives.arithmetic_study(runs, ["shapes"], out, merges={"ties": {"method": "ties", "k": k}},
                                      lambdas=[0.0, 0.5, 1.0, 1.5], max_eval=max_eval)


@pytest.mark.slow
def test_changing_k_recomputes_ties_and_equal_inputs_reuse(two_runs, tmp_path, monkeypatch):
    out = tmp_path / "arith.json"
    first = _ties(two_runs, out, k=1)["results"]["addition"]["ties"]
    fresh_100 = _ties(two_runs, tmp_path / "fresh.json", k=100)["results"]["addition"]["ties"]
    assert first["val_sweep"] != fresh_100["val_sweep"]  # keeping 1% or 100% of entries are different merges

    resumed = _ties(two_runs, out, k=100)["results"]["addition"]["ties"]  # same name, other k: recomputed
    assert resumed["inputs"] == {"method": "ties", "k": 100}
    assert resumed["val_sweep"] == fresh_100["val_sweep"] and resumed["test"] == fresh_100["test"]

    def no_work(*args, **kwargs):
        raise AssertionError("recomputed although the inputs were equal")
    monkeypatch.setattr(relatives, "edit_sweep", no_work)
    assert _ties(two_runs, out, k=100)["results"]["addition"]["ties"] == resumed  # equal inputs: reused
    with pytest.raises(AssertionError, match="recomputed"):
        _ties(two_runs, out, k=100, max_eval=10)  # another max_eval: everything is recomputed


@pytest.mark.slow
def test_refitted_run_at_the_same_path_is_a_new_input(two_runs, tmp_path):
    runs = [tmp_path / "digits", tmp_path / "counting"]
    for src, dst in zip(two_runs, runs):
        shutil.copytree(src, dst)
    out = tmp_path / "arith.json"
    _ties(runs, out, k=50)
    digest = json.loads(out.read_text())["inputs"]["runs"][0]["weights_sha256"]
    run_finetune(runs[0], "micro-rn-s", None, "digits", FinetuneConfig(steps=3, batch_size=8, warmup=1, seed=7),
                 overwrite=True)
    run_sweep(runs[0], ["shapes"], [0.0, 1.0], max_eval=20)
    _ties(runs, out, k=50)
    assert json.loads(out.read_text())["inputs"]["runs"][0]["weights_sha256"] != digest


@pytest.mark.slow
@pytest.mark.golden
def test_shipped_studies_are_current_for_reproduce(tmp_path, monkeypatch):
    """The migrated cached_results hold exactly the inputs reproduce asks for: its study calls reuse all of
    them (every computation is disabled here), so `reproduce` would recompute nothing."""
    from paint_core.data.embedded import DIGIT_SHIFTS, EMBEDDED_TASKS, PATCH_TASKS, SUPPORTED_TASKS
    from paint_core.studies import closed_vocab, multitask, prompt_update
    from paint_core.studies.reproduce import TRANSFER_SOURCES, WISEFT_FISHER, continued_model, diagnose

    def no_work(*args, **kwargs):
        raise AssertionError("recomputed a shipped result")
    for module, name in [(relatives, "edit_sweep"), (relatives, "ensemble_sweep"), (relatives, "transfer_matrix"),
                         (multitask, "patch_joint"), (multitask, "patch_sequential"), (multitask, "patch_parallel"),
                         (relatives, "_scores"), (prompt_update, "update_study"), (closed_vocab, "disentanglement_error"),
                         (closed_vocab, "create_encoder")]:
        monkeypatch.setattr(module, name, no_work)
    snapshot = {p: p.read_bytes() for p in CACHED.rglob("*.json")}
    for m in ("micro-rn-l", "micro-rn-s"):
        rel = CACHED / m / "relatives"
        patch = [CACHED / m / t for t in PATCH_TASKS]
        relatives.multitask_study(patch, SUPPORTED_TASKS, rel / "multitask.json")
        relatives.transfer_study([*patch, *(CACHED / m / t for t in TRANSFER_SOURCES)], list(EMBEDDED_TASKS),
                                 rel / "transfer.json")
        relatives.wiseft_study(CACHED / m / "digits", list(DIGIT_SHIFTS), rel / "wiseft.json", fisher=WISEFT_FISHER)
        relatives.arithmetic_study(patch, SUPPORTED_TASKS, rel / "arithmetic.json", negate=["digits", "counting"])
        diagnose(m, CACHED)
    closed_vocab.closed_vocab_study(CACHED / "closed_vocab" / "micro-vit")
    closed_vocab.clip_disentanglement((CACHED / "micro-rn-l" / "digits", CACHED / "micro-rn-l" / "counting"),
                                      CACHED / "closed_vocab" / "micro-rn-l_disentanglement.json")
    prompt_update.update_study_file(CACHED / "prompts" / "update.json", "micro-rn-s", "micro-rn-l", list(PATCH_TASKS))
    prompt_update.update_study_file(CACHED / "prompts" / "update_continued.json", "micro-rn-s", "micro-rn-s",
                              list(PATCH_TASKS), new_pretrained=str(continued_model(CACHED)))
    assert {p: p.read_bytes() for p in CACHED.rglob("*.json")} == snapshot  # nothing rewritten


def test_the_shipped_reading_run_loads_from_any_folder(tmp_path, monkeypatch):
    """Its run.json names the zero-shot weights relative to the repository (paint_core/weights/...): read from
    the repository when the current folder does not have them, and they are the shipped file's tensors."""
    import torch
    from paint_core.io.checkpoints import load_checkpoint
    from paint_core.io.paths import WEIGHTS_DIR
    from paint_core.studies.patch import load_run
    monkeypatch.chdir(tmp_path)
    run = load_run(CACHED / "reading" / "typographic")
    assert run.meta["pretrained"] == "paint_core/weights/micro-rn-s-64-reads.safetensors"
    shipped, side = load_checkpoint(WEIGHTS_DIR / "micro-rn-s-64-reads.safetensors", require_sidecar=True)
    # reproducible by the two pretraining commands it records: the curriculum's second stage, and its start
    assert "--init-from" in side["command"] and side["init_from"] in side["command"]
    start = side["start_recipe"]
    assert "--init-from" not in start["command"] and side["init_from"].removesuffix(".safetensors") in start["command"]
    assert start["config"]["steps"] == 6000 and len(start["sha256"]) == 64
    assert all(torch.equal(run.theta_zs[k], v.float()) for k, v in shipped.items())
