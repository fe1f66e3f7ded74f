"""The application layer the CLI and the dashboard share: run discovery and the one file-identity key."""
from __future__ import annotations

import os
from pathlib import Path

from paint_core.app.identity import MISSING, file_identity, run_identity, sweep_identity, weights_identity
from paint_core.app.runs import chosen_alpha, find_relatives, find_runs

CACHED = Path(__file__).resolve().parent.parent / "cached_results"


def _run(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "run.json").write_text("{}")
    return folder


def test_find_runs_labels_each_run_by_its_root_and_skips_runs_being_built(tmp_path):
    shipped, mine = tmp_path / "shipped", tmp_path / "runs"
    a = _run(shipped / "micro-rn-l" / "digits")
    b = _run(mine / "micro-rn-l" / "digits")
    _run(mine / ".digits.partial-1234")  # a fine-tune still building: not offered
    _run(mine / "x" / ".hidden" / "counting")
    (mine / "notes").mkdir()  # a folder without run.json is not a run
    found = find_runs([(shipped, ""), (mine, "runs/"), (tmp_path / "absent", "gone/")])
    assert found == {"micro-rn-l/digits": str(a), "runs/micro-rn-l/digits": str(b)}
    # a label found twice (the write root is ./runs) names the first root's run
    assert find_runs([(mine, "runs/"), (shipped, "runs/")]) == {"runs/micro-rn-l/digits": str(b)}


def test_find_relatives_labels_shipped_by_model_and_the_users_by_path(tmp_path):
    shipped, mine = tmp_path / "shipped", tmp_path / "runs"
    (shipped / "micro-rn-l" / "relatives").mkdir(parents=True)
    (shipped / "micro-rn-s").mkdir(parents=True)
    (mine / "ViT-B-32" / "relatives").mkdir(parents=True)
    assert find_relatives(shipped, mine) == {"micro-rn-l": shipped / "micro-rn-l" / "relatives",
                                             "runs/ViT-B-32": mine / "ViT-B-32" / "relatives"}
    assert find_relatives(tmp_path / "none", tmp_path / "none") == {}


def test_a_files_identity_changes_with_any_rewrite_and_says_when_it_is_missing(tmp_path):
    f = tmp_path / "w.safetensors"
    assert file_identity(f) == MISSING and weights_identity(str(f)) == ""
    f.write_bytes(b"abc")
    first = file_identity(f)
    s = os.stat(f)
    assert first == f"3:{s.st_mtime_ns}:{s.st_ino}" and weights_identity(str(f)) == first
    os.utime(f, ns=(s.st_atime_ns, s.st_mtime_ns + 1))  # same size, same inode, touched
    assert file_identity(f) != first
    assert weights_identity("laion2b_s34b_b79k") == "" and weights_identity(None) == ""  # a tag: nothing on disk


def test_a_runs_identity_covers_its_three_files_and_a_sweep_its_own(tmp_path):
    run = _run(tmp_path / "r")
    before = run_identity(run)
    assert before.split("|")[1:] == ["finetuned.safetensors:-", "finetuned.json:-"]
    (run / "finetuned.safetensors").write_bytes(b"weights")
    assert run_identity(run) != before and run_identity(run).startswith(before.split("|")[0])
    assert sweep_identity(run) == MISSING
    (run / "sweep.csv").write_text("alpha,task,split,accuracy,n\n")
    assert sweep_identity(run) == file_identity(run / "sweep.csv") != MISSING


def test_chosen_alpha_is_the_rules_choice_and_none_without_a_sweep(tmp_path):
    assert chosen_alpha(CACHED / "micro-rn-l" / "digits") == 0.8  # README: digits, patched at alpha 0.8
    assert chosen_alpha(_run(tmp_path / "r")) is None
