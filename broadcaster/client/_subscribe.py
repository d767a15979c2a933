"""Subscriptions multiplexed on one Subscribe stream, with heartbeat acks and resume.

One :class:`SubscribeStream` per client owns a task that keeps a ``Subscribe`` call
open. Each :class:`Subscription` is one ``Add`` on it. The task answers heartbeats,
routes deliveries and notices to the subscriptions' mailboxes, and when the call
breaks it reconnects with exponential backoff and jitter and re-sends every ``Add``
with the last sequence it saw per namespace (``since``) and the epoch those belong to.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio

from .._core._policy import Policy
from .._core._validation import validate_namespace
from ..v1 import broadcaster_pb2 as pb
from ._errors import StatusError, SubscribeError
from ._mailbox import Mailbox
from ._types import Event, Item
from ._wire import decode_drop, decode_ended, decode_event, decode_resync, policy_to_proto

__all__ = ["Backoff", "SubscribeStream", "Subscription"]

_log = logging.getLogger("broadcaster.client")

_METHOD = "/broadcaster.v1.Broadcaster/Subscribe"

#: Statuses that no reconnect can fix: fail the subscriptions instead.
_FATAL = frozenset({
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
})

#: SubscriptionEnded reasons that mean "this server is going away", not "you are out".
_TRANSIENT_END = frozenset({"shutdown", "hub_closed"})


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect delays: *initial*, times *multiplier* per failed attempt, capped at
    *maximum*, each scaled by a random factor in ``[1 - jitter, 1 + jitter]``.

    :ivar max_attempts: consecutive failed connects before giving up (None: never)
    """

    initial: float = 0.1
    maximum: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2
    max_attempts: int | None = None

    def delay(self, attempt: int, rng: random.Random) -> float:
        base = min(self.maximum, self.initial * self.multiplier ** max(0, attempt - 1))
        return base * (1.0 + self.jitter * (2.0 * rng.random() - 1.0))


@dataclass(slots=True, eq=False)
class _State:
    sub_id: str
    namespaces: tuple[str, ...]
    filters: tuple[str, ...]
    policy: pb.OverflowPolicy | None
    cursors: dict[str, int]
    epoch: str | None
    mailbox: Mailbox[list[Item] | BaseException]
    added: asyncio.Future[None]
    removed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def add_request(self) -> pb.SubscribeRequest:
        add = pb.SubscribeRequest.Add(
            subscription_id=self.sub_id, namespaces=self.namespaces, filters=self.filters,
            since=self.cursors, epoch=self.epoch or "",
            # resuming: namespaces we have no cursor for were created while we were away
            replay_unlisted=self.epoch is not None,
        )
        if self.policy is not None:
            add.policy.CopyFrom(self.policy)
        return pb.SubscribeRequest(add=add)


class SubscribeStream:
    """The shared Subscribe call of one client (created by :class:`Client`)."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        backoff: Backoff,
        idle_timeout: float | None,
        buffer: int,
        rng: random.Random,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self._method = channel.stream_stream(
            _METHOD, request_serializer=pb.SubscribeRequest.SerializeToString,
            response_deserializer=pb.SubscribeResponse.FromString,
        )
        self._backoff = backoff
        self._idle_timeout = idle_timeout
        self._buffer = buffer
        self._rng = rng
        self._metadata = metadata
        self._subs: dict[str, _State] = {}
        self._ids = itertools.count(1)
        self._wanted = asyncio.Event()
        self._writes: asyncio.Queue[pb.SubscribeRequest] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        #: heartbeats answered and connections made, for tests and monitoring
        self.heartbeats_acked = 0
        self.connects = 0
        self.epoch: str | None = None

    # -- subscriptions ---------------------------------------------------------------

    def open(
        self,
        namespaces: Sequence[str],
        filters: Sequence[str],
        policy: Policy | None,
        since: Mapping[str, int],
        epoch: str | None,
    ) -> _State:
        if self._closed:
            raise SubscribeError(grpc.StatusCode.CANCELLED, "client: closed")
        state = _State(
            f"s{next(self._ids)}", tuple(namespaces), tuple(filters),
            None if policy is None else policy_to_proto(policy), dict(since), epoch,
            Mailbox(self._buffer), asyncio.get_running_loop().create_future(),
        )
        self._subs[state.sub_id] = state
        if self._writes is not None:
            self._writes.put_nowait(state.add_request())
        self._wanted.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="broadcaster-subscribe")
        return state

    def close_subscription(self, state: _State) -> None:
        state.removed = True
        state.mailbox.close()
        if self._subs.pop(state.sub_id, None) is not None and self._writes is not None:
            remove = pb.SubscribeRequest.Remove(subscription_id=state.sub_id)
            self._writes.put_nowait(pb.SubscribeRequest(remove=remove))

    async def aclose(self) -> None:
        self._closed = True
        for state in list(self._subs.values()):
            self._end(state, None)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                if not self._task.cancelled():
                    raise

    # -- the connection loop -----------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while not self._closed:
            if not self._subs:
                self._wanted.clear()
                await self._wanted.wait()
                continue
            try:
                healthy = await self._connect_once()
                error: StatusError = SubscribeError(
                    grpc.StatusCode.UNAVAILABLE, "subscribe: stream ended by the server"
                )
            except grpc.aio.AioRpcError as exc:
                healthy = False
                error = SubscribeError.from_rpc_error(exc)  # type: ignore[arg-type]
            except TimeoutError:
                healthy = True
                error = SubscribeError(grpc.StatusCode.UNAVAILABLE, "subscribe: idle timeout")
            if error.code in _FATAL:
                self._fail_all(error)
                continue
            failures = 1 if healthy else failures + 1
            limit = self._backoff.max_attempts
            if limit is not None and failures > limit:
                self._fail_all(error)
                failures = 0
                continue
            delay = self._backoff.delay(failures, self._rng)
            _log.info("subscribe stream lost (%s); reconnecting in %.3fs", error, delay)
            await asyncio.sleep(delay)

    async def _connect_once(self) -> bool:
        """Run one Subscribe call until it ends; True if it ever delivered anything."""
        call = self._method(metadata=self._metadata or None)
        writes: asyncio.Queue[pb.SubscribeRequest] = asyncio.Queue()
        for state in self._subs.values():
            writes.put_nowait(state.add_request())
        self._writes = writes
        writer = asyncio.create_task(self._writer(call, writes), name="broadcaster-sub-write")
        healthy = False
        try:
            while True:
                if self._idle_timeout is None:
                    msg = await call.read()
                else:
                    async with asyncio.timeout(self._idle_timeout):
                        msg = await call.read()
                if msg is grpc.aio.EOF:
                    return healthy
                if not healthy:
                    healthy = True
                    self.connects += 1
                await self._dispatch(msg, writes)
        finally:
            self._writes = None
            writer.cancel()
            call.cancel()
            await asyncio.wait([writer])
            if not writer.cancelled():
                writer.exception()  # a broken call: the read side reports it

    @staticmethod
    async def _writer(call: Any, writes: asyncio.Queue[pb.SubscribeRequest]) -> None:
        while True:
            await call.write(await writes.get())

    # -- routing ---------------------------------------------------------------------

    async def _dispatch(
        self, msg: pb.SubscribeResponse, writes: asyncio.Queue[pb.SubscribeRequest]
    ) -> None:
        kind = msg.WhichOneof("kind")
        if kind == "event_batch":
            await self._deliver(msg.event_batch)
        elif kind == "heartbeat":
            hb = msg.heartbeat
            writes.put_nowait(pb.SubscribeRequest(ack=pb.SubscribeRequest.Ack(
                heartbeat_id=hb.heartbeat_id)))
            self.heartbeats_acked += 1
            self.epoch = hb.epoch
            for state in self._subs.values():
                if state.epoch is None or not state.cursors:
                    state.epoch = hb.epoch
        elif kind == "drop_notice":
            notice = msg.drop_notice
            state = self._subs.get(notice.subscription_id)
            if state is not None:
                ns = notice.namespace
                state.cursors[ns] = max(state.cursors.get(ns, 0), notice.last_sequence)
                await state.mailbox.put([decode_drop(notice)])
        elif kind == "resync_notice":
            notice = msg.resync_notice
            state = self._subs.get(notice.subscription_id)
            if state is not None:
                state.epoch = notice.epoch
                self.epoch = notice.epoch
                state.cursors[notice.namespace] = max(0, notice.oldest_available - 1)
                await state.mailbox.put([decode_resync(notice)])
        elif kind == "subscription_ended":
            ended = msg.subscription_ended
            state = self._subs.get(ended.subscription_id)
            if state is not None and ended.reason not in _TRANSIENT_END:
                self._end(state, decode_ended(ended))
        elif kind == "add_result":
            self._added(msg.add_result)

    async def _deliver(self, batch: pb.EventBatch) -> None:
        subs = self._subs
        out: dict[str, list[Item]] = {}
        for delivery in batch.deliveries:
            event: Event | None = None
            for sub_id in delivery.subscription_ids:
                state = subs.get(sub_id)
                if state is None:
                    continue
                if event is None:
                    event = decode_event(delivery.event)
                state.cursors[event.namespace] = event.sequence
                items = out.get(sub_id)
                if items is None:
                    out[sub_id] = [event]
                else:
                    items.append(event)
        for sub_id, items in out.items():
            state = subs.get(sub_id)
            if state is not None:
                await state.mailbox.put(items)

    def _added(self, result: pb.AddResult) -> None:
        state = self._subs.get(result.subscription_id)
        if state is None:
            return
        if result.ok:
            # Where delivery starts, for namespaces we have seen nothing of yet: a resume
            # before the first event of a namespace must not skip what came meanwhile.
            for ns, seq in result.start_sequences.items():
                state.cursors.setdefault(ns, seq)
            if state.epoch is None and result.epoch:
                state.epoch = result.epoch
            if not state.added.done():
                state.added.set_result(None)
            return
        error = SubscribeError.from_code_value(result.error.code, result.error.message)
        self._end(state, error)

    def _end(self, state: _State, last: Item | BaseException | None) -> None:
        """End *state* for good, after handing *last* to its consumer."""
        self._subs.pop(state.sub_id, None)
        if not state.added.done():
            if isinstance(last, BaseException):
                state.added.set_exception(last)
            else:
                state.added.set_result(None)
        if last is not None:
            state.mailbox.put_nowait(last if isinstance(last, BaseException) else [last])
        state.mailbox.close()

    def _fail_all(self, error: StatusError) -> None:
        for state in list(self._subs.values()):
            self._end(state, error)


class Subscription:
    """One subscription on a Subscribe stream: the client's shared one, or its own.

    Use ``async with client.subscribe(...) as sub: async for item in sub: ...``. Items
    are :class:`Event`, :class:`DropNotice`, :class:`ResyncNotice` and, last,
    :class:`Ended`; :meth:`batches` yields them as lists instead (cheaper per event).
    Iteration ends after :class:`Ended` or when the subscription or client is closed.

    :attr:`cursors` (last sequence seen per namespace) and :attr:`epoch` are what a
    restarted consumer passes back as ``since`` and ``epoch`` to resume.
    """

    def __init__(
        self,
        stream: SubscribeStream,
        namespaces: Sequence[str],
        filters: Sequence[str],
        policy: Policy | None,
        since: Mapping[str, int],
        epoch: str | None,
        timeout: float,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._stream = stream
        self._on_close = on_close  # closes a stream of its own
        self._args = (namespaces, filters, policy, since, epoch)
        self._timeout = timeout
        self._state: _State | None = None
        self._current: list[Item] = []
        self._index = 0

    @property
    def id(self) -> str:
        """The subscription id on the stream (``""`` before it starts)."""
        return "" if self._state is None else self._state.sub_id

    @property
    def cursors(self) -> dict[str, int]:
        """Last sequence received per namespace (a copy)."""
        if self._state is None:
            return dict(self._args[3])
        return dict(self._state.cursors)

    @property
    def epoch(self) -> str | None:
        """Epoch the :attr:`cursors` belong to, once known."""
        return self._args[4] if self._state is None else self._state.epoch

    async def start(self) -> None:
        """Send the Add and wait (at most the subscribe *timeout*) until it is accepted.

        :raises SubscribeError: naming the field when the server rejects the Add
        :raises TimeoutError: if the server did not answer in time
        """
        if self._state is not None:
            return
        self._state = self._stream.open(*self._args)
        try:
            async with asyncio.timeout(self._timeout):
                await asyncio.shield(self._state.added)
        except BaseException:
            self._stream.close_subscription(self._state)
            await self._close_own_stream()
            raise

    async def aclose(self) -> None:
        """Remove the subscription; iteration ends (and its own stream, if it has one,
        is closed)."""
        if self._state is not None:
            self._stream.close_subscription(self._state)
        await self._close_own_stream()

    async def _close_own_stream(self) -> None:
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            await on_close()

    async def __aenter__(self) -> Subscription:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Item:
        if self._index >= len(self._current):
            batch = await self._next_batch()
            if batch is None:
                raise StopAsyncIteration
            self._current, self._index = batch, 0
        item = self._current[self._index]
        self._index += 1
        return item

    async def batches(self) -> AsyncIterator[list[Item]]:
        """Yield items in lists as they arrive (one list per stream message)."""
        if self._index < len(self._current):
            rest = self._current[self._index:]
            self._current, self._index = [], 0
            yield rest
        while (batch := await self._next_batch()) is not None:
            yield batch

    async def _next_batch(self) -> list[Item] | None:
        if self._state is None:
            await self.start()
        assert self._state is not None
        entry = await self._state.mailbox.get()
        if isinstance(entry, BaseException):
            self._stream.close_subscription(self._state)
            raise entry
        return entry


def check_namespaces(namespaces: str | Sequence[str] | None) -> tuple[str, ...]:
    """Validated namespaces; empty for "all namespaces"."""
    if namespaces is None:
        return ()
    if isinstance(namespaces, str):
        return (validate_namespace(namespaces),)
    return tuple(validate_namespace(n, f"namespaces[{i}]") for i, n in enumerate(namespaces))
