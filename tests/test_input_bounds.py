"""Issue 25, items 2, 3 and part of 7, engine and CLI: alpha grids are bounded before they are expanded,
non-finite grids get one line, messages name only options that exist, an export never lands on a run's own
files, a job says who cancelled it, and the staging folder of a killed fine-tune is removed."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from paint_core.cli import main
from paint_core.engine.evaluation import MAX_ALPHAS, parse_alphas
from paint_core.engine.finetune import FinetuneConfig
from paint_core.io import writes
from paint_core.app.jobs import cancel_message
from paint_core.studies.patch import SweepSpec, run_finetune, run_sweep
from conftest import snapshot

TINY = FinetuneConfig(steps=2, batch_size=8, warmup=1)


@pytest.fixture(scope="module")
def template_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("template") / "run"
    run_finetune(out, "micro-rn-s", None, "digits", TINY)
    run_sweep(out, ["shapes"], [0.0, 1.0], max_eval=20)
    return out


@pytest.fixture()
def run(template_run, tmp_path) -> Path:
    path = tmp_path / "runs" / "r"
    shutil.copytree(template_run, path)
    return path


# ------------------------------------------------------------------------------------ alpha grids
GRIDS = [  # the reviewer's grids and their neighbours: (spec, the one line now)
    ("0:1:1e-5", "alphas '0:1:1e-5': 100,001 values; at most 1,001 per sweep (e.g. 0:1:0.001)"),
    ("0:1:1e-9", "alphas '0:1:1e-9': step must be at least 1e-06 (alphas are kept to 6 decimals)"),
    ("0:1e308:1e-6", "alphas '0:1e308:1e-6': too many values; at most 1,001 per sweep (e.g. 0:1e+308:1e+305)"),
    ("nan:1:0.1", "alphas 'nan:1:0.1': start, stop and step must be finite numbers"),
    ("0:inf:0.1", "alphas '0:inf:0.1': start, stop and step must be finite numbers"),
    ("0:1:nan", "alphas '0:1:nan': start, stop and step must be finite numbers"),
    ("0,nan,1", "alphas '0,nan,1': every alpha must be a finite number, got nan"),
    ("0,-inf", "alphas '0,-inf': every alpha must be a finite number, got -inf"),
    ("0," * 1001 + "1", "alphas: 1,002 values; at most 1,001 per sweep"),
]


@pytest.mark.parametrize("spec, message", GRIDS)
def test_alpha_grids_are_bounded_and_finite(spec, message):
    with pytest.raises(ValueError) as e:
        parse_alphas(spec)
    assert str(e.value) == message


def test_the_largest_grid_is_accepted_and_the_size_is_known_before_expanding(monkeypatch):
    assert len(parse_alphas("0:1:0.001")) == MAX_ALPHAS == 1001
    assert parse_alphas(" 0:1:0.25 ") == [0.0, 0.25, 0.5, 0.75, 1.0]
    from paint_core.engine import evaluation

    def expanded(*args):
        raise AssertionError("the grid was expanded before it was checked")

    monkeypatch.setattr(evaluation, "range", expanded, raising=False)  # the module's own name, not the builtin
    with pytest.raises(ValueError, match="100,001 values"):
        parse_alphas("0:1:1e-5")


def test_a_sweep_spec_from_code_is_bounded_too():
    with pytest.raises(ValueError, match="^1,002 alphas; at most 1,001 per sweep$"):
        SweepSpec(("shapes",), tuple(i / 1001 for i in range(1002))).validate()


@pytest.mark.parametrize("command", [["sweep", "--supported", "shapes"], ["attack", "--task", "typographic"]])
@pytest.mark.parametrize("spec", ["0:1:1e-5", "nan:1:0.1", "0:inf:0.1"])
@pytest.mark.slow
def test_cli_grids_fail_with_one_line_and_exit_1(run, command, spec, capsys):
    before = snapshot(run.parent)
    assert main([command[0], "--run", str(run), *command[1:], "--alphas", spec]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {dict(GRIDS)[spec]}\n"
    assert snapshot(run.parent) == before


# ------------------------------------------------------------------------------------ extrapolation hints
def test_sweep_does_not_suggest_an_option_it_lacks(run, capsys):
    assert main(["sweep", "--run", str(run), "--supported", "shapes", "--alphas", "0,1.5"]) == 1
    assert capsys.readouterr().err == "error: alpha must be in [0, 1] (0 = zero-shot, 1 = fine-tuned), got 1.5\n"


def test_export_names_its_own_option_and_the_option_works(run, tmp_path, capsys):
    out = tmp_path / "far.safetensors"
    assert main(["export", "--run", str(run), "--alpha", "1.5", "--out", str(out)]) == 1
    assert capsys.readouterr().err == ("error: alpha must be in [0, 1] (0 = zero-shot, 1 = fine-tuned), got 1.5; "
                                       "pass --extrapolate to go beyond the endpoints\n")
    assert not out.exists()
    assert main(["export", "--run", str(run), "--alpha", "1.5", "--out", str(out), "--extrapolate"]) == 0


# ------------------------------------------------------------------------------------ exports onto a run
@pytest.mark.parametrize("target, taken", [
    ("finetuned.safetensors", "finetuned.safetensors"),   # the review's case: it has a matching sidecar
    ("run.safetensors", "run.json"),                       # its sidecar would be run.json
    ("sweep.safetensors", None),                            # a new file inside the run: allowed
])
def test_export_never_replaces_a_file_of_the_run(run, target, taken, capsys):
    before = snapshot(run)
    code = main(["export", "--run", str(run), "--alpha", "0.5", "--out", str(run / target), "--overwrite"])
    err = capsys.readouterr().err
    if taken is None:
        assert code == 0 and (run / target).is_file()
        return
    assert code == 1
    assert err == (f"error: output {run / target} would replace {taken} of the run directory {run}; write exports "
                   f"beside the run instead (e.g. {run.parent / 'r-patched.safetensors'})\n")
    assert snapshot(run) == before
    assert main(["sweep", "--run", str(run), "--supported", "shapes", "--alphas", "0,0.5,1", "--max-eval", "20"]) == 0
    assert main(["select", "--run", str(run)]) == 0


def test_a_run_reached_through_a_link_or_by_convert_is_refused_too(run, tmp_path, capsys):
    link = tmp_path / "link"
    link.symlink_to(run, target_is_directory=True)
    before = snapshot(run)
    assert main(["export", "--run", str(run), "--alpha", "0.5", "--out", str(link / "finetuned.safetensors"),
                 "--overwrite"]) == 1
    assert "would replace finetuned.safetensors of the run directory" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "any.pt"), "--model", "micro-rn-s", "--out",
                 str(run / "finetuned.safetensors"), "--overwrite"]) == 1
    assert "would replace finetuned.safetensors of the run directory" in capsys.readouterr().err
    assert snapshot(run) == before


def test_an_imported_runs_zero_shot_file_is_protected(run, capsys):
    meta = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**meta, "zeroshot_file": "base.safetensors"}))
    assert writes.run_own_files(run) >= {"base.safetensors", "base.json", "finetuned.safetensors", "sweep.csv"}
    assert main(["export", "--run", str(run), "--alpha", "0.5", "--out", str(run / "base.safetensors")]) == 1
    assert "would replace base.safetensors of the run directory" in capsys.readouterr().err


@pytest.mark.slow
def test_an_earlier_export_inside_a_run_may_be_replaced(run, capsys):
    out = run / "patched.safetensors"
    assert main(["export", "--run", str(run), "--alpha", "0.5", "--out", str(out)]) == 0
    assert main(["export", "--run", str(run), "--alpha", "1.0", "--out", str(out), "--overwrite"]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["alpha"] == 1.0


# ------------------------------------------------------------------------------------ jobs and partials
def test_a_job_says_when_another_session_cancelled_it(tmp_path):
    folder = tmp_path / "job"
    folder.mkdir()
    (folder / "job.json").write_text(json.dumps({"owner": "starter"}))
    plain = "cancelled; nothing was written (an earlier run at the same place is unchanged)"
    assert cancel_message(folder) == plain  # SIGTERM from outside the dashboard (the operator)
    (folder / "cancel.json").write_text(json.dumps({"by": "starter"}))
    assert cancel_message(folder) == plain
    (folder / "cancel.json").write_text(json.dumps({"by": "someone else"}))
    assert cancel_message(folder) == ("cancelled by another session; nothing was written (an earlier run at the "
                                      "same place is unchanged)")


KILLED_WRITER = """
import sys
from paint_core.engine.finetune import FinetuneConfig
from paint_core.studies.patch import run_finetune
run_finetune(sys.argv[1], "micro-rn-s", None, "digits", FinetuneConfig(steps=100000, batch_size=8, warmup=1))
"""


@pytest.mark.slow
def test_the_staging_folder_of_a_killed_fine_tune_is_removed_by_the_next_writer(tmp_path):
    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(runs / "killed")],
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    deadline = time.monotonic() + 120
    while not list(runs.glob(".killed.partial-*")):
        assert time.monotonic() < deadline and proc.poll() is None, "the writer never started its run"
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)  # as the OOM killer would
    proc.wait()
    [left] = runs.glob(".killed.partial-*")
    assert left.name.split("-")[-2] == str(proc.pid)  # the writer is named in the folder
    run_finetune(runs / "next", "micro-rn-s", None, "digits", TINY)
    assert sorted(p.name for p in runs.iterdir()) == [".killed.lock", "next"]  # the lock is taken over on reuse
