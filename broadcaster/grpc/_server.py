"""The server: a hub, the gRPC services over it, health, reflection and metrics.

::

    async with Server(ServerConfig(listen=["127.0.0.1:0"])) as server:
        print(server.addresses)
        await server.wait_closed()
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from types import TracebackType

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from .. import Broadcaster, LogFactory, MemoryLog
from .._auth import ListenerSecurity, Permission, SecurityPolicy, is_loopback
from .._metrics import HubCollector
from ..payloads import CONTAINERD_PAYLOADS
from ._completions import read_completions_promptly
from ._config import ServerConfig, check_address
from ._containerd import ContainerdEvents, add_containerd_services
from ._fdlimit import fit_connections, open_files_limit
from ._health import Health
from ._heartbeat_share import HeartbeatShare
from ._interceptor import ServerInterceptor
from ._metrics_http import LoopCollector, MetricsHTTPServer, NamespaceFilter, ScrapeFilter
from ._peers import PeerLimiter
from ._ratelog import RateLimitedLog
from ._security import Security
from ._service import SERVICE_NAME, BroadcasterService
from ._sockets import add_unix_port
from ._telemetry import Telemetry
from ._turns import Turns
from ._write_window import WriteWindow

__all__ = ["Server", "ServerConfig", "check_address"]

logger = logging.getLogger("broadcaster.server")
access_logger = logging.getLogger("broadcaster.grpc.access")
containerd_logger = logging.getLogger("broadcaster.grpc.containerd")

#: what an event may add to its payload in a JetStream message: labels (64 of up to
#: 4 KiB), topic, type URL, the encoding's metadata and the Nats-Msg-Id header
_ENVELOPE_ALLOWANCE = 272 * 1024


def _bound(address: str, port: int) -> str:
    if address.startswith("unix:"):
        return address
    return f"{address.rpartition(':')[0]}:{port}"


class Server:
    """A running broadcaster server. Use as an async context manager (asyncio only):
    entering starts the hub, the gRPC servers and the metrics endpoint; leaving stops
    them gracefully, then the hub.

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
        #: TLS, identities, the access policy and the limits per identity (its files are
        #: read now: a bad one raises here, naming the key or line)
        self.security = Security(self.config.security, clock=lambda: self.hub.now())
        self.security.on_policy_change(self._policy_changed)
        self.addresses: list[str] = []
        self.metrics_address: str | None = None
        self.service_names: list[str] = []
        turns = Turns(self.config.stream_turns_per_tick)
        #: writes in flight in gRPC core, shared by every Subscribe stream (both APIs)
        self.write_window = None if not self.config.stream_write_window \
            else WriteWindow(self.config.stream_write_window)
        #: the heartbeat budget of the broadcaster.v1 Subscribe streams
        self.heartbeat_share = None if not self.config.max_heartbeats_per_second \
            else HeartbeatShare(self.config.max_heartbeats_per_second,
                                hub_config.heartbeat_interval)
        self._service = BroadcasterService(
            self.hub, self.config.stream_limits(), self.telemetry,
            publish_batch_max_events=self.config.publish_batch_max_events, turns=turns,
            window=self.write_window, heartbeats=self.heartbeat_share)
        self._health = Health()
        self._error_log = RateLimitedLog(access_logger, self.config.rpc_error_log_interval)
        self._containerd = ContainerdEvents(
            self.hub, policy=self.config.containerd_subscribe_policy(),
            drop_log=RateLimitedLog(containerd_logger, self.config.rpc_error_log_interval),
            turns=turns, window=self.write_window, on_reject=self.telemetry.reject)
        #: the connection quota per TCP address in force (``max_connections`` fitted
        #: under the open-file limit), known once started
        self.max_connections: int | None = None
        self._grpc: list[grpc.aio.Server] = []
        self._metrics: MetricsHTTPServer | None = None
        self._collector: LoopCollector | None = None
        self._serving = False
        self._stopping = False
        self._closed = anyio.Event()
        self._lifetime: contextlib.AbstractAsyncContextManager[None] | None = None

    @property
    def serving(self) -> bool:
        """True from start until shutdown begins."""
        return self._serving

    @property
    def subscribe_streams(self) -> int:
        """Open broadcaster.v1 Subscribe streams."""
        return self._service.subscribe_streams

    async def __aenter__(self) -> Server:
        """Start the hub, bind every address and start serving.

        :raises OSError: if an address cannot be bound (nothing is left running)
        :raises LogUnavailable, StorageError: if the event log cannot open (nothing is
            left running)
        """
        running = self._running()
        await running.__aenter__()
        self._lifetime = running
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        """Shut down gracefully (:meth:`stop`), then leave the hub."""
        running, self._lifetime = self._lifetime, None
        if running is not None:
            await running.__aexit__(exc_type, exc, tb)

    @contextlib.asynccontextmanager
    async def _running(self) -> AsyncIterator[None]:
        """The server's life: the hub's ``async with`` encloses everything else, so it
        is entered first and left last, whatever happens in between. An exception (from
        starting, or from the user's block) leaves the hub first and is raised as it is:
        the hub's task group would wrap it in an exception group. Entering the hub opens
        its log (``LogUnavailable``, ``StorageError``: it cannot)."""
        raised: BaseException | None = None
        async with self.hub:
            started = False
            try:
                try:
                    self._check_backplane()
                    await self._start_grpc()
                    self._start_metrics()
                    self.hub.task_group.start_soon(self.security.watch,
                                                   name="broadcaster security files")
                    started = True
                    self._serving = True
                    logger.info(
                        "serving addresses=%s metrics=%s log=%s epoch=%s max_connections=%s "
                        "max_rpcs_per_peer=%s max_connection_idle=%s %s",
                        ",".join(self.addresses), self.metrics_address,
                        self.config.log.backend, self.hub.epoch or "per-namespace",
                        self.max_connections, self.config.max_rpcs_per_peer,
                        self.config.max_connection_idle, self.security.describe())
                    yield
                finally:
                    with anyio.CancelScope(shield=True):
                        await self.stop(None if started else 0)
            except BaseException as exc:
                raised = exc
        if raised is not None:
            raise raised

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
        """One gRPC server for the TCP addresses (connection quota, per-address RPC
        bound) and one for the unix sockets (neither: they answer when TCP is full),
        both serving the same services over the same hub."""
        config = self.config
        tcp = config.tcp_addresses()
        fd_limit = open_files_limit()
        self.max_connections = fit_connections(
            config.max_connections, len(tcp), config.reserved_fds, fd_limit)
        if tcp and self.max_connections != config.max_connections:
            logger.warning(
                "connection quota lowered to fit the open-file limit max_connections=%s "
                "configured=%s open_files_limit=%s reserved_fds=%s tcp_addresses=%d",
                self.max_connections, config.max_connections, fd_limit,
                min(config.reserved_fds, (fd_limit or 0) // 2), len(tcp))
        # one gRPC server per kind of listener: TCP or unix, and how it authenticates
        # (the interceptor knows the server, not the address a call came in on)
        servers: dict[tuple[bool, ListenerSecurity], grpc.aio.Server] = {}
        security = config.security
        for i, address in enumerate(config.listen):
            is_tcp = not address.startswith("unix:")
            listener = self.security.listener(address)
            server = servers.get((is_tcp, listener))
            if server is None:
                server = servers[(is_tcp, listener)] = self._make_grpc(tcp=is_tcp,
                                                                       listener=listener)
                self._grpc.append(server)
            if is_tcp and listener.auth == "token" and not listener.tls \
                    and not is_loopback(address):
                logger.warning("bearer tokens in plaintext address=%s: anyone on the path "
                               "can read them; serve TLS too (--tls-cert, --tls-key)", address)
            credentials = self.security.credentials(listener)
            try:
                if not is_tcp:
                    port = add_unix_port(server, address, security.socket_mode,
                                         security.socket_group)
                elif credentials is not None:
                    port = server.add_secure_port(address, credentials)
                else:
                    port = server.add_insecure_port(address)
            except RuntimeError as exc:
                raise OSError(f"listen[{i}]: cannot bind {address!r}: {exc}") from exc
            self.addresses.append(_bound(address, port))
        for server in self._grpc:
            await server.start()
        # gRPC's finished operations reach the loop as fast as they finish, not one per
        # turn once many are waiting (see _completions)
        read_completions_promptly(asyncio.get_running_loop())
        for name in ["", *self.service_names]:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def _make_grpc(self, *, tcp: bool, listener: ListenerSecurity) -> grpc.aio.Server:
        config = self.config
        peers = PeerLimiter(config.max_rpcs_per_peer) \
            if tcp and config.max_rpcs_per_peer is not None else None
        server = grpc.aio.server(
            interceptors=[ServerInterceptor(self.telemetry, peers=peers,
                                            error_log=self._error_log, security=self.security,
                                            listener=listener, unix=not tcp)],
            options=config.grpc_options(tcp=tcp, max_connections=self.max_connections),
            maximum_concurrent_rpcs=config.max_concurrent_rpcs,
        )
        self._service.add_to(server)
        names = [SERVICE_NAME, *add_containerd_services(server, self.hub,
                                                        events=self._containerd)]
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        names.append(health_pb2.DESCRIPTOR.services_by_name["Health"].full_name)
        if config.reflection:
            names.append(reflection.SERVICE_NAME)
            reflection.enable_server_reflection(names, server)
        self.service_names = names
        return server

    def _stream_metrics(self) -> Iterator[Metric]:
        """The write window's and the heartbeat budget's figures."""
        window, share = self.write_window, self.heartbeat_share
        yield GaugeMetricFamily(
            "broadcaster_grpc_stream_writes_in_flight",
            "Subscribe stream writes in flight counted by the write window.",
            value=0 if window is None else window.in_flight)
        yield GaugeMetricFamily(
            "broadcaster_grpc_stream_writes_waiting",
            "Subscribe stream writes waiting for room in the write window.",
            value=0 if window is None else window.waiting)
        yield GaugeMetricFamily(
            "broadcaster_heartbeat_stride",
            "Subscribe streams send every stride-th heartbeat (the heartbeat budget).",
            value=1 if share is None else share.stride)

    def _start_metrics(self) -> None:
        self._collector = LoopCollector(HubCollector(
            self.hub, lambda: itertools.chain(self.telemetry.metrics(),
                                              self.security.metrics(),
                                              self._stream_metrics())))
        self.registry.register(self._collector)
        if self.config.metrics_listen is not None:
            security = self.config.security
            scrapes = self._scrape_filter() \
                if security.metrics_token_file or security.policy_file else None
            try:
                self._metrics = MetricsHTTPServer(
                    self.config.metrics_listen, self.registry, lambda: self._serving,
                    scrapes)
            except OSError as exc:
                raise OSError(
                    f"metrics_listen: cannot bind {self.config.metrics_listen!r}: {exc}"
                ) from exc
            self.metrics_address = self._metrics.address

    def _scrape_filter(self) -> ScrapeFilter:
        """Who a /metrics scrape is and which namespaces' series it sees, decided on the
        event loop (the HTTP server's threads only ask)."""
        token = anyio.lowlevel.current_token()
        security = self.security

        def decide(authorization: str | None, peer: str) -> NamespaceFilter | None:
            identity = security.identify_scrape(authorization, peer)
            if not security.authorizer.enforcing:
                return None
            allowed = security.authorizer.allowed
            return frozenset(name for name in self.hub.namespace_names()
                             if allowed(identity, Permission.STATS, name)).__contains__

        def scrape(authorization: str | None, peer: str) -> NamespaceFilter | None:
            return anyio.from_thread.run_sync(decide, authorization, peer, token=token)

        return scrape

    def reload_security(self) -> bool:
        """Reload the policy, token and certificate files (what SIGHUP does); a file
        that fails to load is refused and the one in force stays.

        :returns: whether every file is in force
        """
        return self.security.reload()

    def _policy_changed(self, policy: SecurityPolicy) -> None:
        """A new policy: subscriptions that lost a namespace end (permission_revoked),
        all-namespaces ones gain the namespaces they may now read."""
        ended = self.hub.readmit()
        logger.info("access policy in force rules=%d subscriptions_ended=%d",
                    policy.rules, ended)

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
        if self._grpc:
            async with anyio.create_task_group() as tg:
                for server in self._grpc:
                    tg.start_soon(server.stop, grace)
                await anyio.lowlevel.checkpoint()  # let grpc refuse new RPCs before the hub closes
                self.hub.close()
        if self._collector is not None:
            with contextlib.suppress(KeyError):
                self.registry.unregister(self._collector)
        if self._metrics is not None:
            await anyio.to_thread.run_sync(self._metrics.close)
        self.hub.close()

    async def wait_closed(self) -> None:
        """Wait until :meth:`stop` has finished."""
        await self._closed.wait()
