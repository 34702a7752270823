"""eventstore's own imports: no cycle, none hidden under TYPE_CHECKING, none inside a function
(multiprocessing too is imported at the top of log.py: ~8 ms once per process)."""

from __future__ import annotations

import ast
from pathlib import Path

import eventstore

PACKAGE = Path(eventstore.__file__).parent
SUBMODULES = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
LAZY_ALLOWED: set[str] = set()  # modules a function may import (a heavy one only a rare path needs)


def _target(node: ast.ImportFrom, alias: ast.alias) -> str | None:
    """The eventstore module an import names, or None for a module of another package."""
    if node.level == 0:
        return None
    if node.module:
        return f"eventstore.{node.module}"
    return f"eventstore.{alias.name}" if alias.name in SUBMODULES else "eventstore"


def _found_in(tree: ast.AST) -> list[tuple[str, str]]:
    """[(imported eventstore module or external name, where: "top" / "function" / "type-checking")]."""
    found: list[tuple[str, str]] = []
    stack: list[tuple[ast.AST, str]] = [(tree, "top")]
    while stack:
        node, where = stack.pop()
        for child in ast.iter_child_nodes(node):
            here = where
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                here = "function"
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                here = "type-checking"
            if isinstance(child, ast.ImportFrom):
                found.extend((_target(child, alias) or child.module or "", here) for alias in child.names)
            elif isinstance(child, ast.Import):
                found.extend((alias.name, here) for alias in child.names)
            stack.append((child, here))
    return found


def _imports() -> dict[str, list[tuple[str, str]]]:
    """eventstore module -> what it imports, and where."""
    return {
        "eventstore" if path.stem == "__init__" else f"eventstore.{path.stem}": _found_in(ast.parse(path.read_text()))
        for path in sorted(PACKAGE.glob("*.py"))
    }


def test_no_import_is_hidden_under_type_checking_or_in_a_function():
    bad = [
        (module, target, where)
        for module, found in _imports().items()
        for target, where in found
        if where == "type-checking" or (where == "function" and target not in LAZY_ALLOWED)
    ]
    assert not bad, bad


def test_eventstore_modules_import_each_other_without_a_cycle():
    graph = {
        m: {t for t, _ in found if t == "eventstore" or t.startswith("eventstore.")} for m, found in _imports().items()
    }
    done: set[str] = set()

    def walk(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(module) :], module]))
        if module in done:
            return
        for target in sorted(graph.get(module, ())):
            walk(target, [*path, module])
        done.add(module)

    for module in sorted(graph):
        walk(module, [])
