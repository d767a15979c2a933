"""The public surface: one front door, and a core that imports anyio only."""

from __future__ import annotations

import ast
import pathlib
import sys

import broadcaster
import broadcaster.client

CORE = pathlib.Path(broadcaster.__file__).parent / "_core"


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


def test_client_all_matches_the_module() -> None:
    """``broadcaster.client`` is a front door too: everything public is in ``__all__``,
    exactly once, and claims the public module."""
    client = broadcaster.client
    assert len(set(client.__all__)) == len(client.__all__)
    public = {n for n in vars(client) if not n.startswith("_")}
    assert public == set(client.__all__)
    for name in client.__all__:
        obj = getattr(client, name)
        if isinstance(obj, type):
            assert obj.__module__ == "broadcaster.client", name


def test_client_errors_are_one_family() -> None:
    """Every exception class the client exports derives from ClientError."""
    client = broadcaster.client
    errors = [getattr(client, n) for n in client.__all__
              if isinstance(getattr(client, n), type)
              and issubclass(getattr(client, n), BaseException)]
    assert {e.__name__ for e in errors} >= {"ClientError", "InvalidArgumentError",
                                            "StatusError"}
    assert all(issubclass(e, client.ClientError) for e in errors), errors
