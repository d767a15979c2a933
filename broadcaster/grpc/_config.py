"""The server's settings (:class:`ServerConfig`) and their translation into gRPC
channel arguments."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import BroadcasterError, HubConfig, InvalidArgument, Policy, PolicyKind
from .._auth._config import SecurityConfig
from .._log_backend import LogConfig
from ._containerd import default_policy
from ._subscribe_stream import StreamLimits

__all__ = ["CONTAINERD_POLICY_KINDS", "ServerConfig", "check_address"]

_MiB = 1024 * 1024
#: The largest value of an integer gRPC channel argument: "no bound of its own".
_UNBOUNDED = 2**31 - 1

#: Overflow policies a containerd ``Subscribe`` may use: ``block`` would let a ``ctr``
#: that stops reading hold every publisher up, and ``retry`` only delays the drop.
CONTAINERD_POLICY_KINDS = (PolicyKind.DISCONNECT, PolicyKind.DROP_OLDEST, PolicyKind.DROP_NEWEST)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Settings of a :class:`Server` (immutable).

    :ivar listen: addresses to serve gRPC on: ``HOST:PORT`` (port 0 picks one) or
        ``unix:PATH``
    :ivar metrics_listen: ``HOST:PORT`` of the Prometheus ``/metrics`` + ``/healthz``
        HTTP endpoint, or None for none
    :ivar hub: the hub's settings (namespaces, retention, heartbeats...)
    :ivar log: the event log: ``memory`` (the default), ``local`` or ``jetstream``
    :ivar max_receive_message_bytes: largest request message accepted
    :ivar max_send_message_bytes: largest response message sent
    :ivar max_concurrent_rpcs: RPCs at once over the TCP addresses, and again over the
        unix sockets (more get RESOURCE_EXHAUSTED), or None for no bound
    :ivar max_concurrent_streams: HTTP/2 streams (RPCs) at once per client connection
    :ivar stream_overload_protection: let gRPC refuse a new stream (REFUSED_STREAM)
        while streams the client already saw finish are still being released on the
        server; off by default, because it refuses honest clients running below
        ``max_concurrent_streams`` (see the README's guarantees)
    :ivar max_connections: open connections per TCP listen address; more are accepted
        and closed at once. Lowered at start to fit the open-file limit less
        ``reserved_fds``. None: no bound. Unix sockets have no such bound (they are the
        reserve that still answers when TCP is full)
    :ivar reserved_fds: file descriptors kept out of ``max_connections`` for the unix
        sockets, metrics and the process itself (at most half of the open-file limit)
    :ivar max_rpcs_per_peer: RPCs open at once from one TCP peer address (all its
        connections together; more get RESOURCE_EXHAUSTED), or None for no bound
    :ivar max_connection_idle: seconds after which a connection without RPCs is closed
        (GOAWAY), or None to keep idle connections
    :ivar handshake_timeout: seconds a new connection gets to send the HTTP/2 preface
    :ivar reuse_port: bind the TCP addresses with ``SO_REUSEPORT``, so that several
        processes serve the same address and the kernel spreads new connections over
        them (``broadcaster serve --workers``); off, a second server on a port in use
        fails to start
    :ivar max_subscriptions_per_stream: live subscriptions on one Subscribe stream
    :ivar publish_batch_max_events: events in one PublishStream batch (a larger batch
        is refused with RESOURCE_EXHAUSTED naming ``events``; the stream goes on)
    :ivar batch_max_events: deliveries in one EventBatch message
    :ivar batch_max_bytes: size after which an EventBatch message is closed
    :ivar batch_linger: the least time between two writes of a Subscribe stream: events
        that arrive sooner after a write wait for the rest of it and go out together (0:
        at once; a stream idle for longer always writes at once, and events that arrive
        while a write is in flight go out together in any case); not applied while one
        of the stream's subscriptions has a policy bound under 256 events or 256 KiB
    :ivar stream_turns_per_tick: Subscribe streams (both APIs) that may read or write in
        one turn of the event loop; the others wait for the next turns, so that Health
        and other clients' RPCs advance during a fan-out to thousands of streams
    :ivar stream_write_window: writes of Subscribe streams (both APIs) in flight in gRPC
        core at once, shared round-robin between client connections; a write in flight
        for over 50 ms stops counting (0: unbounded). It keeps the queue that every
        other RPC's completion waits behind short during a fan-out to thousands of
        streams
    :ivar max_heartbeats_per_second: Heartbeat messages of all broadcaster.v1 Subscribe
        streams together, about: with more than this times ``heartbeat_interval``
        streams, each sends only every k-th heartbeat (its own turn; k at most 30 s /
        ``heartbeat_interval``); a heartbeat not sent is never owed by the client (0:
        every stream sends every heartbeat)
    :ivar containerd_policy: overflow policy of containerd ``Subscribe`` streams
        (``disconnect``, ``drop_oldest`` or ``drop_newest``); None: ``disconnect`` at
        4096 events (or the smallest namespace ``max_policy_events`` if lower)
    :ivar keepalive_time: seconds between the server's keepalive pings
    :ivar keepalive_timeout: seconds to wait for a ping's answer before closing
    :ivar keepalive_permit_without_calls: accept client pings on connections without RPCs
    :ivar min_ping_interval: shortest interval between client pings the server tolerates
    :ivar max_ping_strikes: pings too early before the connection is closed (0: any)
    :ivar rpc_error_log_interval: failed RPCs are logged at most once per method and
        status code in this many seconds, with the count of those not logged
    :ivar grace_period: seconds in-flight RPCs get to finish on shutdown before they are
        cancelled
    :ivar reflection: serve gRPC server reflection
    :ivar security: TLS, authentication, the access policy and what is exposed (a
        non-loopback TCP address without TLS or authentication is refused unless
        ``security.insecure``)
    """

    listen: Sequence[str] = ("127.0.0.1:50051",)
    metrics_listen: str | None = None
    hub: HubConfig = field(default_factory=HubConfig)
    log: LogConfig = field(default_factory=LogConfig)
    max_receive_message_bytes: int = 4 * _MiB
    max_send_message_bytes: int = 16 * _MiB
    max_concurrent_rpcs: int | None = None
    max_concurrent_streams: int = 100
    stream_overload_protection: bool = False
    max_connections: int | None = 4096
    reserved_fds: int = 1024
    max_rpcs_per_peer: int | None = 10_000
    max_connection_idle: float | None = 300.0
    handshake_timeout: float = 10.0
    reuse_port: bool = False
    max_subscriptions_per_stream: int = 1000
    publish_batch_max_events: int = 10_000
    batch_max_events: int = 4096
    batch_max_bytes: int = 1 * _MiB
    batch_linger: float = 0.002
    stream_turns_per_tick: int = 16
    stream_write_window: int = 128
    max_heartbeats_per_second: int = 1000
    containerd_policy: Policy | None = None
    keepalive_time: float = 30.0
    keepalive_timeout: float = 10.0
    keepalive_permit_without_calls: bool = True
    min_ping_interval: float = 10.0
    max_ping_strikes: int = 2
    rpc_error_log_interval: float = 10.0
    grace_period: float = 5.0
    reflection: bool = True
    security: SecurityConfig = field(default_factory=SecurityConfig)

    def __post_init__(self) -> None:
        if isinstance(self.listen, str):
            object.__setattr__(self, "listen", (self.listen,))
        object.__setattr__(self, "listen", tuple(self.listen))
        if not self.listen:
            raise InvalidArgument("listen", "must name at least one address")
        for i, address in enumerate(self.listen):
            check_address(address, f"listen[{i}]", unix=True)
        if self.metrics_listen is not None:
            check_address(self.metrics_listen, "metrics_listen", unix=False)
        for name in ("max_receive_message_bytes", "max_send_message_bytes",
                     "max_concurrent_streams", "max_subscriptions_per_stream",
                     "publish_batch_max_events", "batch_max_events", "batch_max_bytes",
                     "stream_turns_per_tick"):
            _check_int(getattr(self, name), name, 1)
        for name in ("max_concurrent_rpcs", "max_connections", "max_rpcs_per_peer"):
            if getattr(self, name) is not None:
                _check_int(getattr(self, name), name, 1)
        _check_int(self.reserved_fds, "reserved_fds", 0)
        _check_int(self.stream_write_window, "stream_write_window", 0)
        _check_int(self.max_heartbeats_per_second, "max_heartbeats_per_second", 0)
        _check_int(self.max_ping_strikes, "max_ping_strikes", 0)
        for name in ("keepalive_time", "keepalive_timeout", "min_ping_interval",
                     "grace_period", "max_connection_idle", "handshake_timeout",
                     "rpc_error_log_interval"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int | float) and value > 0):
                raise InvalidArgument(name, "must be a positive number of seconds")
        if not (isinstance(self.batch_linger, int | float) and 0 <= self.batch_linger <= 1):
            raise InvalidArgument("batch_linger", "must be between 0 and 1 second")
        if self.containerd_policy is not None:
            self._check_containerd_policy(self.containerd_policy)
        self.security.check_exposure(self.listen, self.metrics_listen)

    def _check_containerd_policy(self, policy: Policy) -> None:
        if policy.kind not in CONTAINERD_POLICY_KINDS:
            raise InvalidArgument("containerd_policy.kind", "must be one of " + ", ".join(
                kind.value for kind in CONTAINERD_POLICY_KINDS))
        hub = self.hub
        for name, ns in [("defaults", hub.default_namespace), *hub.namespaces.items()]:
            try:
                ns.check_policy(policy)
            except BroadcasterError as exc:
                bound = exc.field.removeprefix("policy.")
                raise InvalidArgument(f"containerd_policy.{bound}",
                                      f"{exc.message} (the limit of namespace {name})") from None

    def containerd_subscribe_policy(self) -> Policy:
        """The overflow policy of containerd Subscribe streams: ``containerd_policy``,
        or ``disconnect`` bounded within every configured namespace's policy limit (a
        containerd subscription covers every namespace, including later ones)."""
        if self.containerd_policy is not None:
            return self.containerd_policy
        return default_policy(self.hub)

    def grpc_options(self, *, tcp: bool = True,
                     max_connections: int | None = None) -> list[tuple[str, Any]]:
        """The channel arguments of a gRPC server object.

        :param tcp: for the TCP addresses (False: for the unix sockets, which get no
            connection quota)
        :param max_connections: the connection quota per TCP address (``max_connections``
            after fitting it to the open-file limit); None: no quota
        """
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", self.max_receive_message_bytes),
            ("grpc.max_send_message_length", self.max_send_message_bytes),
            ("grpc.max_concurrent_streams", self.max_concurrent_streams),
            ("grpc.http.overload_protection", int(self.stream_overload_protection)),
            ("grpc.keepalive_time_ms", _ms(self.keepalive_time)),
            ("grpc.keepalive_timeout_ms", _ms(self.keepalive_timeout)),
            ("grpc.keepalive_permit_without_calls", int(self.keepalive_permit_without_calls)),
            ("grpc.http2.min_ping_interval_without_data_ms", _ms(self.min_ping_interval)),
            ("grpc.http2.max_ping_strikes", self.max_ping_strikes),
            ("grpc.server_handshake_timeout_ms", _ms(self.handshake_timeout)),
            ("grpc.so_reuseport", int(self.reuse_port and tcp)),
            # gRPC core queues a call that arrives before the application asked for
            # the next one (grpc.aio asks for one at a time, from the event loop), and
            # by default cancels queued calls: at random once 1,000 wait, all beyond
            # 3,000, and any that waited 30 s; with status CANCELLED, which a client
            # sending its first request reads as INTERNAL "Internal error from Core".
            # Thousands of streams opened while the loop is busy reach that: an honest
            # client below max_concurrent_streams and max_rpcs_per_peer had calls
            # ended for nothing it did. The queue is bounded by the connections times
            # max_concurrent_streams; a queued call waits for the loop (or its deadline).
            ("grpc.server.max_pending_requests", _UNBOUNDED),
            ("grpc.server.max_pending_requests_hard_limit", _UNBOUNDED),
            ("grpc.server_max_unrequested_time_in_server", _UNBOUNDED),
        ]
        if self.max_connection_idle is not None:
            options.append(("grpc.max_connection_idle_ms", _ms(self.max_connection_idle)))
        if tcp and max_connections is not None:
            options.append(("grpc.max_allowed_incoming_connections", max_connections))
        return options

    def stream_limits(self) -> StreamLimits:
        return StreamLimits(
            max_subscriptions=self.max_subscriptions_per_stream,
            batch_max_events=self.batch_max_events,
            batch_max_bytes=self.batch_max_bytes,
            batch_linger=self.batch_linger,
        )

    def tcp_addresses(self) -> list[str]:
        return [a for a in self.listen if not a.startswith("unix:")]

    def unix_addresses(self) -> list[str]:
        return [a for a in self.listen if a.startswith("unix:")]


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _check_int(value: Any, name: str, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InvalidArgument(
            name, "must be a positive integer" if minimum == 1 else f"must be >= {minimum}")


def check_address(address: str, field: str, *, unix: bool) -> str:
    """Return *address* if it is ``HOST:PORT`` (or ``unix:PATH`` when *unix*).

    :raises InvalidArgument: naming *field*
    """
    if not isinstance(address, str) or not address:
        raise InvalidArgument(field, "must be HOST:PORT" + (" or unix:PATH" if unix else ""))
    if address.startswith("unix:"):
        if not unix:
            raise InvalidArgument(field, "must be HOST:PORT (unix sockets are not supported)")
        if len(address) == len("unix:"):
            raise InvalidArgument(field, "unix: needs a socket path")
        return address
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise InvalidArgument(field, f"{address!r} is not HOST:PORT (port 0-65535)")
    return address
