from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio.testing

from ._loops import ASYNCIO
from ._nats import NatsCluster, NatsNode


@pytest.fixture(
    params=[pytest.param("asyncio", id="asyncio"), pytest.param("trio", id="trio")]
)
def anyio_backend(request: pytest.FixtureRequest) -> object:
    """Run each anyio test on asyncio and on trio (trio with a virtual, autojumping clock)."""
    if request.param == "trio":
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})
    return ASYNCIO


@pytest.fixture(scope="module")
async def shared_event_loop() -> AsyncIterator[None]:
    """Keep one event loop for a whole module (``pytest.mark.usefixtures``; the module's
    ``anyio_backend`` must be module-scoped too). Every module that runs grpc.aio in the
    test process uses it.

    grpc.aio's completion-queue poller is process-wide: a call or channel finishing after
    its test's loop closed posts to that closed loop, and the error surfaces in a later
    test ("Event loop is closed"). One loop per module leaves few such boundaries."""
    yield


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A synchronous test of a module that keeps ``shared_event_loop`` has no loop to
    share: drop the fixture from it. pytest refuses to set an async fixture up for a
    synchronous test, and under xdist a module's first test on a worker may be one (the
    error then cascaded to the next modules on that worker)."""
    for item in items:
        if (isinstance(item, pytest.Function) and "shared_event_loop" in item.fixturenames
                and not inspect.iscoroutinefunction(item.function)):
            item.fixturenames.remove("shared_event_loop")


@pytest.fixture(scope="session")
def session_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsNode]:
    """One JetStream node for the whole session (per xdist worker), for the suites that
    run on every log backend: each hub or server uses streams of its own on it."""
    yield from _running(NatsNode("session", tmp_path_factory.mktemp("nats")))


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsNode]:
    """One JetStream node on free loopback ports, stopped by PID at teardown."""
    yield from _running(NatsNode("n1", tmp_path / "nats"))


def _running(node: NatsNode) -> Iterator[NatsNode]:
    """*node* started and ready for the fixture's user, stopped by PID afterwards."""
    node.start()
    try:
        node.wait_ready()
        yield node
    finally:
        node.stop()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """Three routed JetStream nodes, stopped by PID at teardown."""
    cluster = NatsCluster(tmp_path / "nats")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
