"""The layers are visible in the tree and imports only go downward (a new method knows where it belongs)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "paint_core"
# lower numbers are lower layers; a module may import only from its own layer or below (runtime.py, the device
# and precision every layer computes with, and configs.py, the recipes' settings, sit at the bottom; version.py, the code
# version written into files, sits with io/). app/ is what the CLI and the dashboard share: it composes the studies
# and live/'s serving primitives (pools, stores, sessions), which are given what they need of a study, never import it.
LAYERS = {"core": 1, "runtime": 1, "configs": 1, "io": 2, "version": 2, "data": 3, "models": 3, "engine": 4,
          "studies": 5, "live": 6, "app": 7, "cli": 8, "__init__": 8, "__main__": 9}
NEVER = {"live": "studies"}  # below the app layer, live/ does not call up into the studies
README = PKG.parent / "README.md"


def _layer(module: str) -> int:
    return LAYERS[module.split(".")[0]]


def _imports(path: Path) -> list[str]:
    """Modules of paint_core imported by ``path`` (relative imports resolved), at any depth in the file."""
    here = path.relative_to(PKG).with_suffix("").parts
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(here[:-node.level]) if node.level <= len(here) else []
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            out += [target] if node.module else [f"{target}.{a.name}".strip(".") for a in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("paint_core"):
            out.append(node.module.removeprefix("paint_core").strip(".") or "__init__")
    return out


def test_imports_only_go_downward():
    wrong = []
    for f in sorted(PKG.rglob("*.py")):
        mod = ".".join(f.relative_to(PKG).with_suffix("").parts)
        mod = mod.removesuffix(".__init__") if mod != "__init__" else mod
        for target in _imports(f):
            if target and _layer(target) > _layer(mod):
                wrong.append(f"{mod} imports {target}")
    assert wrong == []


def test_the_engine_never_imports_streamlit():
    assert not [f for f in PKG.rglob("*.py") if "streamlit" in f.read_text()]


def _modules() -> dict[str, list[str]]:
    out = {}
    for f in sorted(PKG.rglob("*.py")):
        mod = ".".join(f.relative_to(PKG).with_suffix("").parts)
        out[mod.removesuffix(".__init__") if mod != "__init__" else mod] = _imports(f)
    return out


def _calls_up(modules: dict[str, list[str]]) -> list[str]:
    return [f"{mod} imports {target}" for mod, targets in modules.items() for target in targets
            if NEVER.get(mod.split(".")[0]) == target.split(".")[0]]


def test_live_never_imports_the_studies():
    assert _calls_up(_modules()) == []
    # and the check would see it: a session importing a run's task vector from a study is refused
    assert _calls_up({"live.sessions": ["engine.evaluation", "studies.patch"]}) == [
        "live.sessions imports studies.patch"]


def _top_level() -> set[str]:
    """paint_core's top-level modules and packages (data folders such as weights/ hold no Python)."""
    return {p.stem for p in PKG.glob("*.py")} | {p.name for p in PKG.iterdir() if (p / "__init__.py").is_file()}


def _readme_rows() -> list[list[str]]:
    """The modules named in the first cell of each row of README.md's layer table ("Python API"), top row first."""
    text = README.read_text().split("## Python API", 1)[1]
    table = text.split("| layer | owns |", 1)[1].split("\n\n", 1)[0]
    return [[n.strip("/").removesuffix(".py") for n in re.findall(r"`([^`]+)`", line.split("|")[1])]
            for line in table.splitlines() if line.startswith("| `")]


def test_every_top_level_module_has_a_layer_and_a_row_in_the_readme():
    """The README's picture of the layers and LAYERS say the same thing: the same modules, in the same order."""
    assert _top_level() == set(LAYERS)
    rows = _readme_rows()
    assert sorted(n for row in rows for n in row) == sorted(LAYERS)
    layers = [[LAYERS[n] for n in row] for row in rows]
    assert all(max(a) <= min(b) for a, b in zip(layers, layers[1:])), layers  # lower layers in upper rows
