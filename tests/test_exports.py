"""The public surface: one front door, and a core that imports anyio only."""

from __future__ import annotations

import ast
import pathlib
import sys
import types

import pytest

import broadcaster
import broadcaster.client
import broadcaster.grpc
import broadcaster.payloads

ROOT = pathlib.Path(broadcaster.__file__).parent
CORE = ROOT / "_core"


def test_all_matches_the_module() -> None:
    assert len(set(broadcaster.__all__)) == len(broadcaster.__all__)
    for name in broadcaster.__all__:
        assert hasattr(broadcaster, name), name
    public = {n for n in vars(broadcaster) if not n.startswith("_")}
    modules = {"v1", "containerd", "client", "grpc", "payloads"}  # subpackages, imported on demand
    assert public - modules - {"contextlib"} == set(broadcaster.__all__)


def test_public_classes_claim_the_public_module() -> None:
    for name in broadcaster.__all__:
        obj = getattr(broadcaster, name)
        if isinstance(obj, type):
            assert obj.__module__ == "broadcaster", name


def test_core_imports_nothing_but_anyio_re2_and_the_standard_library() -> None:
    """re2 is a pure regex engine (Go's dialect, linear time) for ``~=`` filters; no event
    loop, network or protobuf library may enter the core."""
    allowed = (set(sys.stdlib_module_names) - {"asyncio"}) | {"anyio", "re2", "__future__"}
    for path in CORE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"


FRONT_DOORS = [broadcaster.client, broadcaster.grpc, broadcaster.payloads]


@pytest.mark.parametrize("door", FRONT_DOORS, ids=lambda m: m.__name__)
def test_front_door_all_matches_the_module(door: types.ModuleType) -> None:
    """``broadcaster.client``, ``broadcaster.grpc`` and ``broadcaster.payloads`` are front
    doors too: everything public is in ``__all__``, exactly once, and its classes and
    functions claim the public module."""
    assert len(set(door.__all__)) == len(door.__all__)
    public = {n for n in vars(door) if not n.startswith("_")}
    assert public == set(door.__all__)
    for name in door.__all__:
        obj = getattr(door, name)
        if isinstance(obj, type | types.FunctionType):
            assert obj.__module__ == door.__name__, name


@pytest.mark.parametrize("door", FRONT_DOORS, ids=lambda m: m.__name__)
def test_front_door_exports_from_elsewhere_only_with_a_reason(door: types.ModuleType) -> None:
    """A name a front door takes from outside its own package (the core's, another
    edge's) is internal there: exporting it needs a reason, in the docstring."""
    package = door.__name__.rpartition(".")[2]
    tree = ast.parse(pathlib.Path(door.__file__ or "").read_text())
    foreign = {alias.asname or alias.name
               for node in tree.body if isinstance(node, ast.ImportFrom)
               and node.level != 1  # from ._x import ...: its own modules
               for alias in node.names}
    foreign &= set(door.__all__)
    doc = door.__doc__ or ""
    assert all(name in doc for name in foreign), (package, foreign)


def test_the_grpc_edge_uses_only_the_cores_public_names() -> None:
    """The edge converts at the border: it reaches the core through ``broadcaster``'s
    public API (no cursor, no namespace state, no private module)."""
    for path in (ROOT / "grpc").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = "." * node.level + (node.module or "")
                assert "_core" not in module, f"{path.name} imports {module}"
                if node.level == 2 and not node.module:  # from .. import X
                    for alias in node.names:
                        assert alias.name in broadcaster.__all__, (path.name, alias.name)


def test_the_client_imports_no_server_code() -> None:
    for path in (ROOT / "client").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = "." * node.level + (node.module or "")
                assert not module.startswith((".._cli", "..grpc", "broadcaster.grpc")), \
                    f"{path.name} imports {module}"


def test_client_errors_are_one_family() -> None:
    """Every exception class the client exports derives from ClientError."""
    client = broadcaster.client
    errors = [getattr(client, n) for n in client.__all__
              if isinstance(getattr(client, n), type)
              and issubclass(getattr(client, n), BaseException)]
    assert {e.__name__ for e in errors} >= {"ClientError", "InvalidArgumentError",
                                            "StatusError"}
    assert all(issubclass(e, client.ClientError) for e in errors), errors
