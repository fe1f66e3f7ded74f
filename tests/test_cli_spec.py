"""The CLI's surface, held still: every subcommand's options, defaults, types, choices and help, compared with
tests/cli_spec.json. The fixture was written from the single-module parser before each command's parser moved
beside its command (issue 31), so the move is checked against the old behaviour; a deliberate change to an
option rewrites it: ``PYTHONPATH=$PWD python tests/test_cli_spec.py``."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from paint_core.cli import build_parser

FIXTURE = Path(__file__).with_name("cli_spec.json")


def _want() -> dict:
    return json.loads(FIXTURE.read_text())


def _action(a: argparse.Action) -> dict:
    default = a.default
    if callable(default):  # set_defaults(func=...): the command it dispatches to, by name
        default = default.__name__
    spec = {"options": list(a.option_strings) or [a.dest], "dest": a.dest, "action": type(a).__name__,
            "default": default, "type": getattr(a.type, "__name__", None), "required": a.required,
            "choices": list(a.choices) if a.choices is not None else None, "nargs": a.nargs, "metavar": a.metavar,
            "help": a.help}
    usual = {"action": "_StoreAction", "required": False, "dest": a.option_strings[-1:] and
             a.option_strings[-1].lstrip("-").replace("-", "_")}  # left out where they say nothing
    return {k: v for k, v in spec.items() if (v is not None or k == "default") and usual.get(k) != v}


def _parser(p: argparse.ArgumentParser) -> dict:
    return {"prog": p.prog, "description": p.description,
            "actions": [_action(a) for a in p._actions
                        if not isinstance(a, (argparse._SubParsersAction, argparse._HelpAction))],
            "set_defaults": {k: getattr(v, "__name__", v) for k, v in sorted(p._defaults.items())},
            "exclusive_groups": [{"required": g.required, "options": [a.option_strings for a in g._group_actions]}
                                 for g in p._mutually_exclusive_groups]}


def cli_spec() -> dict:
    """The parser as plain JSON: the top level, then each subcommand in the order ``--help`` lists them."""
    top = build_parser()
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in sub._choices_actions}
    return {"top": _parser(top), "order": list(sub.choices),
            "commands": {name: {"help": helps[name], **_parser(p)} for name, p in sub.choices.items()}}


def test_fixture_is_a_real_parser():
    spec = _want()
    assert len(spec["order"]) == 21 and spec["order"][0] == "pretrain" and spec["order"][-1] == "list"
    finetune = {tuple(a["options"]): a for a in spec["commands"]["finetune"]["actions"]}
    assert finetune[("--lr",)]["default"] == 3e-4 and finetune[("--lr",)]["type"] == "float"
    assert finetune[("--lr",)]["help"] == "peak learning rate (cosine schedule) (default: %(default)s)"


def test_commands_are_listed_in_the_same_order():
    assert cli_spec()["order"] == _want()["order"]


def test_top_level_options_are_unchanged():
    assert cli_spec()["top"] == _want()["top"]


@pytest.mark.parametrize("name", _want()["order"] if FIXTURE.exists() else [])
def test_every_option_default_and_help_is_unchanged(name):
    want, got = _want()["commands"][name], cli_spec()["commands"].get(name)
    assert got is not None, f"command {name} is gone"
    assert {k: v for k, v in got.items() if k != "actions"} == {k: v for k, v in want.items() if k != "actions"}
    assert [a["options"] for a in got["actions"]] == [a["options"] for a in want["actions"]]
    for g, w in zip(got["actions"], want["actions"]):
        assert g == w, g["options"]


if __name__ == "__main__":
    spec = cli_spec()  # one line per action: a change reads as a one-line diff
    lines = [json.dumps({k: spec[k] for k in ("top", "order")})[:-1] + ', "commands": {']
    for i, (name, c) in enumerate(spec["commands"].items()):
        head = json.dumps({k: v for k, v in c.items() if k != "actions"})[:-1]
        body = ",\n  ".join(json.dumps(a) for a in c["actions"])
        lines.append(f' {json.dumps(name)}: {head}, "actions": [\n  {body}]}}' + ("," if i < len(spec["commands"]) - 1 else ""))
    FIXTURE.write_text("\n".join(lines) + "}}\n")
    assert _want() == spec
    print(f"wrote {FIXTURE}")
