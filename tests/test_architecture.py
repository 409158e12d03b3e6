"""The package's shape: layers that import only downwards, no import circle, small run-layer files, and a training
loop that names no rule and no system.

Every ``import`` in ``src/eqprop`` counts, also those inside functions (a lazy import is still an arrow).
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "eqprop"

LAYERS: dict[str, int] = {
    "eqprop._types": 0,
    "eqprop._files": 0,
    "eqprop.errors": 0,
    "eqprop.presets": 0,
    "eqprop.systems": 1,
    "eqprop.costs": 1,
    "eqprop.data": 1,
    "eqprop.solvers": 2,
    "eqprop.rules": 3,
    "eqprop": 4,  # the package root re-exports the core
    "eqprop.train": 5,
    "eqprop.analysis": 6,
    "eqprop.cli": 7,
    "eqprop.__main__": 7,
}
"""Each module's layer: the longest prefix listed here. A module may import from its own layer or below."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _layer(module: str) -> int:
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return LAYERS[prefix]
    raise AssertionError(f"{module} belongs to no layer: add its package to LAYERS")


def _imports(module: str) -> set[str]:
    """The eqprop modules that ``module`` imports (``from a.b import c`` counts ``a.b.c`` when it is a module)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = importlib.util.resolve_name("." * node.level + base, package)
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found.update(n for n in names if n in MODULES)
    found.discard(module)
    return found


GRAPH = {m: _imports(m) for m in MODULES}


def test_every_import_points_to_the_same_layer_or_below() -> None:
    upward = [
        f"{m} (layer {_layer(m)}) imports {d} (layer {_layer(d)})"
        for m, deps in GRAPH.items()
        for d in sorted(deps)
        if _layer(d) > _layer(m)
    ]
    assert not upward, "\n".join(upward)


def test_there_is_no_import_circle() -> None:
    # Tarjan's strongly connected components; a package's __init__ importing its own modules is not a circle
    # unless one of them imports the package back.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


@pytest.mark.parametrize("package", ["train", "cli"])
def test_run_layer_files_stay_small(package: str) -> None:
    long = {
        p.name: n
        for p in sorted((SRC / package).glob("*.py"))
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert not long, f"files over 400 lines in eqprop/{package}: {long}"


def _code_words(path: Path) -> set[str]:
    """Identifiers, attribute names and string constants of a module, docstrings and comments left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    words: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            words.add(node.id)
        elif isinstance(node, ast.Attribute):
            words.add(node.attr)
        elif isinstance(node, ast.alias):
            words.update(node.name.split("."))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            words.update(node.value.replace(".", " ").split())
    return words


def test_the_training_loop_names_no_rule_and_no_system() -> None:
    import eqprop
    from eqprop.rules import RULES
    from eqprop.systems.configs import SYSTEMS

    names = {*RULES, *(c.__name__ for c in RULES.values()), *SYSTEMS, "epsilon", "epsilon_scale", "aeqprop"}
    names |= {n for n in eqprop.systems.__all__ if n[0].isupper() and n != "EnergySystem"}
    names.discard(
        "eqprop"
    )  # the rule kind shares its name with the program (e.g. "eqprop train --resume ...")
    # (monitor.py names ImplicitDiff on purpose: the reference every rule is probed against)
    for module in ("loop.py", "build.py", "records.py", "stops.py"):
        used = _code_words(SRC / "train" / module) & names
        assert not used, f"eqprop/train/{module} names {sorted(used)}"
