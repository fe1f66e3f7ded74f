"""CLI conventions, parametrized over the parser's own registry of subcommands: help on every option,
defaults taken from the config dataclasses, exit 1 for failures and 2 for bad usage, the console script."""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from dataclasses import dataclass, fields

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


HEAVY = ("torch", "open_clip", "torchvision", "timm")


def _heavy_imports(argvs: list[list[str]]) -> dict[str, list[str]]:
    """For each argv, which heavy libraries a fresh interpreter holds after ``main(argv)`` (help, usage errors,
    list): counted in sys.modules, not timed, so the test means the same on a quiet or a loaded machine."""
    script = ("import contextlib, io, json, sys\n"
              "from paint_core.cli import main\n"
              "out = {}\n"
              f"for argv in {argvs!r}:\n"
              "    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
              "        try:\n"
              "            main(argv)\n"
              "        except SystemExit:\n"
              "            pass\n"
              f"    out[' '.join(argv)] = [m for m in {HEAVY!r} if m in sys.modules]\n"
              "print(json.dumps(out))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    import json
    return json.loads(done.stdout)


def test_help_usage_errors_and_list_import_no_torch():
    """`paint-core --help`, every `COMMAND --help`, a usage error and `list` answer without torch (issue 26:
    each paid the whole import, tens of seconds on a loaded machine)."""
    argvs = [["--help"], *[[name, "--help"] for name in sorted(subcommands())], ["finetun"],
             ["finetune", "--model", "micro-rn-l"], ["sweep", "--run", "x", "--precision", "fp64"], ["list"]]
    assert _heavy_imports(argvs) == {" ".join(a): [] for a in argvs}


def test_python_m_paint_core_help_imports_no_torch():
    code = ("import runpy, sys\nsys.argv = ['paint_core', '--help']\n"
            "try:\n    runpy.run_module('paint_core', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print([m for m in ('torch', 'open_clip') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().splitlines()[-1] == "[]", done.stderr


def test_list_names_every_shipped_model_and_weights_file(capsys):
    from paint_core.io.paths import WEIGHTS_DIR
    from paint_core.models.registry import EMBEDDED_MODELS, SHIPPED_WEIGHTS
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in EMBEDDED_MODELS:
        assert f"\n  {name:16s} " in out
    assert "micro-rn-s-64-reads" in SHIPPED_WEIGHTS  # the Typographic page's reader
    for stem, (model, _) in SHIPPED_WEIGHTS.items():
        assert (WEIGHTS_DIR / f"{stem}.safetensors").is_file()
        assert f"--model {model} --pretrained paint_core/weights/{stem}.safetensors" in out
        import json
        assert json.loads((WEIGHTS_DIR / f"{stem}.json").read_text())["model"] == model


def test_select_prints_a_readable_table_with_the_sweeps_numbers(capsys):
    """One row per task: val and test accuracy at the chosen alpha, zero-shot test and the change in points,
    read back against sweep.csv itself (issue 26: it printed "val: runs/x patch digits 0.9798")."""
    import pandas as pd
    from paint_core.io.paths import CACHED_RESULTS_DIR
    from paint_core.studies.patch import select_run
    run = CACHED_RESULTS_DIR / "micro-rn-l" / "digits"
    assert main(["select", "--run", str(run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    alpha = select_run(run)["alpha"]
    assert lines[0].startswith(f"run {run}: alpha {alpha:g} chosen on val (the best mean of the patch accuracy")
    assert lines[1].split() == ["task", "role", "val", "test", "zero-shot", "test", "change", "(points)"]
    df = pd.read_csv(run / "sweep.csv")
    acc = lambda t, split, a: float(df[(df.task == t) & (df.split == split) & (df.alpha == a)].accuracy.iloc[0])  # noqa: E731
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert list(rows) == ["digits", "colours", "shapes"] and rows["digits"][0] == "patch"
    for task, (role, val, test, zs, change) in rows.items():
        assert role == ("patch" if task == "digits" else "supported")
        assert val == f"{100 * acc(task, 'val', alpha):.1f}%" and test == f"{100 * acc(task, 'test', alpha):.1f}%"
        assert zs == f"{100 * acc(task, 'test', 0.0):.1f}%"
        assert change == f"{100 * (acc(task, 'test', alpha) - acc(task, 'test', 0.0)):+.1f}"
    assert rows["digits"][4] == "+40.2"  # the Start page's "+40.2 points"


def _config_classes() -> list[type]:
    """Every settings dataclass the CLI builds options from: all of ``paint_core.configs``, and the corpus's."""
    import dataclasses
    from paint_core import configs
    from paint_core.data.corpus import CorpusConfig
    found = [v for v in vars(configs).values() if dataclasses.is_dataclass(v) and v.__module__ == configs.__name__]
    return [*found, CorpusConfig]


def test_every_config_field_has_a_help_comment():
    """The help of ``--FIELD`` is the field's ``#:`` comment (issue 31: a second table of help texts, which a new
    field could be missing from, broke every command); a field without one is listed here."""
    from paint_core.configs import field_docs
    classes = _config_classes()
    assert {c.__name__ for c in classes} >= {"FinetuneConfig", "PretrainConfig", "SearchConfig", "CorpusConfig"}
    missing = [f"{c.__name__}.{f.name}" for c in classes for f in fields(c) if not field_docs(c).get(f.name)]
    assert missing == []


@dataclass(frozen=True)
class _Commented:
    short: int = 1           #: on the field's line
    #: on the lines above,
    #: joined
    long: float = 0.5        # a note for readers of the code, not help
    # a note only
    plain: int = 2
    flag: bool = False       #: a switch


def test_field_docs_reads_the_colon_comments_on_or_above_a_field():
    from paint_core.configs import field_docs
    assert field_docs(_Commented) == {"short": "on the field's line", "long": "on the lines above, joined",
                                      "flag": "a switch"}
    from paint_core.configs import FinetuneConfig
    assert field_docs(FinetuneConfig)["lr"] == "peak learning rate (cosine schedule)"  # not the note above it


def test_a_field_without_help_gets_an_option_without_help_and_the_command_still_parses():
    from paint_core.cli.options import add_config_options, config_from
    parser = argparse.ArgumentParser()
    add_config_options(parser, _Commented)
    helps = {a.dest: a.help for a in parser._actions}
    assert helps["plain"] is None and helps["short"] == "on the field's line (default: %(default)s)"
    assert helps["flag"] == "a switch"
    args = parser.parse_args(["--plain", "5", "--flag"])
    assert config_from(_Commented, args) == _Commented(plain=5, flag=True)
