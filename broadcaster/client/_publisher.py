"""A batched publisher over one PublishStream call: many events per stream message."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import anyio
import grpc
import grpc.aio

from .._core._validation import validate_labels, validate_namespace, validate_topic
from ..v1 import broadcaster_pb2 as pb
from ._errors import PublishError
from ._wire import EventEncoder, Payload, encode_batch, payload_of, timestamp_ns_of

__all__ = ["Publisher"]

_METHOD = "/broadcaster.v1.Broadcaster/PublishStream"


class Publisher:
    """Publishes events in batches over one ``PublishStream`` call.

    Events are collected until *max_batch* are pending or *linger* seconds have passed
    since the first one, then sent as one stream message; the server answers each batch
    with the events' sequences. At most *max_in_flight* events are pending or unacked:
    :meth:`submit` waits for room beyond that. Batches are all-or-none: if the server
    rejects one, every event of it fails with the same :class:`PublishError`.

    If the stream breaks, every unacknowledged event fails with a :class:`PublishError`
    (``UNAVAILABLE``; it may or may not have been published) and so does every later
    :meth:`submit`: open a new publisher to go on. Use it as ``async with
    client.publisher(...) as pub``; leaving the block flushes (within *timeout*).
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        namespace: str,
        *,
        max_batch: int = 500,
        linger: float = 0.002,
        max_in_flight: int = 10_000,
        timeout: float = 30.0,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch: must be at least 1")
        if max_in_flight < max_batch:
            raise ValueError("max_in_flight: must be at least max_batch")
        if linger < 0:
            raise ValueError("linger: must not be negative")
        self.namespace = validate_namespace(namespace)
        self._method = channel.stream_stream(
            _METHOD, request_serializer=bytes,
            response_deserializer=pb.PublishStreamResponse.FromString,
        )
        self._max_batch = max_batch
        self._linger = linger
        self._max_in_flight = max_in_flight
        self._timeout = timeout
        self._metadata = metadata
        self._encoder = EventEncoder()
        self._pending: list[bytes] = []
        self._pending_futures: list[asyncio.Future[int]] = []
        self._ready: collections.deque[tuple[int, bytes, list[asyncio.Future[int]]]] = (
            collections.deque()
        )
        self._unacked: collections.deque[tuple[int, list[asyncio.Future[int]]]] = (
            collections.deque()
        )
        self._in_flight = 0
        self._batch_id = 0
        self._room = asyncio.Event()
        self._room.set()
        self._wake = asyncio.Event()
        self._batch_cut = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._error: PublishError | None = None
        self._closed = False
        self._call: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Publisher:
        self._call = self._method(metadata=self._metadata or None)
        self._tasks = [
            asyncio.create_task(self._sender(), name="broadcaster-publisher-send"),
            asyncio.create_task(self._receiver(), name="broadcaster-publisher-recv"),
        ]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            if exc_info[0] is None:
                await self.flush()
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Stop at once: unsent and unacknowledged events fail with a PublishError."""
        if self._closed:
            return
        self._closed = True
        self._fail(PublishError(grpc.StatusCode.CANCELLED, "publisher: closed"))
        if self._call is not None:
            self._call.cancel()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        for task in self._tasks:
            if not task.cancelled():
                task.exception()  # errors already went to the futures

    async def submit(
        self,
        topic: str,
        payload: Payload = b"",
        *,
        type_url: str | None = None,
        labels: Mapping[str, str] | None = None,
        timestamp: datetime | int | float | None = None,
        namespace: str | None = None,
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
        :raises broadcaster.InvalidArgument: for a malformed topic, namespace or labels
            (checked here, so one bad event never spoils a batch)
        :raises PublishError: when the publisher is broken or closed
        """
        ns = self.namespace if namespace is None else validate_namespace(namespace)
        validate_topic(topic)
        if labels:
            validate_labels(labels)
        url, value = payload_of(payload, type_url)
        encoded = self._encoder.encode(ns, topic, url, value, labels, timestamp_ns_of(timestamp))
        while self._in_flight >= self._max_in_flight and self._error is None:
            self._room.clear()
            await self._room.wait()
        if self._error is not None:
            raise self._error
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append(encoded)
        self._pending_futures.append(future)
        self._in_flight += 1
        self._idle.clear()
        if len(self._pending) >= self._max_batch:
            self._cut()
            await asyncio.sleep(0)
        elif len(self._pending) == 1:
            self._wake.set()
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
    ) -> int:
        """Publish one event and wait for its sequence number (see :meth:`submit`).

        :raises PublishError: if its batch was rejected or the stream broke
        """
        future = await self.submit(
            topic, payload, type_url=type_url, labels=labels, timestamp=timestamp,
            namespace=namespace,
        )
        return await future

    async def flush(self) -> None:
        """Send what is pending and wait until every event is acknowledged or failed.

        :raises TimeoutError: after the publisher's *timeout*
        """
        if self._pending:
            self._cut()
        with anyio.fail_after(self._timeout):
            await self._idle.wait()

    def _cut(self) -> None:
        self._batch_id += 1
        self._ready.append(
            (self._batch_id, encode_batch(self._batch_id, self._pending), self._pending_futures)
        )
        self._pending, self._pending_futures = [], []
        self._batch_cut.set()
        self._wake.set()

    async def _sender(self) -> None:
        try:
            while True:
                if not self._ready:
                    self._wake.clear()
                    if not self._pending:
                        await self._wake.wait()
                    if not self._ready and self._linger > 0:
                        self._batch_cut.clear()
                        try:
                            async with asyncio.timeout(self._linger):
                                await self._batch_cut.wait()
                        except TimeoutError:
                            pass
                    if not self._ready:
                        if not self._pending:
                            continue
                        self._cut()
                batch_id, data, futures = self._ready.popleft()
                self._unacked.append((batch_id, futures))
                await self._call.write(data)
        except grpc.aio.AioRpcError as exc:
            self._fail(PublishError.from_rpc_error(exc))  # type: ignore[arg-type]
        except grpc.aio.UsageError:
            self._fail(PublishError(grpc.StatusCode.UNAVAILABLE, "publisher: stream closed"))

    async def _receiver(self) -> None:
        try:
            while True:
                resp = await self._call.read()
                if resp is grpc.aio.EOF:
                    raise PublishError(grpc.StatusCode.UNAVAILABLE, "publisher: stream ended")
                if not self._unacked or self._unacked[0][0] != resp.batch_id:
                    raise PublishError(
                        grpc.StatusCode.INTERNAL,
                        f"batch_id: unexpected {resp.batch_id} in PublishStreamResponse",
                    )
                _, futures = self._unacked.popleft()
                if resp.HasField("error"):
                    self._reject(futures, resp.error)
                elif len(resp.sequences) != len(futures):
                    self._reject(futures, pb.Error(
                        code=grpc.StatusCode.INTERNAL.value[0],
                        message=f"sequences: {len(resp.sequences)} for {len(futures)} events",
                    ))
                else:
                    for future, seq in zip(futures, resp.sequences, strict=True):
                        if not future.done():
                            future.set_result(seq)
                self._released(len(futures))
        except grpc.aio.AioRpcError as exc:
            self._fail(PublishError.from_rpc_error(exc))  # type: ignore[arg-type]
        except PublishError as exc:
            self._fail(exc)

    def _reject(self, futures: list[asyncio.Future[int]], error: pb.Error) -> None:
        for index, future in enumerate(futures):
            exc = PublishError.from_code_value(error.code, error.message)
            assert isinstance(exc, PublishError)
            exc.index = index
            if not future.done():
                future.set_exception(exc)

    def _released(self, count: int) -> None:
        self._in_flight -= count
        if self._in_flight < self._max_in_flight:
            self._room.set()
        if self._in_flight == 0:
            self._idle.set()

    def _fail(self, error: PublishError) -> None:
        if self._error is None:
            self._error = error
        groups = [f for _, f in self._unacked] + [f for _, _, f in self._ready]
        groups.append(self._pending_futures)
        self._unacked.clear()
        self._ready.clear()
        self._pending, self._pending_futures = [], []
        for futures in groups:
            for future in futures:
                if not future.done():
                    future.set_exception(error)
                    future.exception()  # the caller may never look: do not warn
        self._in_flight = 0
        self._room.set()
        self._idle.set()
