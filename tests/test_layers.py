"""The layers are visible in the tree and imports only go downward (a new method knows where it belongs)."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "paint_core"
# lower numbers are lower layers; a module may import only from its own layer or below (runtime.py, the device
# and precision every layer computes with, and configs.py, the recipes' settings, sit at the bottom; version.py, the code
# version written into files, sits with io/)
LAYERS = {"core": 1, "runtime": 1, "configs": 1, "io": 2, "version": 2, "data": 3, "models": 3, "engine": 4, "studies": 5, "live": 6,
          "cli": 7, "__init__": 7, "__main__": 8}


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
