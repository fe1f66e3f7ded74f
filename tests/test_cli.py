"""CLI conventions, parametrized over the parser's own registry of subcommands: help on every option,
defaults taken from the config dataclasses, exit 1 for failures and 2 for bad usage, the console script."""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from dataclasses import fields

import pytest

from paint_core.cli import build_parser, main
from paint_core.studies.closed_vocab import ClosedVocabConfig
from paint_core.engine.pretrain_encoder import EncoderPretrainConfig
from paint_core.engine.finetune import FinetuneConfig
from paint_core.engine.pretrain import PretrainConfig
from paint_core.engine.prompts import PromptConfig


def subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_every_subcommand_has_help_on_every_option(name, capsys):
    with pytest.raises(SystemExit) as e:
        main([name, "--help"])
    assert e.value.code == 0 and f"paint-core {name}" in capsys.readouterr().out
    missing = [a.option_strings or a.dest for a in subcommands()[name]._actions if not a.help]
    assert missing == []


@pytest.mark.parametrize("command, cls, only", [
    ("finetune", FinetuneConfig, None), ("pretrain", PretrainConfig, None),
    ("pretrain-classifier", EncoderPretrainConfig, None),
    ("prompts", PromptConfig, ("n_ctx", "steps", "lr", "batch_size", "distill", "heads")),
])
def test_option_defaults_are_the_dataclass_defaults(command, cls, only):
    parser = subcommands()[command]
    defaults = {a.dest: a.default for a in parser._actions}
    for f in fields(cls):
        if only is None or f.name in only:
            assert defaults[f.name] == getattr(cls(), f.name), f.name
    cv = {a.dest: a.default for a in subcommands()["closed-vocab"]._actions}
    assert cv["steps"] == ClosedVocabConfig().finetune.steps
    assert [float(v) for v in cv["lrs"].split(",")] == list(ClosedVocabConfig().lrs)


def test_failure_is_one_line_exit_1_usage_is_exit_2(tmp_path, capsys):
    assert main(["select", "--run", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: run directory not found") and "Traceback" not in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as e:
        main(["select", "--no-such-flag"])
    assert e.value.code == 2
    with pytest.raises(FileNotFoundError):  # -v: the traceback, for a bug report
        main(["-v", "select", "--run", str(tmp_path / "nope")])


@pytest.mark.slow  # two fresh interpreters importing torch
def test_console_script_is_python_m_paint_core():
    exe = shutil.which("paint-core")
    assert exe, "pip install -e . installs the paint-core console script"
    a = subprocess.run([exe, "--version"], capture_output=True, text=True)
    b = subprocess.run([sys.executable, "-m", "paint_core", "--version"], capture_output=True, text=True)
    assert a.returncode == b.returncode == 0 and a.stdout == b.stdout and a.stdout.startswith("paint-core 0.")
