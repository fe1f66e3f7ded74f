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


def _imports(path: Path, pkg: Path = PKG) -> list[str]:
    """Modules of paint_core imported by ``path`` (relative imports resolved), at any depth in the file."""
    return [target for target, _ in _imported_names(path, pkg)]


def _imported_names(path: Path, pkg: Path = PKG) -> list[tuple[str, str | None]]:
    """(module of ``pkg``, name taken from it, None for a whole module) for every import in ``path`` of a module
    in ``pkg`` (relative imports resolved), at any depth in the file."""
    here = path.relative_to(pkg).with_suffix("").parts
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(here[:-node.level]) if node.level <= len(here) else []
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            out += ([(target, a.name) for a in node.names] if node.module else
                    [(f"{target}.{a.name}".strip("."), None) for a in node.names])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(pkg.name):
            out += [(node.module.removeprefix(pkg.name).strip(".") or "__init__", a.name) for a in node.names]
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


def _private_imports(pkg: Path, sub: str) -> list[str]:
    """``module imports _name from other`` for every private name (or private module) a module of ``pkg/sub``
    takes from another module."""
    out = []
    for f in sorted((pkg / sub).rglob("*.py")):
        mod = ".".join(f.relative_to(pkg).with_suffix("").parts)
        for target, name in _imported_names(f, pkg):
            if name is None and target.rpartition(".")[2].startswith("_"):
                out.append(f"{mod} imports {target}")
            elif name is not None and name.startswith("_") and not name.startswith("__"):
                out.append(f"{mod} imports {name} from {target}")
    return out


def _import_cycle(pkg: Path, sub: str) -> list[str]:
    """One import cycle among the modules of ``pkg/sub`` (imports inside functions count), or [] if none."""
    graph = {}
    for f in sorted((pkg / sub).glob("*.py")):
        mod = ".".join(f.relative_to(pkg).with_suffix("").parts)
        graph[mod] = sorted({t for t in _imports(f, pkg) if t.startswith(f"{sub}.") and t != mod})
    done: set[str] = set()

    def visit(mod: str, path: list[str]) -> list[str]:
        if mod in path:
            return path[path.index(mod):] + [mod]
        if mod in done or mod not in graph:
            return []
        for target in graph[mod]:
            cycle = visit(target, path + [mod])
            if cycle:
                return cycle
        done.add(mod)
        return []

    for mod in graph:
        cycle = visit(mod, [])
        if cycle:
            return cycle
    return []


def test_data_modules_share_only_public_names_and_import_in_no_circle():
    """The task sources build on data.task_types and the registry (data.tasks) on them, never the other way."""
    assert _private_imports(PKG, "data") == []
    assert _import_cycle(PKG, "data") == []


def test_the_data_checks_find_a_private_import_and_a_circle(tmp_path):
    pkg = tmp_path / "paint_core"
    (pkg / "data").mkdir(parents=True)
    (pkg / "data" / "a.py").write_text("from .b import _helper\n")
    (pkg / "data" / "b.py").write_text("def f():\n    from paint_core.data.c import g\n")
    (pkg / "data" / "c.py").write_text("from . import a, _d\n")
    assert _private_imports(pkg, "data") == ["data.a imports _helper from data.b", "data.c imports data._d"]
    assert _import_cycle(pkg, "data") == ["data.a", "data.b", "data.c", "data.a"]


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
