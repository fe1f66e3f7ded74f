"""Static checks that catch what a test may not reach: an undefined name in a rarely run path raises only when
that path runs (e.g. `reproduce`'s diagnostics), and an unused import hides a half-finished edit."""
from pathlib import Path

import pytest
from pyflakes.api import checkRecursive
from pyflakes.reporter import Reporter

ROOT = Path(__file__).resolve().parent.parent


class _Collect(Reporter):
    def __init__(self):
        self.messages = []

    def unexpectedError(self, filename, msg):
        self.messages.append(f"{filename}: {msg}")

    def syntaxError(self, filename, msg, lineno, offset, text):
        self.messages.append(f"{filename}:{lineno}: {msg}")

    def flake(self, message):
        self.messages.append(str(message))


@pytest.mark.slow
def test_pyflakes_finds_nothing_in_the_code_the_project_ships_and_runs():
    reporter = _Collect()
    checkRecursive([str(ROOT / d) for d in ("paint_core", "dashboard", "scripts", "benchmarks", "tests")], reporter)
    assert reporter.messages == []


def test_pyflakes_would_catch_an_undefined_name(tmp_path):
    (tmp_path / "bad.py").write_text("def f():\n    inks.append(1)\n")
    reporter = _Collect()
    checkRecursive([str(tmp_path)], reporter)
    assert len(reporter.messages) == 1 and "undefined name 'inks'" in reporter.messages[0]
