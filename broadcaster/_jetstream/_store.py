"""The connection to NATS and the streams of the namespaces.

Each namespace is a stream named ``<stream_prefix><encoded namespace>`` on the one
subject ``<subject_prefix>.<encoded namespace>``, created on first use with the
namespace's retention as limits (``max_msgs``, ``max_bytes``, ``max_age``, discard
old), ``replicas`` replicas, ``duplicate_window`` for ``Nats-Msg-Id`` deduplication
and direct gets. The stream's metadata carries a random ``broadcaster_epoch`` chosen
when it was created: a deleted and created again stream is a new epoch.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

import anyio
import nats
import nats.errors
import nats.js.errors
from anyio.abc import TaskGroup
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from .._core._config import Retention
from .._core._durable import LogListener, LogUnavailable
from ._config import JetStreamConfig

if TYPE_CHECKING:
    from ._log import JetStreamLog

__all__ = ["EPOCH_KEY", "JetStreamConfig", "JetStreamStore", "unavailable"]

logger = logging.getLogger("broadcaster.jetstream")

EPOCH_KEY = "broadcaster_epoch"

#: errors of nats-py that mean "not now" (no connection, no leader, no answer)
NATS_UNAVAILABLE: tuple[type[BaseException], ...] = (
    nats.errors.TimeoutError, nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError, nats.errors.OutboundBufferLimitError,
    nats.js.errors.NoStreamResponseError, nats.js.errors.ServiceUnavailableError,
    TimeoutError, ConnectionError,
)
NATS_OR_OS: tuple[type[BaseException], ...] = (*NATS_UNAVAILABLE, OSError)


def unavailable(message: str) -> LogUnavailable:
    return LogUnavailable("backplane", message)


class JetStreamStore:
    """Opens the logs of one hub on NATS JetStream. Enter it before use (it connects;
    leaving it closes the connection).

    :raises LogUnavailable: on entering, if no server can be reached
    """

    def __init__(self, config: JetStreamConfig) -> None:
        self.config = config
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._tg: TaskGroup | None = None
        self._logs: dict[str, object] = {}
        self._closing = False

    @property
    def nc(self) -> NATS:
        if self._nc is None:
            raise anyio.ClosedResourceError
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise anyio.ClosedResourceError
        return self._js

    @property
    def task_group(self) -> TaskGroup:
        assert self._tg is not None
        return self._tg

    @property
    def max_payload(self) -> int:
        """The largest message the connected NATS server accepts (its max_payload)."""
        return int(self._nc.max_payload) if self._nc is not None else 0

    @property
    def epoch(self) -> str:
        """``""``: every namespace has its own epoch, its stream's incarnation."""
        return ""

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def __aenter__(self) -> JetStreamStore:
        config = self.config
        try:
            with anyio.fail_after(config.connect_timeout * len(config.servers) + 0.5):
                self._nc = await nats.connect(
                    list(config.servers), name=config.name,
                    connect_timeout=config.connect_timeout,
                    allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=0.25,
                    ping_interval=5, max_outstanding_pings=2,
                    error_cb=self._on_error, disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                )
        except NATS_OR_OS as exc:
            raise unavailable(f"cannot reach NATS at {', '.join(config.servers)}: "
                              f"{exc or type(exc).__name__}") from exc
        self._js = self._nc.jetstream(timeout=config.ack_timeout)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tg is not None
        self._closing = True
        self._tg.cancel_scope.cancel()
        try:
            await self._tg.__aexit__(None, None, None)
        finally:
            nc, self._nc, self._js = self._nc, None, None
            if nc is not None:
                with anyio.CancelScope(shield=True):
                    await nc.close()

    async def open_log(
        self, namespace: str, retention: Retention, listener: LogListener
    ) -> JetStreamLog:
        """The log of *namespace*: its stream created if missing, its consumer started,
        and its local view caught up with the stream's last sequence.

        :raises LogUnavailable: if NATS does not answer
        """
        from ._log import JetStreamLog

        log = self._logs.get(namespace)
        if isinstance(log, JetStreamLog):
            return log
        info = await self.ensure_stream(namespace, retention)
        log = self._logs.get(namespace)
        if isinstance(log, JetStreamLog):
            return log
        log = JetStreamLog(self, namespace, retention, listener, info)
        self._logs[namespace] = log
        await log.start()
        return log

    def stream_config(self, namespace: str, retention: Retention,
                      epoch: str | None = None) -> api.StreamConfig:
        config = self.config
        return api.StreamConfig(
            name=config.stream(namespace), subjects=[config.subject(namespace)],
            retention=api.RetentionPolicy.LIMITS, discard=api.DiscardPolicy.OLD,
            max_msgs=retention.max_events, max_bytes=retention.max_bytes,
            max_age=retention.max_age, storage=api.StorageType.FILE,
            num_replicas=config.replicas,
            # JetStream refuses a window longer than the stream's max_age
            duplicate_window=min(config.dedup_window, retention.max_age),
            allow_direct=True, description=f"broadcaster namespace {namespace}",
            metadata={EPOCH_KEY: epoch or uuid.uuid4().hex[:16],
                      "broadcaster_namespace": namespace},
        )

    async def ensure_stream(self, namespace: str, retention: Retention) -> api.StreamInfo:
        """The stream of *namespace*, created if missing; its limits updated if the
        retention changed.

        :raises LogUnavailable: if NATS does not answer
        """
        js, name = self.js, self.config.stream(namespace)
        try:
            try:
                info = await js.stream_info(name)
            except nats.js.errors.NotFoundError:
                try:
                    info = await js.add_stream(self.stream_config(namespace, retention))
                    logger.info("created stream %s for namespace %r", name, namespace)
                except nats.js.errors.BadRequestError:  # created meanwhile by another node
                    info = await js.stream_info(name)
            wanted = self.stream_config(namespace, retention, epoch_of(info))
            have = info.config
            if (have.max_msgs, have.max_bytes, have.max_age, have.duplicate_window) != (
                wanted.max_msgs, wanted.max_bytes, wanted.max_age, wanted.duplicate_window
            ):
                wanted.metadata = have.metadata or wanted.metadata
                try:
                    info = await js.update_stream(wanted)
                except nats.js.errors.APIError as exc:
                    logger.warning("stream %s keeps its limits: %s", name, exc)
            return info
        except NATS_UNAVAILABLE as exc:
            raise unavailable(f"NATS did not answer for stream {name}: "
                              f"{exc or type(exc).__name__}") from exc

    # -- namespaces other nodes use ---------------------------------------------------------

    async def namespaces(self) -> list[str]:
        """Every namespace that has a stream (created by any node), for a node to open at
        start so that all-namespaces subscriptions get every namespace.

        :raises LogUnavailable: if NATS does not answer
        """
        names: list[str] = []
        offset = 0
        subject = f"{self.config.subject_prefix}.>"
        try:
            while True:
                request = json.dumps({"offset": offset, "subject": subject}).encode()
                reply = await self.nc.request("$JS.API.STREAM.NAMES", request,
                                              timeout=self.config.ack_timeout)
                data = json.loads(reply.data)
                if "error" in data:
                    raise unavailable(f"JetStream could not list streams: {data['error']}")
                streams = data.get("streams") or []
                names += [n for n in map(self.config.namespace_of, streams) if n is not None]
                offset += len(streams)
                if not streams or offset >= int(data.get("total", 0)):
                    return names
        except NATS_UNAVAILABLE as exc:
            raise unavailable(f"NATS did not answer a list of streams: {exc}") from exc

    async def watch_namespaces(self, callback: Callable[[str], None]) -> None:
        """Call *callback* (on the event loop) with each namespace whose stream another
        node (or this one) creates from now on (JetStream's stream advisories)."""
        config = self.config

        async def created(msg: Msg) -> None:
            name = config.namespace_of(msg.subject.rsplit(".", 1)[-1])
            if name is not None:
                callback(name)

        await self.nc.subscribe("$JS.EVENT.ADVISORY.STREAM.CREATED.*", cb=created)

    # -- connection events --------------------------------------------------------------

    async def _on_error(self, exc: Exception) -> None:
        logger.warning("NATS: %s", exc)

    async def _on_disconnected(self) -> None:
        if self._closing:
            return
        logger.warning("NATS connection lost; reconnecting")
        self._tell(False, "NATS connection lost")

    async def _on_reconnected(self) -> None:
        url = self._nc.connected_url if self._nc is not None else None
        logger.warning("NATS connection back (%s)", url.netloc if url else "?")
        self._tell(True, "NATS connection back")

    def _tell(self, available: bool, reason: str) -> None:
        from ._log import JetStreamLog

        for log in self._logs.values():
            if isinstance(log, JetStreamLog):
                log.availability(available, reason)


def epoch_of(info: api.StreamInfo) -> str:
    """The incarnation of a stream: its epoch metadata, else its creation time."""
    metadata = info.config.metadata or {}
    if EPOCH_KEY in metadata:
        return metadata[EPOCH_KEY]
    return f"created-{info.created.isoformat() if info.created else 'unknown'}"
