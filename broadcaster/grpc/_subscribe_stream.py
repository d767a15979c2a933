"""One ``broadcaster.v1.Broadcaster/Subscribe`` stream: many subscriptions, one writer.

Shape of a stream::

    reader (the RPC's task)   Add / Remove / Ack  -> opens or closes hub subscriptions
    pump (one for all subscriptions)  receive_batch_nowait() of the subscriptions the hub
                              woke (a ReadyQueue)  -> the stream's queue (bounded)
    writer                    queue -> EventBatch messages -> context.write(bytes)

Woken by the hub, the pump lingers briefly (``batch_linger``) so that a burst of
publishes is read in one pass, then reads every woken subscription without yielding;
the writer sends what that pass queued as one spliced ``EventBatch``, each event once
with the ids of every subscription it matched. A slow client blocks ``context.write``;
the queue then fills, the pump stops reading, and the hub's overflow policy of each
subscription applies (drops are reported in-band).

Every read pass and every write first takes a turn from the server's :class:`Turns`,
so that an event fanned out to thousands of streams is read and written a bounded
number of streams per turn of the event loop, and other RPCs (Health, publishes)
advance in between.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import anyio
import grpc
from anyio.abc import TaskGroup

from .._core._errors import BroadcasterError
from .._core._hub import Broadcaster
from .._core._ready import ReadyQueue
from .._core._subscription import Subscription
from .._core._types import Ended, Event, Heartbeat
from ..v1 import broadcaster_pb2 as pb
from ._encode import (
    EventEncoder,
    encode_add_result,
    encode_heartbeat,
    encode_item_notice,
    encode_removed,
    id_prefix,
    pack_batches,
    pack_run,
)
from ._policy import policy_from_proto
from ._status import status_of
from ._turns import Turns

__all__ = ["StreamLimits", "SubscribeStream"]

logger = logging.getLogger("broadcaster.grpc.subscribe")

_MAX_ID_LENGTH = 256

#: The pump lingers only while every subscription of the stream can hold at least this
#: much in the hub meanwhile; a tighter policy bound would turn the wait into drops.
_LINGER_MIN_EVENTS = 256
_LINGER_MIN_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """Bounds and batching of one Subscribe stream.

    :ivar max_subscriptions: live subscriptions per stream
    :ivar batch_max_events: deliveries in one EventBatch message
    :ivar batch_max_bytes: body size after which an EventBatch is closed
    :ivar batch_linger: seconds the pump waits, once woken, before reading the
        subscriptions, so that a burst of publishes goes out as one batch
    """

    max_subscriptions: int = 1000
    batch_max_events: int = 4096
    batch_max_bytes: int = 1024 * 1024
    batch_linger: float = 0.002


class _Entry:
    """One subscription of the stream."""

    __slots__ = ("closed", "id", "prefix", "sub", "tight")

    def __init__(self, subscription_id: str, sub: Subscription, tight: bool) -> None:
        self.id = subscription_id
        self.prefix = id_prefix(subscription_id)
        self.sub = sub
        self.closed = False
        self.tight = tight  # its policy bound is too small for the pump to linger


def _is_tight(sub: Subscription, hub: Broadcaster) -> bool:
    policies = [cursor.policy for cursor in sub.cursors.values()]
    if sub.namespaces is None:  # namespaces created later get their own default policy
        config = hub.config
        policies.append(sub.policy or config.default_namespace.default_policy)
        if sub.policy is None:
            policies.extend(ns.default_policy for ns in config.namespaces.values())
    return any(p.max_events < _LINGER_MIN_EVENTS
               or 0 < p.max_bytes < _LINGER_MIN_BYTES for p in policies)


#: Queue entries: (subscription, items) from the pump, or (None, message) from the reader.
_Chunk = tuple[_Entry, Sequence[object]] | tuple[None, bytes]


class SubscribeStream:
    """State and tasks of one Subscribe RPC.

    :param hub: the broadcaster
    :param limits: bounds and batching
    :param write: sends one serialized SubscribeResponse (``context.write``)
    :param on_reject: called with a reason label whenever an Add is rejected
    :param encoder: serializes events (share one per server: its caches are per event
        type and second)
    :param turns: shared by every stream of the server (None: none taken)
    """

    def __init__(
        self,
        hub: Broadcaster,
        limits: StreamLimits,
        write: Callable[[bytes], Awaitable[None]],
        on_reject: Callable[[str], None] = lambda reason: None,
        encoder: EventEncoder | None = None,
        turns: Turns | None = None,
    ) -> None:
        self._hub = hub
        self._turns = turns
        self._encoder = encoder or EventEncoder()
        self._limits = limits
        self._write = write
        self._on_reject = on_reject
        self._subs: dict[str, _Entry] = {}
        self._tight = 0  # live subscriptions with a tight policy bound
        self._ready: ReadyQueue[_Entry] = ReadyQueue()
        self._queue: deque[_Chunk] = deque()
        self._queued_items = 0
        self._high_water = 2 * limits.batch_max_events
        self._wake: anyio.Event | None = None
        self._room: anyio.Event | None = None
        self._last_heartbeat = 0
        self._input_done = False
        self._stopping = False
        self._tg: TaskGroup | None = None

    @property
    def subscription_count(self) -> int:
        return len(self._subs)

    # -- lifecycle ---------------------------------------------------------------------

    async def run(self, requests: AsyncIterator[pb.SubscribeRequest]) -> None:
        """Serve the stream until the client goes away, or until no subscription is left
        after the client half-closed or the server began shutting down. Every
        subscription is closed on the way out, whatever the cause."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._writer)
                tg.start_soon(self._pump)
                async for request in requests:
                    if request.WhichOneof("kind") == "add":
                        await self._add(request.add)  # may open a durable log first
                    else:
                        self._handle(request)
                self._input_done = True
                self._notify()
        finally:
            for entry in list(self._subs.values()):
                entry.closed = True
                entry.sub.close()
            self._subs.clear()

    def stop(self) -> None:
        """The server is shutting down: end the stream once nothing is left to send."""
        self._stopping = True
        self._notify()

    # -- requests ------------------------------------------------------------------------

    def _handle(self, request: pb.SubscribeRequest) -> None:
        kind = request.WhichOneof("kind")
        if kind == "remove":
            self._remove(request.remove.subscription_id)
        elif kind == "ack":
            for entry in self._subs.values():
                entry.sub.ack(request.ack.heartbeat_id)
        else:
            # An empty request: answer as a rejected Add so the client learns why.
            self._reject("", grpc.StatusCode.INVALID_ARGUMENT,
                         "kind: one of add, remove or ack must be set", "invalid_argument")

    async def _add(self, add: pb.SubscribeRequest.Add) -> None:
        sid = add.subscription_id
        if not sid:
            return self._reject(sid, grpc.StatusCode.INVALID_ARGUMENT,
                                "subscription_id: must not be empty", "invalid_argument")
        if len(sid) > _MAX_ID_LENGTH:
            return self._reject(sid, grpc.StatusCode.INVALID_ARGUMENT,
                                f"subscription_id: longer than {_MAX_ID_LENGTH} characters",
                                "invalid_argument")
        if sid in self._subs:
            return self._reject(sid, grpc.StatusCode.ALREADY_EXISTS,
                                "subscription_id: already in use on this stream",
                                "already_exists")
        if len(self._subs) >= self._limits.max_subscriptions:
            return self._reject(
                sid, grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"subscription_id: the stream has its maximum of "
                f"{self._limits.max_subscriptions} subscriptions", "stream_subscription_limit")
        try:
            namespaces = list(add.namespaces) or None
            policy = policy_from_proto(add.policy, self._hub.config, namespaces) \
                if add.HasField("policy") else None
            sub = self._hub.subscribe(
                namespaces, filters=list(add.filters), policy=policy,
                since=dict(add.since) or None, since_default=0 if add.replay_unlisted else None,
                epoch=_epochs(add), liveness="ack",
            )
            # opens the durable logs not open yet (the stream's next requests wait)
            await self._hub.prepare(sub)
            sub.open()
        except BroadcasterError as exc:
            code = status_of(exc)
            return self._reject(sid, code, str(exc), code.name.lower())
        except anyio.ClosedResourceError:
            return self._reject(sid, grpc.StatusCode.UNAVAILABLE,
                                "server: shutting down", "unavailable")
        entry = _Entry(sid, sub, _is_tight(sub, self._hub))
        self._subs[sid] = entry
        self._tight += entry.tight
        epochs = sub.epochs()
        self._control(encode_add_result(
            sid, start_sequences=sub.start_positions(), epochs=epochs,
            epoch=self._hub.epoch or _one(epochs.values())))
        self._ready.mark(entry, sub)  # replay, or a heartbeat, may be ready at once

    def _reject(self, sid: str, code: grpc.StatusCode, message: str, reason: str) -> None:
        self._on_reject(reason)
        self._control(encode_add_result(sid, code.value[0], message))

    def _remove(self, sid: str) -> None:
        entry = self._subs.pop(sid, None)
        if entry is not None:
            self._tight -= entry.tight
            entry.closed = True
            entry.sub.close()
        self._control(encode_removed(sid))

    # -- pumps and the queue -----------------------------------------------------------

    async def _pump(self) -> None:
        """Read the subscriptions the hub woke, in the order it woke them, into the queue;
        stop reading while the queue is above its high-water mark."""
        ready, max_events = self._ready, self._limits.batch_max_events
        linger, turns = self._limits.batch_linger, self._turns
        while True:
            if not len(ready):
                await ready.wait()
                if turns is not None:
                    await turns.take()
                if linger and not self._tight:  # let the rest of a burst land: one
                    await anyio.sleep(linger)       # read per subscription for all of it
            elif turns is not None:
                await turns.take()
            for entry, sub in ready.take():
                while self._queued_items >= self._high_water:
                    room = self._room = self._room or anyio.Event()
                    await room.wait()
                if entry.closed:
                    sub.close()
                    continue
                try:
                    items = sub.receive_batch_nowait(max_events)
                except anyio.WouldBlock:
                    ready.watch(entry, sub)
                    continue
                except (anyio.EndOfStream, anyio.ClosedResourceError):
                    sub.close()
                    continue
                self._queue.append((entry, items))
                self._queued_items += len(items)
                self._notify()
                if type(items[-1]) is Ended:
                    sub.close()  # nothing follows Ended
                elif len(items) >= max_events:
                    ready.mark(entry, sub)  # more may be ready: read it again next round
                else:
                    ready.watch(entry, sub)  # everything ready was taken

    def _control(self, message: bytes) -> None:
        self._queue.append((None, message))
        self._notify()

    def _notify(self) -> None:
        if self._wake is not None:
            self._wake.set()
            self._wake = None

    # -- the writer --------------------------------------------------------------------

    async def _writer(self) -> None:
        while True:
            if not self._queue:
                if (self._input_done or self._stopping) and not self._subs:
                    break
                wake = self._wake = anyio.Event()
                await wake.wait()
                continue
            turns = self._turns
            try:
                for message in self._drain():
                    if turns is not None:
                        await turns.take()
                    # A write is never abandoned half way: gRPC cannot end the call (send
                    # a status) while a message is still being sent, so cancelling the
                    # stream (say, after a request that could not be parsed) waits for
                    # it. It returns once the client reads or the call is over.
                    with anyio.CancelScope(shield=True):
                        await self._write(message)
            except Exception as exc:  # the RPC is over (peer gone): grpc's internal error
                logger.debug("subscribe stream write failed: %r", exc)
                break
        assert self._tg is not None
        self._tg.cancel_scope.cancel()  # stop reading requests: the stream is over

    def _drain(self) -> list[bytes]:
        """Turn everything queued into messages, in order.

        Subscriptions of a stream mostly read the very same events (same namespaces,
        filters that match alike): a chunk equal to one already seen (same Event objects,
        compared in C) only adds its subscription's id to that run, so a delivery costs
        per *event* rather than per event and subscription."""
        queue, limits, encoder = self._queue, self._limits, self._encoder
        messages: list[bytes] = []
        runs: dict[tuple[int, ...], tuple[list[Event], list[bytes]]] = {}
        contributors: set[_Entry] = set()

        def add_run(entry: _Entry, events: list[Event]) -> None:
            key: tuple[int, ...] = (id(events[0]), id(events[-1]), len(events))
            run = runs.get(key)
            if run is not None and run[0] == events:
                run[1].append(entry.prefix)
            else:
                if run is not None:  # same ends and length, other events (filters)
                    key = (*key, len(runs))
                runs[key] = (events, [entry.prefix])
            contributors.add(entry)

        def flush() -> None:
            if not runs:
                return
            if len(runs) == 1:
                [(events, prefixes)] = runs.values()
                messages.extend(pack_run(events, b"".join(prefixes), limits.batch_max_events,
                                         limits.batch_max_bytes, encoder))
            else:
                deliveries: dict[int, tuple[Event, list[bytes]]] = {}
                for events, prefixes in runs.values():
                    ids = b"".join(prefixes)
                    for event in events:
                        found = deliveries.get(id(event))
                        if found is None:
                            deliveries[id(event)] = (event, [ids])
                        else:
                            found[1].append(ids)
                values = list(deliveries.values())
                if len(contributors) > 1:
                    values.sort(key=lambda d: (d[0].namespace, d[0].sequence))
                messages.extend(pack_batches(
                    ((encoder.field(event), b"".join(ids)) for event, ids in values),
                    limits.batch_max_events, limits.batch_max_bytes))
            runs.clear()
            contributors.clear()

        while queue:
            entry, payload = queue.popleft()
            if entry is None:
                flush()
                messages.append(payload)  # type: ignore[arg-type]
                continue
            items: Sequence[object] = payload
            self._queued_items -= len(items)
            if entry.closed or not items:
                continue
            run = runs.get((id(items[0]), id(items[-1]), len(items)))
            if run is not None and run[0] == items:  # the common case: O(1) per chunk
                run[1].append(entry.prefix)
                contributors.add(entry)
                continue
            start = 0
            for i, item in enumerate(items):
                if type(item) is Event:
                    continue
                if i > start:
                    add_run(entry, items[start:i])  # type: ignore[arg-type]
                start = i + 1
                if type(item) is Heartbeat:
                    if item.heartbeat_id > self._last_heartbeat:
                        self._last_heartbeat = item.heartbeat_id
                        flush()
                        latest, epochs = self._latest()
                        messages.append(encode_heartbeat(
                            item.heartbeat_id, latest, item.epoch or _one(epochs.values()),
                            epochs))
                else:
                    flush()
                    message = encode_item_notice(entry.id, item)
                    if message is not None:
                        messages.append(message)
                    if type(item) is Ended:
                        self._ended(entry)
            if start == 0:
                add_run(entry, items)  # type: ignore[arg-type]
            elif start < len(items):
                add_run(entry, items[start:])  # type: ignore[arg-type]
        flush()
        if self._room is not None:
            self._room.set()
            self._room = None
        return messages

    def _ended(self, entry: _Entry) -> None:
        entry.closed = True
        if self._subs.get(entry.id) is entry:
            del self._subs[entry.id]
            self._tight -= entry.tight

    def _latest(self) -> tuple[dict[str, int], dict[str, str]]:
        latest: dict[str, int] = {}
        epochs: dict[str, str] = {}
        for entry in self._subs.values():
            for name, cursor in entry.sub.cursors.items():
                latest[name] = cursor.ns.log.head
                epochs[name] = cursor.ns.epoch
        return latest, epochs


def _epochs(add: pb.SubscribeRequest.Add) -> str | dict[str, str] | None:
    """The epochs of an Add's ``since`` values: per namespace (``epochs``, falling back
    on the single ``epoch`` for the other ``since`` namespaces), or one for all."""
    if not add.epochs:
        return add.epoch or None
    epochs = dict.fromkeys(add.since, add.epoch) if add.epoch else {}
    epochs.update(add.epochs)
    return epochs


def _one(values: Iterable[str]) -> str:
    """The value all of *values* share, else ``""``."""
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else ""
