"""Which event log a server's hub keeps its namespaces' history in: ``memory`` (the
default: nothing to set up, lost on restart), ``local`` (SQLite in a data directory:
survives restarts, one node) or ``jetstream`` (NATS JetStream: several nodes, one
history).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from ._core._dedup import DEFAULT_DEDUP_MAX_IDS, DEFAULT_DEDUP_WINDOW
from ._core._durable import LogStore
from ._core._errors import InvalidArgument
from ._core._sqlite_store import LocalConfig, SqliteStore
from ._jetstream._config import JetStreamConfig

__all__ = ["BACKENDS", "Backend", "LogConfig"]

Backend = Literal["memory", "local", "jetstream"]
BACKENDS: tuple[Backend, ...] = ("memory", "local", "jetstream")


@dataclass(frozen=True, slots=True)
class LogConfig:
    """The event log of a server (``[log]`` in the configuration file).

    :ivar backend: ``memory``, ``local`` or ``jetstream``
    :ivar local: settings of ``local`` (its ``data_dir`` is required)
    :ivar jetstream: settings of ``jetstream`` (its ``servers``)
    :ivar dedup_window: seconds a client-chosen event id is remembered, on every backend
        (it overrides the engines' own setting)
    :ivar dedup_max_ids: ids remembered per namespace at most (memory and local; NATS
        keeps every id of its window)
    """

    backend: Backend = "memory"
    local: LocalConfig | None = None
    jetstream: JetStreamConfig = field(default_factory=JetStreamConfig)
    dedup_window: float = DEFAULT_DEDUP_WINDOW
    dedup_max_ids: int = DEFAULT_DEDUP_MAX_IDS

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise InvalidArgument("log.backend", f"{self.backend!r} is not one of "
                                  f"{', '.join(BACKENDS)}")
        if self.backend == "local" and self.local is None:
            raise InvalidArgument("log.local.data_dir", "the local log needs a data directory "
                                  "(--data-dir DIR, or [log.local] data_dir)")
        if not (isinstance(self.dedup_window, int | float) and self.dedup_window >= 0):
            raise InvalidArgument("log.dedup_window", "must be zero or positive")
        if not isinstance(self.dedup_max_ids, int) or self.dedup_max_ids < 1:
            raise InvalidArgument("log.dedup_max_ids", "must be a positive integer")

    @classmethod
    def for_local(cls, data_dir: str | Path, **settings: object) -> LogConfig:
        """``local`` in *data_dir* (other :class:`LocalConfig` fields in *settings*)."""
        return cls("local", local=LocalConfig(Path(data_dir), **settings))  # type: ignore[arg-type]

    @classmethod
    def for_jetstream(cls, servers: str | list[str], **settings: object) -> LogConfig:
        """``jetstream`` on *servers* (other :class:`JetStreamConfig` fields in
        *settings*)."""
        return cls("jetstream", jetstream=JetStreamConfig(servers, **settings))  # type: ignore[arg-type]

    def open_store(self) -> LogStore | None:
        """The store to give the hub (None for ``memory``); the hub enters it.

        :raises InvalidArgument: for ``jetstream`` without nats-py installed
        """
        if self.backend == "memory":
            return None
        if self.backend == "local":
            assert self.local is not None
            local = replace(self.local, dedup_window=self.dedup_window,
                            dedup_max_ids=self.dedup_max_ids)
            return SqliteStore(local)
        try:
            from ._jetstream._store import JetStreamStore
        except ImportError as exc:  # pragma: no cover - the test extra installs it
            raise InvalidArgument(
                "log.backend", f"jetstream needs nats-py (pip install 'broadcaster[jetstream]'): "
                f"{exc}") from None
        return JetStreamStore(replace(self.jetstream, dedup_window=self.dedup_window))
