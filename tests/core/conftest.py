"""The core suite runs against every log backend: ``memory``, ``local`` (SQLite in the
test's tmp dir) and ``jetstream`` (a real nats-server, started once per session).

Every test that builds a hub with ``tests.core._util.Broadcaster`` runs on:

* asyncio with each of the three logs, and trio with ``memory`` and ``local``
  (nats-py, the JetStream client, is asyncio-only);
* tests marked ``virtual_clock`` run on trio's ``MockClock(autojump_threshold=0)`` only,
  with ``memory`` and ``local`` (its database calls then run on the event loop: a
  worker thread's real time would make the virtual clock jump);
* tests marked ``memory_only(reason)`` run on the memory log only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio.testing

from .._backends import Backend, StoreFactory
from . import _util


def _matrix(virtual: bool, memory_only: bool) -> list[Backend]:
    anyios = ["trio-virtual"] if virtual else ["asyncio", "trio"]
    logs = ["memory"] if memory_only else ["memory", "local", "jetstream"]
    return [Backend(log, a) for a in anyios for log in logs
            if log != "jetstream" or a == "asyncio"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "hub_backend" not in metafunc.fixturenames:
        return
    node = metafunc.definition
    if "anyio_backend" not in metafunc.fixturenames:  # not an async test: once
        combos = [Backend("memory", "none")]
    else:
        combos = _matrix(node.get_closest_marker("virtual_clock") is not None,
                         node.get_closest_marker("memory_only") is not None)
    metafunc.parametrize("hub_backend", combos, ids=[c.id for c in combos], indirect=True)


@pytest.fixture
def hub_backend(request: pytest.FixtureRequest) -> Backend:
    backend: Backend = request.param
    return backend


@pytest.fixture
def anyio_backend(hub_backend: Backend) -> object:
    if hub_backend.anyio == "trio-virtual":
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})
    return hub_backend.anyio


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
