"""The log backends the core and gRPC suites run against: ``memory``, ``local`` (SQLite in
a tmp dir) and ``jetstream`` (a real nats-server, one per test session and worker).

Each test gets fresh storage: a new data directory per hub, new stream and subject
prefixes per hub on the shared nats-server (streams of other tests are never touched).
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broadcaster._core._durable import LogStore
from broadcaster._core._sqlite_store import LocalConfig, SqliteStore

__all__ = ["BACKENDS", "Backend", "StoreFactory"]

BACKENDS = ("memory", "local", "jetstream")


@dataclass(frozen=True)
class Backend:
    """One point of the matrix: the log backend and the anyio backend it runs on."""

    log: str
    anyio: str  # "asyncio", "trio" (real clock) or "trio-virtual" (MockClock)

    @property
    def id(self) -> str:
        return f"{self.anyio}-{self.log}"


class StoreFactory:
    """Makes the store of each hub of one test (None for memory)."""

    def __init__(self, log: str, base: Path, nats_url: str | None, threads: bool = True) -> None:
        self.log = log
        self._base = base
        self._nats_url = nats_url
        self._threads = threads
        self._count = itertools.count(1)

    @property
    def durable(self) -> bool:
        return self.log != "memory"

    @property
    def outside_loop(self) -> bool:
        """Whether its engine works outside the event loop (a worker thread, a socket)."""
        return self.log == "jetstream" or (self.log == "local" and self._threads)

    def local_config(self, **settings: Any) -> LocalConfig:
        """A LocalConfig in a fresh directory of the test's tmp dir."""
        path = self._base / f"local{next(self._count)}"
        return LocalConfig(path, **settings)

    def __call__(self, **settings: Any) -> LogStore | None:
        if self.log == "memory":
            return None
        if self.log == "local":
            return SqliteStore(self.local_config(**settings), threads=self._threads)
        from broadcaster._jetstream import JetStreamConfig, JetStreamStore

        assert self._nats_url is not None
        tag = f"t{uuid.uuid4().hex[:10]}"
        config = JetStreamConfig([self._nats_url], stream_prefix=f"{tag}-",
                                 subject_prefix=f"{tag}.ns", heartbeat=0.2,
                                 ack_timeout=3.0, **settings)
        return JetStreamStore(config)
