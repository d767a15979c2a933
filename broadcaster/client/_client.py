"""The client: channels to one or several servers, unary publish, batched publishers,
subscriptions."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import TypeVar

import anyio
import anyio.abc
import grpc
import grpc.aio

from .._core._policy import Policy
from ..v1 import broadcaster_pb2 as pb
from ..v1 import broadcaster_pb2_grpc as pb_grpc
from ._backoff import Backoff
from ._credentials import ClientTLS
from ._endpoints import Endpoints, new_id_prefix, targets_of
from ._errors import ClientClosedError, InvalidArgumentError, PublishError, StatusError
from ._publisher import Publisher
from ._retry import Refusals, call_unary, failed_sending
from ._subscribe import SubscribeStream
from ._subscription import Subscription
from ._validate import (
    check_epoch,
    check_event_id,
    check_filters,
    check_labels,
    check_namespace,
    check_namespaces,
    check_payload,
    check_policy,
    check_since,
    check_timestamp,
    check_topic,
)
from ._wire import Payload

__all__ = ["Client", "grpc_target"]

T = TypeVar("T")
#: One attempt of a unary call: ``(stub, seconds left, wait_for_ready) -> response``.
_UnaryCall = Callable[["pb_grpc.BroadcasterAsyncStub", float, bool], Awaitable[T]]


def grpc_target(address: str) -> str:
    """The gRPC target of an address: ``HOST:PORT``, ``unix:PATH`` or a bare socket path
    (``/run/broadcaster.sock``, as ctr accepts).

    :raises InvalidArgumentError: for an empty address
    """
    if not address:
        raise InvalidArgumentError("address", "must not be empty")
    if address.startswith(("unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:")):
        return address
    if address.startswith(("/", "./")):
        return f"unix:{address}"
    return address


class Client:
    """A connection to a broadcaster server, or to any of several nodes of one cluster.

    ::

        async with Client("unix:/run/broadcaster.sock") as client:
            seq = await client.publish("default", "/tasks/exit", task_exit)
            async with client.subscribe("default", filters=['topic=="/tasks/exit"']) as sub:
                async for item in sub: ...

    The ``async with`` block owns the client's task group: the tasks that keep its
    Subscribe streams open run in it and end with it (unary calls need no block). As
    with any task group, do not ``yield`` out of the block from an async generator; hand
    items to other code through a memory object stream instead.

    All subscriptions of one client share one Subscribe stream; it answers heartbeats
    and reconnects (exponential backoff with jitter) with each subscription's cursors
    and epochs, so a transient disconnect loses nothing that the server still retains. A
    call whose HTTP/2 stream the server refused (``REFUSED_STREAM``: it processed
    nothing) is retried within the call's timeout; see :attr:`retried_refusals`.

    **Several addresses** (the nodes of one ``jetstream`` cluster): the client uses one
    at a time; when a call fails as a broken node does (``UNAVAILABLE``), it moves on to
    the next, where streams resume exactly (a namespace's sequences and epoch are the
    same on every node) and a publish that carries an event id is sent again.

    **Event ids.** Every publish carries an id the client makes (unless *event_ids* is
    False or the caller gives one): the server stores an id once within its
    deduplication window, so :meth:`publish` and a :class:`Publisher` send an event again
    after an ``UNAVAILABLE`` (a broken connection, a node going away, NATS unreachable)
    without risk of storing it twice.

    :param address: ``HOST:PORT``, ``unix:PATH`` or an absolute socket path, or a
        sequence of them (tried in order, the next on failure)
    :param timeout: bound of every unary call and of a subscription's Add (seconds)
    :param backoff: reconnect delays of the Subscribe stream
    :param idle_timeout: reconnect when the Subscribe stream is silent this long
        (several server heartbeat intervals); None: never
    :param buffer: stream messages buffered per subscription before the stream is
        paused (and the server's overflow policy takes over)
    :param seed: seed of the backoff jitter (None: from the OS)
    :param options: extra grpc channel options
    :param metadata: metadata sent with every call
    :param event_ids: give every published event an id (see above)
    :param tls: connect with TLS (and a client certificate, for mTLS); None: plaintext
    :param token: a bearer token sent with every call (``authorization: Bearer ...``)
    :raises InvalidArgumentError: for an empty address, a buffer below 1, a token with
        spaces, or TLS files that cannot be read
    """

    def __init__(
        self,
        address: str | Sequence[str],
        *,
        timeout: float = 10.0,
        backoff: Backoff | None = None,
        idle_timeout: float | None = 60.0,
        buffer: int = 16,
        seed: int | None = None,
        options: Sequence[tuple[str, str | int]] = (),
        metadata: Sequence[tuple[str, str]] = (),
        event_ids: bool = True,
        tls: ClientTLS | None = None,
        token: str | None = None,
    ) -> None:
        if buffer < 1:
            raise InvalidArgumentError("buffer", "must be at least 1")
        if token is not None and (not token or any(c.isspace() for c in token)):
            raise InvalidArgumentError("token", "must be a non-empty string without spaces")
        #: the addresses, in the order they are tried
        self.addresses = targets_of(address)
        self.address = self.addresses[0]
        targets = [grpc_target(a) for a in self.addresses]
        self._event_ids = event_ids
        self._id_prefix = new_id_prefix()
        self._id_count = 0
        self._timeout = timeout
        self._backoff = backoff or Backoff()
        self._idle_timeout = idle_timeout
        self._buffer = buffer
        self._rng = random.Random(seed)
        self._options: list[tuple[str, str | int]] = [
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            *(tls.options() if tls is not None else ()), *options]
        self._credentials = tls.credentials() if tls is not None else None
        self._metadata = tuple(metadata) + (
            (("authorization", f"Bearer {token}"),) if token is not None else ())
        self._refusals = Refusals()
        self._endpoints = Endpoints(targets, self._options, self._credentials)
        self._tg: anyio.abc.TaskGroup | None = None
        self._stream: SubscribeStream | None = None
        self._own_streams: set[SubscribeStream] = set()
        self._closed = False

    async def __aenter__(self) -> Client:
        if self._tg is not None:
            raise ClientClosedError("client: already entered")
        self._open()
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.aclose()
        finally:
            tg, self._tg = self._tg, None
            if tg is not None:
                # The block's own exception is not the task group's: it propagates as is.
                await tg.__aexit__(None, None, None)

    def _open(self) -> Endpoints:
        if self._closed:
            raise ClientClosedError("client: closed")
        return self._endpoints

    @property
    def current_address(self) -> str:
        """The address the client uses now."""
        return self.addresses[self._endpoints.index]

    @property
    def failovers(self) -> int:
        """How many times the client moved on to the next address."""
        return self._endpoints.failovers

    def _next_event_id(self) -> str:
        self._id_count += 1
        return f"{self._id_prefix}-{self._id_count}"

    async def aclose(self) -> None:
        """End every subscription and close the channel."""
        self._closed = True
        streams = [*self._own_streams, *([self._stream] if self._stream else [])]
        self._own_streams.clear()
        with anyio.CancelScope(shield=True):  # bounded: each stream's task just ends
            for stream in streams:
                await stream.aclose()
            await self._endpoints.close()

    @property
    def subscribe_stream(self) -> SubscribeStream | None:
        """The shared Subscribe stream (None until the first subscription)."""
        return self._stream

    @property
    def retried_refusals(self) -> dict[str, int]:
        """How many times a call was sent again because the server refused its stream,
        per method (``Publish``, ``Stats``, ``PublishStream``, ``Subscribe``)."""
        return dict(self._refusals.retried)

    async def publish(
        self,
        namespace: str,
        topic: str,
        payload: Payload = b"",
        *,
        type_url: str | None = None,
        labels: Mapping[str, str] | None = None,
        timestamp: datetime | int | float | None = None,
        event_id: str | None = None,
    ) -> int:
        """Publish one event with the unary Publish call; returns its sequence number.

        Waits for the server to become reachable, at most the client's *timeout*; a
        refused call is sent again within that time, and so is a call with an event id
        that failed with ``UNAVAILABLE`` (on the next address, if there are several):
        the server stores it once.

        :param payload: bytes, a protobuf ``Any``, or a protobuf message (sent with its
            bare full name as type_url, e.g. ``containerd.events.TaskExit``)
        :param type_url: the payload's type (overrides the one derived from *payload*)
        :param timestamp: event time (datetime, int ns or float s); server time if None
        :param event_id: the event's id (1-128 printable ASCII characters); one the client
            makes when None (unless the client has ``event_ids=False``)
        :raises InvalidArgumentError: for a malformed namespace, topic, labels, payload,
            timestamp or event id
        :raises PublishError: when the server rejects it (the message names the field)
            or cannot be reached in time (``UNAVAILABLE``, ``DEADLINE_EXCEEDED``)
        :raises ClientClosedError: if the client is closed
        """
        request = pb.PublishRequest(namespace=check_namespace(namespace),
                                    topic=check_topic(topic), labels=check_labels(labels))
        request.payload.type_url, request.payload.value = check_payload(payload, type_url)
        ts = check_timestamp(timestamp)
        if ts is not None:
            request.timestamp.FromNanoseconds(ts)
        event_id = check_event_id(event_id)
        if event_id is None and self._event_ids:
            event_id = self._next_event_id()
        if event_id is not None:
            request.event_id = event_id
        async def attempt(stub: pb_grpc.BroadcasterAsyncStub, remaining: float,
                          ready: bool) -> pb.PublishResponse:
            return await stub.Publish(request, timeout=remaining, wait_for_ready=ready,
                                      metadata=self._metadata or None)

        try:
            response = await self._unary("Publish", attempt, again=event_id is not None)
        except grpc.aio.AioRpcError as exc:
            raise PublishError.from_rpc_error(exc) from exc
        return int(response.sequence)

    async def _unary(self, method: str, call: _UnaryCall[T], *, again: bool) -> T:
        """Run a unary call within the client's timeout: refused calls are sent again,
        and so is every call that failed with ``UNAVAILABLE`` when *again* (it is safe
        to repeat), on the next address when there are several.

        With one address the call waits for the server to be reachable (a restart);
        with several it fails fast on an unreachable one and moves on.

        :raises grpc.aio.AioRpcError: the last failure
        """
        endpoints = self._open()
        deadline = anyio.current_time() + self._timeout
        failures = 0
        while True:
            index, channel = endpoints.channel()
            stub = pb_grpc.BroadcasterStub(channel)
            remaining = max(0.0, deadline - anyio.current_time())

            def attempt(left: float, stub: pb_grpc.BroadcasterAsyncStub = stub,
                        ready: bool = not endpoints.several) -> Awaitable[T]:
                return call(stub, left, ready)

            try:
                return await call_unary(method, attempt, seconds=remaining, rng=self._rng,
                                        refusals=self._refusals)
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if not again or not (code is grpc.StatusCode.UNAVAILABLE
                                     or failed_sending(code, exc.details())):
                    raise
                endpoints.failed(index)
                failures += 1
                delay = 0.0 if endpoints.several and failures == 1 else \
                    self._backoff.delay(failures, self._rng)
                if anyio.current_time() + delay >= deadline:
                    raise
            await anyio.sleep(delay)

    async def stats(self, namespaces: Sequence[str] = ()) -> pb.StatsResponse:
        """The server's figures (the Stats call); a refused call is sent again within
        the client's *timeout*.

        :raises StatusError: on failure
        :raises ClientClosedError: if the client is closed
        """
        request = pb.StatsRequest(namespaces=list(namespaces))
        async def attempt(stub: pb_grpc.BroadcasterAsyncStub, remaining: float,
                          ready: bool) -> pb.StatsResponse:
            return await stub.Stats(request, timeout=remaining, wait_for_ready=ready,
                                    metadata=self._metadata or None)

        try:
            return await self._unary("Stats", attempt, again=self._endpoints.several)
        except grpc.aio.AioRpcError as exc:
            raise StatusError.from_rpc_error(exc) from exc

    def publisher(
        self,
        namespace: str,
        *,
        max_batch: int = 500,
        linger: float = 0.002,
        max_in_flight: int = 10_000,
        timeout: float | None = None,
    ) -> Publisher:
        """A batched publisher over one PublishStream call (see :class:`Publisher`).

        :param max_batch: events per stream message at most
        :param linger: seconds to wait for a batch to fill after its first event
        :param max_in_flight: unacknowledged events at most; :meth:`Publisher.submit`
            waits beyond that
        :param timeout: bound of :meth:`Publisher.flush` and of opening the stream
            (the client's timeout if None)
        :raises InvalidArgumentError: for a malformed namespace or bounds
        :raises ClientClosedError: if the client is closed
        """
        return Publisher(
            self._open(), namespace, max_batch=max_batch, linger=linger,
            max_in_flight=max_in_flight, timeout=self._timeout if timeout is None else timeout,
            metadata=self._metadata, rng=self._rng, refusals=self._refusals,
            event_ids=self._event_ids, backoff=self._backoff,
        )

    def subscribe(
        self,
        namespaces: str | Sequence[str] | None = None,
        *,
        filters: Sequence[str] = (),
        policy: Policy | None = None,
        since: int | Mapping[str, int] | None = None,
        epoch: str | Mapping[str, str] | None = None,
        timeout: float | None = None,
        own_stream: bool = False,
    ) -> Subscription:
        """A subscription on the client's shared Subscribe stream, or on its own.

        The subscriptions of one stream share its flow control: a consumer that stops
        reading fills its buffer (``buffer`` messages), the client stops reading the
        stream, and every subscription on it waits while the server's overflow policy
        of each applies. A consumer that may fall behind without holding up the others
        takes ``own_stream=True``: a Subscribe stream of its own (on the same
        connection), closed with the subscription.

        :param namespaces: one, several, or None for every namespace
        :param filters: containerd filters, OR-ed (e.g. ``topic=="/tasks/exit"``)
        :param policy: overflow policy (``broadcaster.Policy``); server default if None
        :param since: resume after this sequence: an int for each of *namespaces*, or a
            mapping per namespace; None starts live
        :param epoch: the epoch *since* belongs to (a different one gets ResyncNotices):
            one for every namespace, or a mapping per namespace (:attr:`Subscription.epochs`
            of a subscription persisted before)
        :param timeout: bound of the wait for the Add to be accepted
        :param own_stream: give the subscription a Subscribe stream of its own
        :raises InvalidArgumentError: for malformed namespaces, since, filters, policy
            or epoch (the server checks the filters' syntax: :class:`SubscribeError`)
        :raises ClientClosedError: if the client is closed or not entered
            (``async with``)
        """
        names = check_namespaces(namespaces)
        cursors = check_since(since, names)
        filters, policy, epoch = check_filters(filters), check_policy(policy), check_epoch(epoch)
        timeout = self._timeout if timeout is None else timeout
        if own_stream:
            stream = self._new_stream()
            self._own_streams.add(stream)

            async def close_stream() -> None:
                self._own_streams.discard(stream)
                await stream.aclose()

            return Subscription(stream, names, filters, policy, cursors, epoch, timeout,
                                on_close=close_stream)
        if self._stream is None:
            self._stream = self._new_stream()
        return Subscription(self._stream, names, filters, policy, cursors, epoch, timeout)

    def _new_stream(self) -> SubscribeStream:
        endpoints = self._open()
        if self._tg is None:
            raise ClientClosedError("client: subscribing needs `async with Client(...)`")
        tg = self._tg
        return SubscribeStream(
            endpoints, lambda run, name: tg.start_soon(run, name=name),
            backoff=self._backoff, idle_timeout=self._idle_timeout, buffer=self._buffer,
            rng=self._rng, refusals=self._refusals, metadata=self._metadata,
        )
