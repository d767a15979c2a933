"""The core suite runs against every log backend: ``memory``, ``local`` (SQLite in the
test's tmp dir) and ``jetstream`` (a real nats-server, started once per session).

Every test that builds a hub with ``tests.core._util.Broadcaster`` runs on:

* anyio tests (``@pytest.mark.anyio``): asyncio with each of the three logs, and trio
  with ``memory`` and ``local`` (nats-py, the JetStream client, is asyncio-only);
* pytest-trio tests (``@pytest.mark.trio``): ``memory`` and ``local``; those on trio's
  virtual clock (the ``autojump_clock`` fixture) have the local engine's database
  calls run on the event loop (a worker thread's real time would make the virtual clock
  jump);
* tests marked ``memory_only(reason)``: the memory log only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .._backends import Backend, StoreFactory
from .._loops import ASYNCIO
from . import _util


def _matrix(anyios: list[str], memory_only: bool) -> list[Backend]:
    logs = ["memory"] if memory_only else ["memory", "local", "jetstream"]
    return [Backend(log, a) for a in anyios for log in logs
            if log != "jetstream" or a == "asyncio"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "hub_backend" not in metafunc.fixturenames:
        return
    node = metafunc.definition
    memory_only = node.get_closest_marker("memory_only") is not None
    if "anyio_backend" in metafunc.fixturenames:
        combos = _matrix(["asyncio", "trio"], memory_only)
    elif node.get_closest_marker("trio") is not None:  # pytest-trio
        virtual = "autojump_clock" in metafunc.fixturenames
        combos = _matrix(["trio-virtual" if virtual else "trio"], memory_only)
    else:  # not an async test: once
        combos = [Backend("memory", "none")]
    metafunc.parametrize("hub_backend", combos, ids=[c.id for c in combos], indirect=True)


@pytest.fixture
def hub_backend(request: pytest.FixtureRequest) -> Backend:
    backend: Backend = request.param
    return backend


@pytest.fixture
def anyio_backend(hub_backend: Backend) -> object:
    return ASYNCIO if hub_backend.anyio == "asyncio" else hub_backend.anyio


@pytest.fixture(autouse=True)
def hub_stores(hub_backend: Backend, tmp_path: Path,
               request: pytest.FixtureRequest) -> Iterator[StoreFactory]:
    """The stores of the hubs the test builds with ``_util.Broadcaster``."""
    url = None
    if hub_backend.log == "jetstream":
        url = request.getfixturevalue("session_nats").url
    factory = StoreFactory(hub_backend.log, tmp_path / "logs", url,
                           threads=hub_backend.anyio != "trio-virtual")
    _util.STORES = factory
    try:
        yield factory
    finally:
        _util.STORES = None
