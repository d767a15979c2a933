"""Subscriptions multiplexed on one Subscribe stream, with heartbeat acks and resume.

A :class:`SubscribeStream` keeps one ``Subscribe`` call open from a task in its client's
task group. Each subscription on it is one ``Add``. The task answers heartbeats, routes
deliveries and notices to each subscription's memory object stream, and when the call
breaks it reconnects with exponential backoff and jitter (to the client's next address,
if it has several) and re-sends every ``Add`` with the last sequence it saw per namespace
(``since``) and the epoch each belongs to (``epochs``). A call the server refused (at its
stream limit, before anything was processed) is retried sooner, with the short
:data:`~._retry.REFUSED_BACKOFF`, and is not a failed attempt. An ``Add`` the server
could not serve now (``UNAVAILABLE``: the node cannot open the namespace's log) makes
the stream reconnect the same way, so the subscription waits instead of failing.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import random
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import grpc
import grpc.aio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._core._policy import Policy
from .._proto import policy_to_proto
from ..v1 import broadcaster_pb2 as pb
from ._backoff import Backoff
from ._endpoints import Endpoints
from ._errors import ClientClosedError, ClientError, InvalidArgumentError, SubscribeError
from ._retry import REFUSED_BACKOFF, Refusals, failed_sending, refused
from ._types import Ended, Event, Item
from ._wire import (
    decode_availability,
    decode_drop,
    decode_ended,
    decode_event,
    decode_resync,
)

__all__ = ["SubscribeStream", "SubscriptionState"]

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

_Call = grpc.aio.StreamStreamCall[pb.SubscribeRequest, pb.SubscribeResponse]
Spawn = Callable[[Callable[[], Coroutine[Any, Any, None]], str], object]


class _Unavailable(Exception):
    """An Add the node could not serve now: the stream reconnects (with backoff, to the
    next address if there are several) and adds its subscriptions again."""

    def __init__(self, error: SubscribeError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(slots=True, eq=False)
class SubscriptionState:
    """One subscription as its stream sees it; the consumer reads ``receive``.

    ``send``/``receive`` carry lists of items, ``buffer`` of them at most before the
    stream waits (and so the server's overflow policy applies). When the stream ends the
    subscription it closes ``send`` with ``final`` set: the last item (``Ended``) or the
    error to raise once the consumer has read what is buffered."""

    sub_id: str
    namespaces: tuple[str, ...]
    filters: tuple[str, ...]
    policy: pb.OverflowPolicy | None
    cursors: dict[str, int]
    #: the epoch of the cursors the subscription was given without one of their own
    epoch_default: str | None
    send: MemoryObjectSendStream[list[Item]]
    receive: MemoryObjectReceiveStream[list[Item]]
    #: the epoch each cursor belongs to
    epochs: dict[str, str] = field(default_factory=dict)
    answered: anyio.Event = field(default_factory=anyio.Event)
    accepted: bool = False
    final: Ended | ClientError | None = None

    @property
    def epoch(self) -> str | None:
        """The one epoch of every cursor (None while unknown, or when they differ)."""
        values = set(self.epochs.values())
        if self.epoch_default is not None and (
                not self.cursors or any(ns not in self.epochs for ns in self.cursors)):
            values.add(self.epoch_default)
        return values.pop() if len(values) == 1 else None

    def add_request(self) -> pb.SubscribeRequest:
        epochs = {ns: e for ns, e in self.epochs.items() if ns in self.cursors}
        add = pb.SubscribeRequest.Add(
            subscription_id=self.sub_id, namespaces=self.namespaces, filters=self.filters,
            since=self.cursors, epochs=epochs,
            # servers that know one epoch per server read this one
            epoch=self.epoch or "",
            # resuming: namespaces we have no cursor for were created while we were away
            replay_unlisted=bool(epochs) or self.epoch_default is not None,
        )
        if self.policy is not None:
            add.policy.CopyFrom(self.policy)
        return pb.SubscribeRequest(add=add)

    def close(self) -> None:
        self.send.close()
        self.receive.close()


@dataclass(slots=True)
class _Attempt:
    """How one Subscribe call went. ``waiting_since``: when the reader started waiting
    for the next message (None while it hands one to the consumers, which may wait)."""

    waiting_since: float | None
    healthy: bool = False
    refused: bool = False
    error: SubscribeError | None = None
    failed_node: int | None = None


class SubscribeStream:
    """One Subscribe call of a client, kept open by a task of the client's task group
    (created by :class:`Client`; :attr:`Client.subscribe_stream` is the shared one).

    :ivar heartbeats_acked: heartbeats answered (each with the id it carried)
    :ivar connects: calls that delivered something (1 + reconnects)
    :ivar epoch: the server's epoch, once known
    :ivar last_error: why the last call ended, if one did
    """

    def __init__(
        self,
        endpoints: Endpoints,
        spawn: Spawn,
        *,
        backoff: Backoff,
        idle_timeout: float | None,
        buffer: int,
        rng: random.Random,
        refusals: Refusals,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self._endpoints = endpoints
        self._spawn = spawn
        self._backoff = backoff
        self._idle_timeout = idle_timeout
        self._buffer = buffer
        self._rng = rng
        self._refusals = refusals
        self._metadata = metadata
        self._subs: dict[str, SubscriptionState] = {}
        self._ids = itertools.count(1)
        self._wanted: anyio.Event | None = None
        self._writes: MemoryObjectSendStream[pb.SubscribeRequest] | None = None
        self._scope: anyio.CancelScope | None = None
        self._finished: anyio.Event | None = None
        self._closed = False
        self.heartbeats_acked = 0
        self.connects = 0
        self.epoch: str | None = None
        self.last_error: SubscribeError | None = None

    # -- subscriptions ---------------------------------------------------------------

    def open(
        self,
        namespaces: Sequence[str],
        filters: Sequence[str],
        policy: Policy | None,
        since: Mapping[str, int],
        epoch: str | Mapping[str, str] | None,
    ) -> SubscriptionState:
        """Register a subscription and send its Add (starting the stream's task)."""
        if self._closed:
            raise ClientClosedError("client: closed")
        send, receive = anyio.create_memory_object_stream[list[Item]](self._buffer)
        state = SubscriptionState(
            f"s{next(self._ids)}", tuple(namespaces), tuple(filters),
            None if policy is None else policy_to_proto(policy), dict(since),
            epoch if isinstance(epoch, str) else None, send, receive,
            epochs=dict(epoch) if isinstance(epoch, Mapping) else {},
        )
        try:
            add = state.add_request()  # here, not in the stream's task, if it fails
        except (TypeError, ValueError) as exc:
            state.close()
            raise InvalidArgumentError("subscribe", str(exc)) from exc
        self._subs[state.sub_id] = state
        if self._writes is not None:
            self._writes.send_nowait(add)
        if self._finished is None:
            self._scope, self._finished = anyio.CancelScope(), anyio.Event()
            self._spawn(self._run, "broadcaster-subscribe")
        elif self._wanted is not None:
            self._wanted.set()
        return state

    def close_subscription(self, state: SubscriptionState) -> None:
        """The consumer is done with *state*: close it and send its Remove."""
        state.close()
        if self._subs.pop(state.sub_id, None) is not None and self._writes is not None:
            remove = pb.SubscribeRequest.Remove(subscription_id=state.sub_id)
            self._writes.send_nowait(pb.SubscribeRequest(remove=remove))

    async def aclose(self) -> None:
        """End every subscription (their consumers read what is buffered, then stop) and
        the call; returns when the stream's task has finished."""
        self._closed = True
        for state in list(self._subs.values()):
            self._end(state, None)
        if self._scope is not None and self._finished is not None:
            self._scope.cancel()
            await self._finished.wait()

    # -- the connection loop -----------------------------------------------------------

    async def _run(self) -> None:
        assert self._scope is not None and self._finished is not None
        try:
            with self._scope:
                await self._connect_while_wanted()
        finally:
            self._finished.set()

    async def _connect_while_wanted(self) -> None:
        failures = refusals = 0
        while True:
            if not self._subs:
                self._wanted = anyio.Event()
                await self._wanted.wait()
                self._wanted = None
                continue
            attempt = await self._connect_once()
            error = attempt.error or SubscribeError(
                grpc.StatusCode.UNAVAILABLE, "subscribe: stream ended by the server"
            )
            self.last_error = error
            if error.code in _FATAL:
                self._fail_all(error)
                continue
            if attempt.failed_node is not None:
                self._endpoints.failed(attempt.failed_node)
            if attempt.refused:
                refusals += 1
                self._refusals.retried["Subscribe"] += 1
                delay = REFUSED_BACKOFF.delay(refusals, self._rng)
                _log.debug("subscribe stream refused (%s); again in %.3fs", error, delay)
                await anyio.sleep(delay)
                continue
            refusals = 0
            failures = 1 if attempt.healthy else failures + 1
            limit = self._backoff.max_attempts
            if limit is not None and failures > limit:
                self._fail_all(error)
                failures = 0
                continue
            # a healthy stream that broke moves to the next node at once; then back off
            delay = 0.0 if self._endpoints.several and attempt.healthy else \
                self._backoff.delay(failures, self._rng)
            _log.info("subscribe stream lost (%s); reconnecting in %.3fs", error, delay)
            await anyio.sleep(delay)

    async def _connect_once(self) -> _Attempt:
        """Run one Subscribe call until it ends."""
        attempt = _Attempt(waiting_since=anyio.current_time())
        index, channel = self._endpoints.channel()
        method: grpc.aio.StreamStreamMultiCallable[pb.SubscribeRequest, pb.SubscribeResponse]
        method = channel.stream_stream(
            _METHOD, request_serializer=pb.SubscribeRequest.SerializeToString,
            response_deserializer=pb.SubscribeResponse.FromString,
        )
        call = method(metadata=self._metadata or None)
        writes, to_write = anyio.create_memory_object_stream[pb.SubscribeRequest](math.inf)
        with writes, to_write:
            for state in self._subs.values():
                writes.send_nowait(state.add_request())
            self._writes = writes
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._write_all, call, to_write)
                    if self._idle_timeout is not None:
                        tg.start_soon(self._watch_idle, attempt, self._idle_timeout,
                                      tg.cancel_scope)
                    await self._read_all(call, attempt, writes)
                    tg.cancel_scope.cancel()
            finally:
                self._writes = None
                call.cancel()
        if not attempt.refused and (attempt.error is None
                                    or attempt.error.code not in _FATAL):
            attempt.failed_node = index  # the next attempt goes to the next address
        return attempt

    @staticmethod
    async def _write_all(
        call: _Call, requests: MemoryObjectReceiveStream[pb.SubscribeRequest]
    ) -> None:
        try:
            async for request in requests:
                await call.write(request)
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
            pass  # the call is broken: its reader reports why

    @staticmethod
    async def _watch_idle(attempt: _Attempt, idle: float, scope: anyio.CancelScope) -> None:
        """End the call when the server has been silent for *idle* seconds (time spent
        waiting for a consumer to make room does not count)."""
        while True:
            since = attempt.waiting_since
            left = idle if since is None else since + idle - anyio.current_time()
            if left <= 0:
                break
            await anyio.sleep(left)
        attempt.healthy = True  # it was (a silent server is not a failed connect)
        attempt.error = SubscribeError(grpc.StatusCode.UNAVAILABLE, "subscribe: idle timeout")
        scope.cancel()

    async def _read_all(
        self,
        call: _Call,
        attempt: _Attempt,
        writes: MemoryObjectSendStream[pb.SubscribeRequest],
    ) -> None:
        try:
            while True:
                attempt.waiting_since = anyio.current_time()
                msg = await call.read()
                if not isinstance(msg, pb.SubscribeResponse):  # EOF
                    return
                attempt.waiting_since = None
                if not attempt.healthy:
                    attempt.healthy = True
                    self.connects += 1
                await self._dispatch(msg, writes)
        except _Unavailable as exc:
            attempt.error = exc.error
            attempt.healthy = False  # back off as from a failed connect
        except grpc.aio.AioRpcError as exc:
            code, details = exc.code(), exc.details()
            attempt.error = SubscribeError.from_rpc_error(exc)
            # before anything came back, only Adds were sent: safe to send again soon
            attempt.refused = not attempt.healthy and (
                refused(code, details) or failed_sending(code, details)
            )

    # -- routing ---------------------------------------------------------------------

    async def _dispatch(
        self, msg: pb.SubscribeResponse, writes: MemoryObjectSendStream[pb.SubscribeRequest]
    ) -> None:
        kind = msg.WhichOneof("kind")
        if kind == "event_batch":
            await self._deliver(msg.event_batch)
        elif kind == "heartbeat":
            self._heartbeat(msg.heartbeat, writes)
        elif kind == "drop_notice":
            drop = msg.drop_notice
            state = self._subs.get(drop.subscription_id)
            if state is not None:
                ns = drop.namespace
                state.cursors[ns] = max(state.cursors.get(ns, 0), drop.last_sequence)
                await self._put(state, [decode_drop(drop)])
        elif kind == "resync_notice":
            resync = msg.resync_notice
            state = self._subs.get(resync.subscription_id)
            if state is not None:
                state.epochs[resync.namespace] = self.epoch = resync.epoch
                state.cursors[resync.namespace] = max(0, resync.oldest_available - 1)
                await self._put(state, [decode_resync(resync)])
        elif kind == "availability_notice":
            notice = msg.availability_notice
            state = self._subs.get(notice.subscription_id)
            if state is not None:
                await self._put(state, [decode_availability(notice)])
        elif kind == "subscription_ended":
            ended = msg.subscription_ended
            state = self._subs.get(ended.subscription_id)
            if state is not None and ended.reason not in _TRANSIENT_END:
                self._end(state, decode_ended(ended))
        elif kind == "add_result":
            self._added(msg.add_result)

    def _heartbeat(
        self, hb: pb.Heartbeat, writes: MemoryObjectSendStream[pb.SubscribeRequest]
    ) -> None:
        # The ack names the heartbeat it answers: the server counts only acks of
        # heartbeats it sent.
        writes.send_nowait(pb.SubscribeRequest(ack=pb.SubscribeRequest.Ack(
            heartbeat_id=hb.heartbeat_id)))
        self.heartbeats_acked += 1
        self.epoch = hb.epoch or self.epoch
        epochs = hb.epochs
        for state in self._subs.values():
            for ns in state.cursors:
                if ns not in state.epochs:
                    epoch = epochs.get(ns) or hb.epoch
                    if epoch:
                        state.epochs[ns] = epoch

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
                await self._put(state, items)

    @staticmethod
    async def _put(state: SubscriptionState, items: list[Item]) -> None:
        """Hand *items* to the consumer, waiting while its buffer is full (which pauses
        the whole stream: the server's overflow policies take over)."""
        try:
            try:
                state.send.send_nowait(items)
            except anyio.WouldBlock:
                await state.send.send(items)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # the consumer closed it meanwhile

    def _added(self, result: pb.AddResult) -> None:
        state = self._subs.get(result.subscription_id)
        if state is None:
            return
        if result.ok:
            # Where delivery starts, for namespaces we have seen nothing of yet: a resume
            # before the first event of a namespace must not skip what came meanwhile.
            for ns, seq in result.start_sequences.items():
                state.cursors.setdefault(ns, seq)
            # The epoch of cursors that had none (a cursor resumed in another epoch keeps
            # its own: the ResyncNotice that follows moves it)
            for ns in state.cursors:
                if ns not in state.epochs:
                    epoch = result.epochs.get(ns) or result.epoch
                    if epoch:
                        state.epochs[ns] = epoch
            state.accepted = True
            state.answered.set()
            return
        error = SubscribeError.from_code_value(result.error.code, result.error.message)
        if error.code is grpc.StatusCode.UNAVAILABLE:
            raise _Unavailable(error)  # this node cannot serve it now: reconnect
        self._end(state, error)

    def _end(self, state: SubscriptionState, last: Ended | ClientError | None) -> None:
        """End *state* for good: its consumer gets what is buffered, then *last*."""
        self._subs.pop(state.sub_id, None)
        state.final = last
        state.answered.set()
        state.send.close()

    def _fail_all(self, error: SubscribeError) -> None:
        for state in list(self._subs.values()):
            self._end(state, error)
