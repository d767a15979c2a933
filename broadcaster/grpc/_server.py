"""The server: a hub, the gRPC services over it, health, reflection and metrics.

::

    async with Server(ServerConfig(listen=["127.0.0.1:0"])) as server:
        print(server.addresses)
        await server.wait_closed()
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from prometheus_client.registry import CollectorRegistry

from .._core._config import HubConfig
from .._core._errors import InvalidArgument
from .._core._hub import Broadcaster
from .._core._log import LogFactory, MemoryLog
from .._log_backend import LogConfig
from .._metrics import HubCollector
from ..payloads import CONTAINERD_PAYLOADS
from ._containerd import add_containerd_services
from ._metrics_http import LoopCollector, MetricsHTTPServer
from ._service import SERVICE_NAME, BroadcasterService
from ._subscribe_stream import StreamLimits
from ._telemetry import Telemetry, TelemetryInterceptor

__all__ = ["Server", "ServerConfig"]

logger = logging.getLogger("broadcaster.server")

_MiB = 1024 * 1024
#: what an event may add to its payload in a JetStream message: labels (64 of up to
#: 4 KiB), topic, type URL, the encoding's metadata and the Nats-Msg-Id header
_ENVELOPE_ALLOWANCE = 272 * 1024


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
    :ivar max_concurrent_rpcs: RPCs at once on the whole server (more get
        RESOURCE_EXHAUSTED), or None for no bound
    :ivar max_concurrent_streams: HTTP/2 streams (RPCs) at once per client connection
    :ivar max_subscriptions_per_stream: live subscriptions on one Subscribe stream
    :ivar batch_max_events: deliveries in one EventBatch message
    :ivar batch_max_bytes: size after which an EventBatch message is closed
    :ivar batch_linger: seconds a Subscribe stream, woken by new events, waits for more
        before reading its subscriptions (0 reads at once); skipped while one of the
        stream's subscriptions has a policy bound under 256 events or 256 KiB
    :ivar keepalive_time: seconds between the server's keepalive pings
    :ivar keepalive_timeout: seconds to wait for a ping's answer before closing
    :ivar keepalive_permit_without_calls: accept client pings on connections without RPCs
    :ivar min_ping_interval: shortest interval between client pings the server tolerates
    :ivar max_ping_strikes: pings too early before the connection is closed (0: any)
    :ivar max_connection_idle: seconds after which an idle connection is closed, or None
    :ivar grace_period: seconds in-flight RPCs get to finish on shutdown before they are
        cancelled
    :ivar reflection: serve gRPC server reflection
    """

    listen: Sequence[str] = ("127.0.0.1:50051",)
    metrics_listen: str | None = None
    hub: HubConfig = field(default_factory=HubConfig)
    log: LogConfig = field(default_factory=LogConfig)
    max_receive_message_bytes: int = 4 * _MiB
    max_send_message_bytes: int = 16 * _MiB
    max_concurrent_rpcs: int | None = None
    max_concurrent_streams: int = 100
    max_subscriptions_per_stream: int = 1000
    batch_max_events: int = 4096
    batch_max_bytes: int = 1 * _MiB
    batch_linger: float = 0.002
    keepalive_time: float = 30.0
    keepalive_timeout: float = 10.0
    keepalive_permit_without_calls: bool = True
    min_ping_interval: float = 10.0
    max_ping_strikes: int = 2
    max_connection_idle: float | None = None
    grace_period: float = 5.0
    reflection: bool = True

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
                     "batch_max_events", "batch_max_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidArgument(name, "must be a positive integer")
        if self.max_concurrent_rpcs is not None and self.max_concurrent_rpcs < 1:
            raise InvalidArgument("max_concurrent_rpcs", "must be a positive integer")
        if self.max_ping_strikes < 0:
            raise InvalidArgument("max_ping_strikes", "must be 0 or more")
        for name in ("keepalive_time", "keepalive_timeout", "min_ping_interval",
                     "grace_period", "max_connection_idle"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int | float) and value > 0):
                raise InvalidArgument(name, "must be a positive number of seconds")
        if not (isinstance(self.batch_linger, int | float) and 0 <= self.batch_linger <= 1):
            raise InvalidArgument("batch_linger", "must be between 0 and 1 second")

    def grpc_options(self) -> list[tuple[str, Any]]:
        """The channel arguments of the gRPC server."""
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", self.max_receive_message_bytes),
            ("grpc.max_send_message_length", self.max_send_message_bytes),
            ("grpc.max_concurrent_streams", self.max_concurrent_streams),
            ("grpc.keepalive_time_ms", int(self.keepalive_time * 1000)),
            ("grpc.keepalive_timeout_ms", int(self.keepalive_timeout * 1000)),
            ("grpc.keepalive_permit_without_calls", int(self.keepalive_permit_without_calls)),
            ("grpc.http2.min_ping_interval_without_data_ms", int(self.min_ping_interval * 1000)),
            ("grpc.http2.max_ping_strikes", self.max_ping_strikes),
            ("grpc.so_reuseport", 0),
        ]
        if self.max_connection_idle is not None:
            options.append(("grpc.max_connection_idle_ms", int(self.max_connection_idle * 1000)))
        return options

    def stream_limits(self) -> StreamLimits:
        return StreamLimits(
            max_subscriptions=self.max_subscriptions_per_stream,
            batch_max_events=self.batch_max_events,
            batch_max_bytes=self.batch_max_bytes,
            batch_linger=self.batch_linger,
        )


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


def _bound(address: str, port: int) -> str:
    if address.startswith("unix:"):
        return address
    return f"{address.rpartition(':')[0]}:{port}"


class Server:
    """A running broadcaster server. Use as an async context manager (asyncio only):
    entering starts the hub, the gRPC server and the metrics endpoint; leaving stops them
    gracefully.

    :param config: the settings
    :param registry: Prometheus registry the server's metrics are registered in (a fresh
        one when None; never the global one implicitly)
    :param log_factory: builds each namespace's event log
    """

    def __init__(self, config: ServerConfig | None = None, *,
                 registry: CollectorRegistry | None = None,
                 log_factory: LogFactory = MemoryLog) -> None:
        self.config = config or ServerConfig()
        self.registry = registry if registry is not None else CollectorRegistry()
        self.telemetry = Telemetry()
        hub_config = self.config.hub
        if hub_config.payload_fields is None:  # event.<field> of containerd's event types
            hub_config = replace(hub_config, payload_fields=CONTAINERD_PAYLOADS)
        log = self.config.log
        hub_config = replace(hub_config, dedup_window=log.dedup_window,
                             dedup_max_ids=log.dedup_max_ids)
        self.hub = Broadcaster(hub_config, log_factory=log_factory, store=log.open_store())
        self.addresses: list[str] = []
        self.metrics_address: str | None = None
        self.service_names: list[str] = []
        self._service = BroadcasterService(self.hub, self.config.stream_limits(), self.telemetry)
        self._health = HealthServicer()
        self._grpc: grpc.aio.Server | None = None
        self._metrics: MetricsHTTPServer | None = None
        self._collector: LoopCollector | None = None
        self._serving = False
        self._stopping = False
        self._closed = anyio.Event()
        self._hub_entered = False

    @property
    def serving(self) -> bool:
        """True from start until shutdown begins."""
        return self._serving

    @property
    def subscribe_streams(self) -> int:
        """Open broadcaster.v1 Subscribe streams."""
        return self._service.subscribe_streams

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            with anyio.CancelScope(shield=True):
                await self.stop()
        finally:
            await self._exit_hub()

    async def start(self) -> None:
        """Start the hub, bind every address and start serving.

        :raises OSError: if an address cannot be bound
        """
        await self.hub.__aenter__()  # LogUnavailable, StorageError: the log cannot open
        self._hub_entered = True
        self._check_backplane()
        try:
            await self._start_grpc()
            self._start_metrics()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.stop(0)
            await self._exit_hub()
            raise
        self._serving = True
        logger.info("serving addresses=%s metrics=%s log=%s epoch=%s",
                    ",".join(self.addresses), self.metrics_address, self.config.log.backend,
                    self.hub.epoch or "per-namespace")

    def _check_backplane(self) -> None:
        """Warn when NATS' max_payload cannot carry the largest event a namespace
        accepts (such a publish fails with RESOURCE_EXHAUSTED naming max_payload)."""
        max_payload = getattr(self.hub.store, "max_payload", None)
        if not max_payload:
            return
        hub = self.config.hub
        largest = max([hub.default_namespace.max_payload_bytes,
                       *(ns.max_payload_bytes for ns in hub.namespaces.values())])
        needed = largest + _ENVELOPE_ALLOWANCE
        if max_payload < needed:
            logger.warning(
                "NATS max_payload is %d bytes: events of up to %d bytes of payload (and "
                "%d of labels, topic and type URL) need %d; larger ones are refused. Set "
                "max_payload in nats-server's configuration (e.g. max_payload: 8MB)",
                max_payload, largest, _ENVELOPE_ALLOWANCE, needed)

    async def _start_grpc(self) -> None:
        config = self.config
        server = self._grpc = grpc.aio.server(
            interceptors=[TelemetryInterceptor(self.telemetry)],
            options=config.grpc_options(),
            maximum_concurrent_rpcs=config.max_concurrent_rpcs,
        )
        server.add_generic_rpc_handlers((self._service.handler(),))
        names = [SERVICE_NAME, *add_containerd_services(server, self.hub)]
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        names.append(health_pb2.DESCRIPTOR.services_by_name["Health"].full_name)
        if config.reflection:
            names.append(reflection.SERVICE_NAME)
            reflection.enable_server_reflection(names, server)
        self.service_names = names
        for i, address in enumerate(config.listen):
            try:
                port = server.add_insecure_port(address)
            except RuntimeError as exc:
                raise OSError(f"listen[{i}]: cannot bind {address!r}: {exc}") from exc
            self.addresses.append(_bound(address, port))
        await server.start()
        for name in ["", *names]:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def _start_metrics(self) -> None:
        self._collector = LoopCollector(HubCollector(self.hub, self.telemetry.metrics))
        self.registry.register(self._collector)
        if self.config.metrics_listen is not None:
            try:
                self._metrics = MetricsHTTPServer(
                    self.config.metrics_listen, self.registry, lambda: self._serving)
            except OSError as exc:
                raise OSError(
                    f"metrics_listen: cannot bind {self.config.metrics_listen!r}: {exc}"
                ) from exc
            self.metrics_address = self._metrics.address

    async def stop(self, grace: float | None = None) -> None:
        """Shut down gracefully: health turns NOT_SERVING, new RPCs are refused, every
        subscription ends with ``hub_closed`` after what was buffered for it is sent,
        and RPCs still running after *grace* seconds (``config.grace_period`` when None)
        are cancelled. Safe to call more than once and from any task; later calls wait
        for the first. The hub's own tasks end when the ``async with`` is left."""
        if self._stopping:
            await self._closed.wait()
            return
        self._stopping = True
        self._serving = False
        grace = self.config.grace_period if grace is None else grace
        logger.info("shutting down grace=%s", grace)
        try:
            await self._teardown(grace)
        finally:
            self._closed.set()
            logger.info("stopped")

    async def _teardown(self, grace: float) -> None:
        await self._health.enter_graceful_shutdown()
        self._service.stop()
        if self._grpc is not None:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._grpc.stop, grace)
                await anyio.lowlevel.checkpoint()  # let grpc refuse new RPCs before the hub closes
                self.hub.close()
        if self._collector is not None:
            with contextlib.suppress(KeyError):
                self.registry.unregister(self._collector)
        if self._metrics is not None:
            await anyio.to_thread.run_sync(self._metrics.close)
        self.hub.close()

    async def _exit_hub(self) -> None:
        if self._hub_entered:
            self._hub_entered = False
            await self.hub.__aexit__(None, None, None)

    async def wait_closed(self) -> None:
        """Wait until :meth:`stop` has finished."""
        await self._closed.wait()
