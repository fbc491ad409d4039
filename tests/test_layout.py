"""The layout's rules, checked statically: model/ never imports app/, no import cycles, argparse only in CLIs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[1]
CLI_MODULES = {"app.cli", "app.cli.serve", "bench.cli"}


def _modules() -> dict[str, Path]:
    out = {}
    for package in ("app", "model", "bench"):
        for path in (REPO / package).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def _imports(path: Path, known: dict[str, Path]) -> set[str]:
    """First-party modules imported at module level (from-imports of a module's members count the module)."""
    deps = set()
    for node in ast.parse(path.read_text()).body:
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        deps |= {n for n in names if n in known}
    return deps


def test_model_never_imports_app() -> None:
    for name, path in _modules().items():
        if name.startswith("model"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module:
                    assert not node.module.startswith("app"), f"{name} imports {node.module}"
                if isinstance(node, ast.Import):
                    assert not any(a.name.startswith("app") for a in node.names), name


def test_no_import_cycles() -> None:
    known = _modules()
    graph = {name: _imports(path, known) for name, path in known.items()}
    state: dict[str, int] = {}

    def visit(module: str, chain: list[str]) -> None:
        state[module] = 1
        for dep in graph[module]:
            assert state.get(dep) != 1, "import cycle: " + " -> ".join([*chain, dep])
            if not state.get(dep):
                visit(dep, [*chain, dep])
        state[module] = 2

    for module in graph:
        if not state.get(module):
            visit(module, [module])


def _argparse_uses(path: Path) -> set[str]:
    """What a module takes from argparse: `argparse.X` attributes and `from argparse import X` names."""
    tree = ast.parse(path.read_text())
    if not any(isinstance(n, ast.Import) and any(a.name == "argparse" for a in n.names) or
               isinstance(n, ast.ImportFrom) and n.module == "argparse" for n in ast.walk(tree)):
        return set()
    used = {"import argparse"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "argparse":
            used |= {a.name for a in node.names}
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "argparse":
            used.add(node.attr)
    return used


def test_argparse_only_in_cli_modules() -> None:
    """Parsers are built in the CLI modules only; a bench suite a CLI runs may take `argparse.Namespace`."""
    for name, path in _modules().items():
        if name.startswith("model.cli.") or name in CLI_MODULES:
            continue
        used = _argparse_uses(path)
        assert used <= {"import argparse", "Namespace"}, f"{name} uses argparse's {sorted(used)} outside a CLI"
        assert not used or name.startswith("bench."), f"{name} imports argparse outside a CLI"
