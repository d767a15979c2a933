"""The core's modules import one another in layers, never in a circle.

Every import between core modules counts, including those under ``TYPE_CHECKING`` and
inside functions: a module that needs something of a module above it names what it
needs in a small protocol of its own (``Reader``, ``Source``, ``Host``, ``Waiter``,
``Holder``, ``Buffer``) instead of importing it.
"""

from __future__ import annotations

import ast
import pathlib

import broadcaster

CORE = pathlib.Path(broadcaster.__file__).parent / "_core"


def core_imports(path: pathlib.Path) -> set[str]:
    """The core modules *path* imports, wherever the import statement is."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:  # from ._x import y
                found.add(node.module.split(".")[0])
            else:  # from . import _x
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "broadcaster._core."):
            found.add(node.module.split(".")[2])  # type: ignore[union-attr]
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {path.stem: path for path in CORE.glob("*.py")}
    return {name: core_imports(path) & set(modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of *graph* (its modules in import order, the first repeated at the end),
    or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for imported in sorted(graph[name]):
            if state.get(imported) == 1:
                return [*path[path.index(imported):], imported]
            if imported not in state and (cycle := visit(imported)) is not None:
                return cycle
        path.pop()
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state and (cycle := visit(name)) is not None:
            return cycle
    return None


def test_the_checker_finds_a_cycle_and_reads_every_kind_of_import(tmp_path: pathlib.Path) -> None:
    """The check can fail: a circle through a TYPE_CHECKING import and one inside a
    function are found."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    module = tmp_path / "m.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "from ._types import Event\n"
        "if TYPE_CHECKING:\n"
        "    from ._hub import Broadcaster\n"
        "def f():\n"
        "    from . import _cursor\n"
        "    from broadcaster._core._namespace import NamespaceState\n"
    )
    assert core_imports(module) == {"_types", "_hub", "_cursor", "_namespace"}


def test_no_core_module_imports_another_for_annotations_only() -> None:
    """A module that needs another's type for an annotation only names what it needs
    in a protocol: an import under ``TYPE_CHECKING`` would hide a circle at run time."""
    for path in sorted(CORE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.If) and isinstance(node.test, ast.Name)
                    and node.test.id == "TYPE_CHECKING"):
                hidden = [n for n in ast.walk(node)
                          if isinstance(n, ast.ImportFrom) and n.level == 1]
                assert not hidden, f"{path.name} imports core modules under TYPE_CHECKING"


def test_core_modules_import_each_other_without_a_circle() -> None:
    graph = import_graph()
    assert {"_hub", "_cursor", "_namespace", "_subscription", "_overflow"} <= set(graph)
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


#: the layers of docs/design.md ("Inside the core"): each imports only modules before it
LAYERS = [
    "_overflow", "_cursor", "_topics", "_budget", "_namespace", "_registry", "_subscription",
    "_callbacks", "_ready", "_notifier", "_upkeep", "_admission", "_publish_check", "_hub",
]


def test_the_layers_of_the_hub() -> None:
    """Policies know nothing of cursors; cursors nothing of namespaces, subscriptions or
    the hub; namespaces nothing of subscriptions or the hub; subscriptions and callbacks
    nothing of the hub; the hub's parts (waking, upkeep, admission, checking a publish)
    are used by the hub only; and nothing in the list imports what comes after it."""
    graph = import_graph()
    assert set(LAYERS) <= set(graph)
    for i, name in enumerate(LAYERS):
        later = graph[name] & set(LAYERS[i:])
        assert not later, f"{name} imports {sorted(later)}, which come after it"
    # the modules below the layers (logs, filters, configuration, records) import none
    for name in set(graph) - set(LAYERS):
        assert not graph[name] & set(LAYERS), f"{name} imports {graph[name] & set(LAYERS)}"
    parts = {"_notifier", "_upkeep", "_admission", "_publish_check"}
    assert {name for name, imported in graph.items() if imported & parts} <= {"_hub"}
