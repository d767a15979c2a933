"""Settings of the ``jetstream`` log engine (no NATS import: the server's configuration
is read without the ``jetstream`` extra installed)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .._core._dedup import DEFAULT_DEDUP_WINDOW
from .._core._errors import BroadcasterError, InvalidArgument
from .._core._validation import validate_namespace
from ._naming import decode_namespace, encode_namespace

__all__ = ["JetStreamConfig"]


@dataclass(frozen=True, slots=True)
class JetStreamConfig:
    """Settings of the ``jetstream`` engine.

    :ivar servers: NATS URLs (``nats://host:port``); the client moves between them
    :ivar replicas: replicas of each namespace's stream (1 on one server, 3 in a cluster)
    :ivar stream_prefix: prefix of the stream names
    :ivar subject_prefix: prefix of the subjects
    :ivar ack_timeout: seconds a publish waits for JetStream's acknowledgement
    :ivar connect_timeout: seconds to reach a server at start-up
    :ivar dedup_window: seconds ``Nats-Msg-Id`` deduplicates (the stream's window)
    :ivar heartbeat: idle heartbeat of the consumers feeding the local view; a consumer
        silent for three of them is created again
    :ivar cache_events: newest events per namespace kept in memory
    :ivar cache_bytes: the same bound in bytes
    :ivar read_chunk: events per fetch of older history
    :ivar name: the connection's name, as NATS monitoring shows it
    """

    servers: Sequence[str] = ("nats://127.0.0.1:4222",)
    replicas: int = 1
    stream_prefix: str = "broadcaster-"
    subject_prefix: str = "broadcaster.ns"
    ack_timeout: float = 5.0
    connect_timeout: float = 2.0
    dedup_window: float = DEFAULT_DEDUP_WINDOW
    heartbeat: float = 1.0
    cache_events: int = 16_384
    cache_bytes: int = 16 * 1024 * 1024
    read_chunk: int = 256
    name: str = "broadcaster"

    def __post_init__(self) -> None:
        servers = (self.servers,) if isinstance(self.servers, str) else tuple(self.servers)
        object.__setattr__(self, "servers", servers)
        if not servers:
            raise InvalidArgument("backplane", "needs at least one nats:// URL")
        for url in servers:
            if not url.startswith(("nats://", "tls://")):
                raise InvalidArgument("backplane", f"{url!r} is not a nats:// or tls:// URL")
        if not 1 <= self.replicas <= 5:
            raise InvalidArgument("replicas", "must be between 1 and 5")
        for name in ("ack_timeout", "connect_timeout", "heartbeat"):
            if not getattr(self, name) > 0:
                raise InvalidArgument(name, "must be positive")
        for name in ("cache_events", "cache_bytes", "read_chunk"):
            if getattr(self, name) < 1:
                raise InvalidArgument(name, "must be at least 1")

    def stream(self, namespace: str) -> str:
        return self.stream_prefix + encode_namespace(namespace)

    def subject(self, namespace: str) -> str:
        return f"{self.subject_prefix}.{encode_namespace(namespace)}"

    def namespace_of(self, stream: str) -> str | None:
        """The namespace whose stream is named *stream*, or None for another stream."""
        if not stream.startswith(self.stream_prefix):
            return None
        name = decode_namespace(stream[len(self.stream_prefix):])
        if name is None:
            return None
        try:
            return validate_namespace(name)
        except BroadcasterError:
            return None
