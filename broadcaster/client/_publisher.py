"""A batched publisher over one PublishStream call: many events per stream message."""

from __future__ import annotations

import asyncio
import collections
import math
import random
from collections.abc import Mapping
from datetime import datetime

import anyio
import anyio.abc
import anyio.lowlevel
import grpc
import grpc.aio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..v1 import broadcaster_pb2 as pb
from ._backoff import Backoff
from ._endpoints import Endpoints, new_id_prefix
from ._errors import ClientClosedError, ClientTimeoutError, InvalidArgumentError, PublishError
from ._retry import REFUSED_BACKOFF, Refusals, failed_sending, refused
from ._validate import (
    check_event_id,
    check_labels,
    check_namespace,
    check_payload,
    check_timestamp,
    check_topic,
)
from ._wire import EventEncoder, Payload, encode_batch

__all__ = ["Publisher"]

_METHOD = "/broadcaster.v1.Broadcaster/PublishStream"

#: The first message of every PublishStream call: a batch of no events (batch_id 0).
#: Its answer proves that the server accepted the stream, which it can then no longer
#: refuse; until then nothing has been published and a refused stream is opened again.
_PROBE = encode_batch(0, [])

_Call = grpc.aio.StreamStreamCall[bytes, pb.PublishStreamResponse]
_Futures = list["asyncio.Future[int]"]
_Batch = tuple[int, bytes, _Futures]

#: Failures after which the events of a broken stream are sent again (their ids make it
#: safe): the connection or the node went away, or the server could not store them now.
_RESEND = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})


def _resendable(error: PublishError) -> bool:
    return error.code in _RESEND or failed_sending(error.code, error.message)


class Publisher:
    """Publishes events in batches over one ``PublishStream`` call.

    Events are collected until *max_batch* are pending or *linger* seconds have passed
    since the first one, then sent as one stream message; the server answers each batch
    with the events' sequences. At most *max_in_flight* events are pending or unacked:
    :meth:`submit` waits for room beyond that. Batches are all-or-none: if the server
    rejects one, every event of it fails with the same :class:`PublishError`.

    The stream is opened with an empty batch; until the server answers it, a stream the
    server refused (at its stream limit) is opened again, within *timeout*.

    **Failover.** Every event carries an id (one the publisher makes, unless given or
    *event_ids* is False). When the stream breaks (the connection or the node went away)
    or a batch is refused with ``UNAVAILABLE`` (the node cannot store now: NATS
    unreachable), the publisher opens a new stream (on the client's next address, if it
    has several; with backoff) and sends every unacknowledged event again, in order,
    with its id: the server stores each once and answers with its original sequence. An
    event sent again may be stored after events submitted later that were acknowledged
    meanwhile. If no stream works within *timeout* of the failure, every unacknowledged
    event fails with a :class:`PublishError` (``UNAVAILABLE``; it may or may not have
    been published), and so does every later :meth:`submit`: open a new publisher to go
    on. Without event ids a broken stream fails its unacknowledged events at once.

    Use it as ``async with client.publisher(...) as pub``: the block owns the
    publisher's task group, and leaving it flushes (within *timeout*).
    """

    def __init__(
        self,
        endpoints: Endpoints,
        namespace: str,
        *,
        max_batch: int = 500,
        linger: float = 0.002,
        max_in_flight: int = 10_000,
        timeout: float = 30.0,
        metadata: tuple[tuple[str, str], ...] = (),
        rng: random.Random | None = None,
        refusals: Refusals | None = None,
        event_ids: bool = True,
        backoff: Backoff | None = None,
    ) -> None:
        if max_batch < 1:
            raise InvalidArgumentError("max_batch", "must be at least 1")
        if max_in_flight < max_batch:
            raise InvalidArgumentError("max_in_flight", "must be at least max_batch")
        if linger < 0:
            raise InvalidArgumentError("linger", "must not be negative")
        self.namespace = check_namespace(namespace)
        self._endpoints = endpoints
        self._max_batch = max_batch
        self._linger = linger
        self._max_in_flight = max_in_flight
        self._timeout = timeout
        self._metadata = metadata
        self._rng = rng or random.Random()
        self._refusals = refusals or Refusals()
        self._event_ids = event_ids
        self._id_prefix = new_id_prefix()
        self._id_count = 0
        self._backoff = backoff or Backoff()
        self._encoder = EventEncoder()
        self._pending: list[bytes] = []
        self._pending_futures: _Futures = []
        self._unacked: collections.deque[_Batch] = collections.deque()
        self._in_flight = 0
        self._batch_id = 0
        self._room: anyio.Event | None = None
        self._idle: anyio.Event | None = None
        self._error: PublishError | None = None
        self._closed = False
        self._broken_since: float | None = None  # when the current outage began
        #: streams opened again after a failure (each sent the unacknowledged events again)
        self.reconnects = 0
        #: events sent again on a new stream
        self.resent = 0
        # cut batches, and None when a batch starts filling (its linger begins)
        self._batches: MemoryObjectSendStream[_Batch | None] | None = None
        self._to_send: MemoryObjectReceiveStream[_Batch | None] | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._scope: anyio.CancelScope | None = None
        self._finished: anyio.Event | None = None

    async def __aenter__(self) -> Publisher:
        if self._tg is not None or self._closed:
            raise ClientClosedError("publisher: already used; open a new one")
        self._batches, self._to_send = anyio.create_memory_object_stream[_Batch | None](
            math.inf
        )
        self._scope, self._finished = anyio.CancelScope(), anyio.Event()
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        tg.start_soon(self._run, name="broadcaster-publisher")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            if exc_info[0] is None:
                await self.flush()
        finally:
            await self.aclose()
            tg, self._tg = self._tg, None
            if tg is not None:
                # The block's own exception is not the task group's: it propagates as is.
                await tg.__aexit__(None, None, None)

    async def aclose(self) -> None:
        """Stop at once: unsent and unacknowledged events fail with a PublishError."""
        if self._closed:
            return
        self._closed = True
        self._fail(PublishError(grpc.StatusCode.CANCELLED, "publisher: closed"))
        if self._scope is not None and self._finished is not None:
            self._scope.cancel()
            with anyio.CancelScope(shield=True):  # bounded: the task just ends
                await self._finished.wait()
        for stream in (self._batches, self._to_send):
            if stream is not None:
                stream.close()

    async def submit(
        self,
        topic: str,
        payload: Payload = b"",
        *,
        type_url: str | None = None,
        labels: Mapping[str, str] | None = None,
        timestamp: datetime | int | float | None = None,
        namespace: str | None = None,
        event_id: str | None = None,
    ) -> asyncio.Future[int]:
        """Queue one event; returns a future of its sequence number.

        Waits only while *max_in_flight* events are unacknowledged.

        :param topic: e.g. ``/tasks/exit``
        :param payload: bytes, a protobuf ``Any``, or a protobuf message (sent with
            its bare full name as type_url, as containerd does)
        :param type_url: the payload's type (overrides the one derived from *payload*)
        :param labels: string labels
        :param timestamp: event time (datetime, ns int or float seconds); server time if None
        :param namespace: another namespace than the publisher's, for this event
        :param event_id: the event's id; one the publisher makes when None (unless the
            client has ``event_ids=False``)
        :raises InvalidArgumentError: for a malformed topic, namespace, labels, payload,
            timestamp or event id (checked here, so one bad event never spoils a batch)
        :raises PublishError: when the publisher is broken or closed
        :raises ClientClosedError: before the publisher is entered
        """
        ns = self.namespace if namespace is None else check_namespace(namespace)
        check_topic(topic)
        labels = check_labels(labels) if labels else None
        url, value = check_payload(payload, type_url)
        event_id = check_event_id(event_id)
        if event_id is None and self._event_ids:
            self._id_count += 1
            event_id = f"{self._id_prefix}-{self._id_count}"
        encoded = self._encoder.encode(ns, topic, url, value, labels, check_timestamp(timestamp),
                                       event_id)
        while self._in_flight >= self._max_in_flight and self._error is None:
            self._room = self._room or anyio.Event()
            await self._room.wait()
        if self._error is not None:
            raise self._error
        if self._batches is None:
            raise ClientClosedError("publisher: not entered (use `async with`)")
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append(encoded)
        self._pending_futures.append(future)
        self._in_flight += 1
        if len(self._pending) >= self._max_batch:
            self._batches.send_nowait(self._cut())
            await anyio.lowlevel.checkpoint()
        elif len(self._pending) == 1:
            self._batches.send_nowait(None)
        return future

    async def publish(
        self,
        topic: str,
        payload: Payload = b"",
        *,
        type_url: str | None = None,
        labels: Mapping[str, str] | None = None,
        timestamp: datetime | int | float | None = None,
        namespace: str | None = None,
        event_id: str | None = None,
    ) -> int:
        """Publish one event and wait for its sequence number (see :meth:`submit`).

        :raises PublishError: if its batch was rejected or the stream broke for good
        """
        future = await self.submit(
            topic, payload, type_url=type_url, labels=labels, timestamp=timestamp,
            namespace=namespace, event_id=event_id,
        )
        return await future

    async def flush(self) -> None:
        """Send what is pending and wait until every event is acknowledged or failed.

        :raises ClientTimeoutError: after the publisher's *timeout*
        """
        if self._pending and self._batches is not None:
            self._batches.send_nowait(self._cut())
        with anyio.move_on_after(self._timeout):
            while self._in_flight:
                self._idle = self._idle or anyio.Event()
                await self._idle.wait()
        if self._in_flight:
            raise ClientTimeoutError(
                f"publisher: {self._in_flight} events not acknowledged within "
                f"{self._timeout:g}s"
            )

    def _cut(self) -> _Batch:
        self._batch_id += 1
        batch = (self._batch_id, encode_batch(self._batch_id, self._pending),
                 self._pending_futures)
        self._pending, self._pending_futures = [], []
        return batch

    # -- the stream ---------------------------------------------------------------------

    async def _run(self) -> None:
        """Keep a stream open: open one, serve it until it breaks, then (events carrying
        ids) open another and send the unacknowledged events again, for at most
        *timeout* after the failure; else fail them."""
        assert self._scope is not None and self._finished is not None
        failures = 0
        try:
            with self._scope:
                while True:
                    index, channel = self._endpoints.channel()
                    method: grpc.aio.StreamStreamMultiCallable[bytes, pb.PublishStreamResponse]
                    method = channel.stream_stream(
                        _METHOD, request_serializer=bytes,
                        response_deserializer=pb.PublishStreamResponse.FromString,
                    )
                    try:
                        call = await self._open(method)
                    except PublishError as exc:
                        error = exc
                    else:
                        if self._broken_since is not None:
                            self.reconnects += 1
                        error = await self._serve(call)
                    if self._broken_since is None:
                        failures = 0
                    if not (self._event_ids and _resendable(error)):
                        self._fail(error)
                        return
                    now = anyio.current_time()
                    if self._broken_since is None:
                        self._broken_since = now
                    elif now - self._broken_since >= self._timeout:
                        self._fail(PublishError(error.code, f"{error.message} (no stream "
                                                f"worked for {self._timeout:g}s)"))
                        return
                    self._endpoints.failed(index)
                    failures += 1
                    delay = 0.0 if self._endpoints.several and failures == 1 else \
                        self._backoff.delay(failures, self._rng)
                    await anyio.sleep(min(delay, max(
                        0.0, self._broken_since + self._timeout - now)))
        finally:
            self._finished.set()

    async def _serve(self, call: _Call) -> PublishError:
        """Send (the unacknowledged batches again first) and receive on *call* until it
        fails; return why."""
        resend = list(self._unacked)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._send_all, call, resend)
                error = await self._receive_all(call)
                tg.cancel_scope.cancel()
        finally:
            call.cancel()
        return error

    async def _open(self, method: grpc.aio.StreamStreamMultiCallable[
            bytes, pb.PublishStreamResponse]) -> _Call:
        """Open the stream: send the empty first batch until the server answers it,
        opening it again (with backoff, within *timeout*) while the server refuses it.

        :raises PublishError: for any other failure, or when *timeout* runs out
        """
        deadline = anyio.current_time() + self._timeout
        failures = 0
        while True:
            call = method(metadata=self._metadata or None)
            try:
                error = await self._probe(call)
            except BaseException:
                call.cancel()
                raise
            if error is None:
                return call
            call.cancel()
            failures += 1
            delay = REFUSED_BACKOFF.delay(failures, self._rng)
            # Only the empty batch was sent: whatever broke, nothing was published.
            retry = refused(error.code, error.message) or failed_sending(
                error.code, error.message
            )
            if not retry or anyio.current_time() + delay >= deadline:
                raise error
            self._refusals.retried["PublishStream"] += 1
            await anyio.sleep(delay)

    @staticmethod
    async def _probe(call: _Call) -> PublishError | None:
        """Send the empty batch and wait for its answer; the call's error if it fails."""
        try:
            await call.write(_PROBE)
            response = await call.read()
        except grpc.aio.AioRpcError as exc:
            error = PublishError.from_rpc_error(exc)
            error.__cause__ = exc
            return error
        except (grpc.aio.UsageError, asyncio.InvalidStateError):
            return PublishError(await call.code(), await call.details())
        if not isinstance(response, pb.PublishStreamResponse):  # EOF
            return PublishError(grpc.StatusCode.UNAVAILABLE, "publisher: stream ended")
        return None

    async def _send_all(self, call: _Call, resend: list[_Batch]) -> None:
        """Write *resend* (unacknowledged batches of a broken stream), then every batch
        cut from now on. A failed write ends quietly: the batch is among the
        unacknowledged, and the reader reports why the call failed."""
        assert self._to_send is not None
        batches = self._to_send
        try:
            for _, data, futures in resend:
                self.resent += len(futures)
                await call.write(data)
            while True:
                batch = await batches.receive()
                if batch is None:  # a batch started filling
                    batch = await self._wait_for_cut(batches)
                    if batch is None:
                        continue
                self._unacked.append(batch)
                await call.write(batch[1])
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
            pass
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            pass  # closed

    async def _wait_for_cut(
        self, batches: MemoryObjectReceiveStream[_Batch | None]
    ) -> _Batch | None:
        """Wait up to *linger* for the filling batch to be cut; cut it if it was not."""
        if self._linger > 0:
            with anyio.move_on_after(self._linger):
                batch = await batches.receive()
                if batch is not None:
                    return batch
        return self._cut() if self._pending else None

    async def _receive_all(self, call: _Call) -> PublishError:
        """Read acknowledgements until the call fails (or a batch is refused with
        ``UNAVAILABLE`` while events carry ids); return why."""
        try:
            while True:
                response = await call.read()
                if not isinstance(response, pb.PublishStreamResponse):  # EOF
                    return PublishError(grpc.StatusCode.UNAVAILABLE, "publisher: stream ended")
                error = self._acknowledge(response)
                if error is not None:
                    return error
        except grpc.aio.AioRpcError as exc:
            error = PublishError.from_rpc_error(exc)
            error.__cause__ = exc
            return error

    def _acknowledge(self, response: pb.PublishStreamResponse) -> PublishError | None:
        if not self._unacked or self._unacked[0][0] != response.batch_id:
            return PublishError(
                grpc.StatusCode.INTERNAL,
                f"batch_id: unexpected {response.batch_id} in PublishStreamResponse",
            )
        if response.HasField("error"):
            error = PublishError.from_code_value(response.error.code, response.error.message)
            if self._event_ids and _resendable(error):
                return error  # the node cannot store now: send it again elsewhere or later
        _, _, futures = self._unacked.popleft()
        self._broken_since = None  # the stream works
        if response.HasField("error"):
            self._reject(futures, response.error)
        elif len(response.sequences) != len(futures):
            self._reject(futures, pb.Error(
                code=grpc.StatusCode.INTERNAL.value[0],
                message=f"sequences: {len(response.sequences)} for {len(futures)} events",
            ))
        else:
            for future, seq in zip(futures, response.sequences, strict=True):
                if not future.done():
                    future.set_result(seq)
        self._released(len(futures))
        return None

    @staticmethod
    def _reject(futures: _Futures, error: pb.Error) -> None:
        for index, future in enumerate(futures):
            exc = PublishError.from_code_value(error.code, error.message)
            exc.index = index
            if not future.done():
                future.set_exception(exc)

    def _released(self, count: int) -> None:
        self._in_flight -= count
        if self._room is not None and self._in_flight < self._max_in_flight:
            self._room.set()
            self._room = None
        if self._idle is not None and self._in_flight == 0:
            self._idle.set()
            self._idle = None

    def _fail(self, error: PublishError, cause: BaseException | None = None) -> None:
        if cause is not None:
            error.__cause__ = cause
        if self._error is None:
            self._error = error
        groups = [f for _, _, f in self._unacked]
        groups.append(self._pending_futures)
        self._unacked.clear()
        self._pending, self._pending_futures = [], []
        # cut batches not yet sent: their futures fail too
        while self._to_send is not None:
            try:
                batch = self._to_send.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
            if batch is not None:
                groups.append(batch[2])
        for futures in groups:
            for future in futures:
                if not future.done():
                    future.set_exception(error)
                    future.exception()  # the caller may never look: do not warn
        self._released(self._in_flight)
