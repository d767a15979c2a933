"""One namespace's stream: publishing, the consumer feeding the local view, older reads.

The local view is fed in stream order, with no gaps: by a push consumer of our own
(ephemeral, no acks, flow control and idle heartbeats) starting after the view's head,
and by this node's own publishes as soon as JetStream acknowledges them when they are
next in line. A consumer that is silent for three heartbeats, or that skips a sequence
the stream still has, is created again from the view's head; a stream whose epoch
changed (deleted and created again) resets the view. Reads below the cache return
nothing at once and fetch the chunk with direct gets (any replica answers), then tell
the listener ``history_loaded``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import anyio
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import api

from .._core._config import Retention
from .._core._durable import LogListener, LogUnavailable, NewEvent, Stored
from .._core._errors import PayloadTooLarge
from .._core._log import event_size
from .._core._types import Event
from .._core._view import HistoryView
from ._naming import decode_message, encode_message
from ._store import NATS_UNAVAILABLE, epoch_of, unavailable

if TYPE_CHECKING:
    from ._store import JetStreamStore

__all__ = ["JetStreamLog"]

logger = logging.getLogger("broadcaster.jetstream")

_CHUNKS_KEPT = 16
#: room left in a NATS message for its headers (Nats-Msg-Id and NATS' own)
_HEADERS_ALLOWANCE = 512
#: the topic of a message on a namespace's subject that another program published
UNDECODABLE = "/broadcaster/undecodable"
NATS_AND_STALLED: tuple[type[BaseException], ...] = (
    *NATS_UNAVAILABLE, nats.js.errors.TooManyStalledMsgsError)
FEED_ERRORS: tuple[type[BaseException], ...] = (
    *NATS_UNAVAILABLE, LogUnavailable, nats.js.errors.APIError)


class JetStreamLog:
    """One namespace's history in its JetStream stream."""

    def __init__(self, store: JetStreamStore, namespace: str, retention: Retention,
                 listener: LogListener, info: api.StreamInfo) -> None:
        config = store.config
        self._store = store
        self._namespace = namespace
        self._retention = retention
        self._listener = listener
        self._stream = config.stream(namespace)
        self._subject = config.subject(namespace)
        self._epoch = epoch_of(info)
        self._view = HistoryView(retention, config.cache_events, config.cache_bytes)
        self._stream_first = 1  # the stream's first sequence when last seen
        self._acked: dict[int, Event] = {}  # own events acknowledged ahead of the view
        self._head_changed = anyio.Event()
        self._submitting = anyio.Lock()
        self._chunks: OrderedDict[int, list[Event]] = OrderedDict()
        self._fetching: set[int] = set()
        self._available = True
        self._complete = False
        self._start_view(info)
        # the monotonic clock against the wall clock, for events stored by other nodes
        self._mono_minus_wall = anyio.current_time() - time.time()

    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def epoch(self) -> str:
        return self._epoch

    @property
    def stream(self) -> str:
        return self._stream

    @property
    def head(self) -> int:
        return self._view.head

    @property
    def first(self) -> int:
        if self._complete:  # the view has seen every retained event: its retention decides
            return self._view.first
        return min(max(self._stream_first, 1), self._view.first)

    @property
    def retained_bytes(self) -> int:
        return self._view.retained_bytes

    @property
    def available(self) -> bool:
        return self._available and self._store.connected

    # -- starting -------------------------------------------------------------------------

    def _start_view(self, info: api.StreamInfo) -> None:
        """Begin the view at the stream's newest ``cache_events`` events."""
        state = info.state
        last, first = state.last_seq, max(state.first_seq, 1)
        start = max(first, last - self._store.config.cache_events + 1)
        self._view = HistoryView(self._retention, self._store.config.cache_events,
                                 self._store.config.cache_bytes, head=start - 1)
        self._stream_first = first
        # the view began at the stream's first event: it knows the size and age of every
        # retained event, so the namespace's retention (by event size, as on the other
        # logs) decides what is retained, not the stream's own byte count
        self._complete = start <= first
        self._acked.clear()
        self._chunks.clear()

    async def start(self) -> None:
        """Start feeding the view; return once it holds what the stream held."""
        target = await self._last_seq()
        self._store.task_group.start_soon(self._feed, name=f"jetstream feed {self._stream}")
        with anyio.move_on_after(self._store.config.ack_timeout):
            await self._wait_head(target)

    async def catch_up(self) -> None:
        """Return once the view holds what the stream held when called (at most
        ``ack_timeout``; at once if NATS does not answer: the view is what we have)."""
        try:
            target = await self._last_seq()
        except LogUnavailable:
            return
        with anyio.move_on_after(self._store.config.ack_timeout):
            await self._wait_head(target)

    async def _last_seq(self) -> int:
        try:
            info = await self._store.js.stream_info(self._stream)
        except NATS_UNAVAILABLE as exc:
            raise unavailable(f"NATS did not answer for stream {self._stream}: {exc}") from exc
        return int(info.state.last_seq)

    async def _wait_head(self, target: int) -> None:
        while self._view.head < target:
            await self._head_changed.wait()

    # -- the view ----------------------------------------------------------------------------

    def read(self, start: int, stop: int) -> Sequence[Event]:
        start = max(start, self.first)
        if start >= self._view.first:
            events = self._view.read(start, stop)
            if events is not None:
                return events
        stop = min(stop, self._view.cache_first)
        if start >= stop:
            return ()
        size = self._store.config.read_chunk
        number = (start - 1) // size
        chunk = self._chunks.get(number)
        if chunk is None or not chunk or chunk[-1].sequence < start:
            self._prefetch(number)
            return ()
        self._chunks.move_to_end(number)
        i = start - chunk[0].sequence
        return chunk[max(i, 0) : max(i, 0) + stop - start] if i >= 0 else ()

    def trim(self, now: float) -> None:
        self._view.trim(now)

    def _prefetch(self, number: int) -> None:
        if number not in self._fetching:
            self._fetching.add(number)
            self._store.task_group.start_soon(self._fetch_chunk, number)

    async def _fetch_chunk(self, number: int) -> None:
        try:
            size = self._store.config.read_chunk
            lo = max(number * size + 1, self.first)
            hi = min(number * size + size + 1, self._view.cache_first)
            events = await self.fetch(lo, hi)
            if events:
                self._chunks[number] = events
                if len(self._chunks) > _CHUNKS_KEPT:
                    self._chunks.popitem(last=False)
        except LogUnavailable as exc:
            logger.warning("could not fetch older history of %s: %s", self._stream, exc)
        finally:
            self._fetching.discard(number)
        self._listener.history_loaded(self._namespace)

    async def fetch(self, start: int, stop: int) -> list[Event]:
        """The stored events with ``start <= sequence < stop`` (direct gets, pipelined);
        the ones the stream no longer has are left out.

        :raises LogUnavailable: if NATS does not answer
        """
        jsm = self._store.js
        now = anyio.current_time()

        async def one(seq: int) -> Event | None:
            try:
                raw = await jsm.get_msg(self._stream, seq=seq, direct=True)
            except nats.js.errors.NotFoundError:
                return None
            stamp = raw.time.timestamp() if raw.time else time.time()
            return self._event(seq, raw.data or b"", stamp, now)

        try:
            found = await asyncio.gather(*(one(s) for s in range(start, stop)))
        except NATS_UNAVAILABLE as exc:
            raise unavailable(f"NATS did not answer reads of {self._stream}: {exc}") from exc
        events = [e for e in found if e is not None]
        if events and events[0].sequence > start:
            self._stream_first = max(self._stream_first, events[0].sequence)
        return events

    def _event(self, seq: int, body: bytes, stamp: float, now: float) -> Event:
        try:
            topic, type_url, ts, labels, payload = decode_message(body)
        except ValueError as exc:  # published by something else: kept, so no gap
            logger.warning("stream %s: message %d is not a broadcaster event (%s); it is "
                           "delivered with topic %s", self._stream, seq, exc, UNDECODABLE)
            topic, type_url, ts, labels, payload = (UNDECODABLE, "", int(stamp * 1e9), {},
                                                    bytes(body))
        published_at = min(now, stamp + self._mono_minus_wall)
        return Event(self._namespace, topic, payload, type_url, labels, ts, seq,
                     published_at, event_size(topic, payload, type_url, labels))

    def _add(self, events: list[Event]) -> None:
        """Put *events* (the next sequences) into the view, with any acknowledged own
        events that follow them, and tell the listener."""
        view, acked = self._view, self._acked
        nxt = (events[-1].sequence if events else view.head) + 1
        while nxt in acked:
            events.append(acked.pop(nxt))
            nxt += 1
        if not events:
            return
        view.add(events)
        # the stream keeps at most max_events too: older ones are gone from it as well
        self._stream_first = max(self._stream_first, view.head - self._retention.max_events + 1)
        for seq in [s for s in acked if s <= view.head]:
            del acked[seq]
        self._listener.events_added(self._namespace, events)
        self._head_changed.set()
        self._head_changed = anyio.Event()

    # -- publishing ----------------------------------------------------------------------------

    async def append(self, items: Sequence[NewEvent], now: float,
                     submitted: Callable[[], None] | None = None) -> list[Stored]:
        """Publish *items* in order (pipelined) and return once JetStream stored each;
        *submitted* is called once they are sent (concurrent appends are sent in the
        order they were called, and JetStream numbers them in that order).

        :raises LogUnavailable: if NATS is unreachable or did not acknowledge in
            ``ack_timeout`` (some items may be stored: publish again with the same ids)
        """
        store = self._store
        if not store.connected:
            raise unavailable("NATS is unreachable: the event was not published")
        js, timeout = store.js, store.config.ack_timeout
        bodies = [encode_message(item.topic, item.type_url, item.timestamp_ns, item.labels,
                                 bytes(item.payload)) for item in items]
        limit = store.max_payload - _HEADERS_ALLOWANCE
        for i, body in enumerate(bodies):
            if len(body) > limit:
                prefix = f"items[{i}]." if i else ""
                raise PayloadTooLarge(
                    prefix + "payload", f"the event takes {len(body)} bytes in a NATS message "
                    f"and the NATS server's max_payload is {store.max_payload}: raise "
                    "max_payload in nats-server's configuration (or lower max_payload_bytes)")
        futures = []
        try:
            with anyio.fail_after(timeout):
                # batches of this log go out in the order their appends were called; no
                # wait_stall: nats-py's stall timeout yields to the event loop for every
                # message, whose flusher then writes each one with a system call of its
                # own (0.2 ms); without it the messages of a batch are written together
                async with self._submitting:
                    for item, body in zip(items, bodies, strict=True):
                        headers = ({"Nats-Msg-Id": item.event_id}
                                   if item.event_id is not None else None)
                        futures.append(await js.publish_async(
                            self._subject, body, stream=self._stream, headers=headers))
                if submitted is not None:
                    submitted()
                acks = await asyncio.gather(*futures)
        except NATS_AND_STALLED as exc:
            for future in futures:
                future.cancel()
            raise unavailable(f"JetStream did not acknowledge within {timeout:g} s "
                              f"({type(exc).__name__}); the events may or may not be stored: "
                              "publish them again with the same ids") from exc
        except nats.js.errors.APIError as exc:
            for future in futures:
                future.cancel()
            if exc.code == 503:
                raise unavailable(f"JetStream is unavailable: {exc.description}") from exc
            raise
        results: list[Stored] = []
        fresh: list[Event] = []
        for item, ack in zip(items, acks, strict=True):
            seq = int(ack.seq)
            results.append(Stored(seq, bool(ack.duplicate)))
            if not ack.duplicate and seq > self._view.head:
                event = Event(self._namespace, item.topic, item.payload, item.type_url,
                              item.labels, item.timestamp_ns, seq, now, item.size)
                self._acked[seq] = event
                fresh.append(event)
        self._add([])
        if fresh:  # read-your-writes on this node, bounded: the events are stored anyway
            with anyio.move_on_after(timeout):
                await self._wait_head(max(e.sequence for e in fresh))
        return results

    # -- the feed ---------------------------------------------------------------------------------

    def availability(self, available: bool, reason: str) -> None:
        if available != self._available:
            self._available = available
            self._listener.availability_changed(self._namespace, available, reason)

    async def _feed(self) -> None:
        backoff = 0.05
        while True:
            try:
                await self._consume()
                backoff = 0.05
            except FEED_ERRORS as exc:
                logger.info("feed of %s interrupted: %s", self._stream, exc)
                backoff = min(backoff * 2, 2.0)
            await anyio.sleep(backoff)

    async def _check_epoch(self) -> None:
        """Compare the stream's epoch with ours; reset the view on a new incarnation."""
        store = self._store
        try:
            info = await store.js.stream_info(self._stream)
        except nats.js.errors.NotFoundError:
            info = await store.ensure_stream(self._namespace, self._retention)
        self._stream_first = max(int(info.state.first_seq), 1)
        epoch = epoch_of(info)
        if epoch != self._epoch:
            logger.warning("stream %s is a new incarnation (%s -> %s)", self._stream,
                           self._epoch, epoch)
            self._epoch = epoch
            self._start_view(info)
            self._listener.history_reset(self._namespace, epoch)
        elif self._stream_first > self._view.head + 1:
            self._view.skip_to(self._stream_first)  # expired while we were away

    async def _consume(self) -> None:
        """Run one consumer from the view's head until it stalls or skips."""
        store = self._store
        nc, config = store.nc, store.config
        if not nc.is_connected:
            raise unavailable("not connected")
        await self._check_epoch()
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox, pending_msgs_limit=-1, pending_bytes_limit=-1)
        try:
            consumer = api.ConsumerConfig(
                deliver_subject=inbox, deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=self._view.head + 1, ack_policy=api.AckPolicy.NONE,
                flow_control=True, idle_heartbeat=config.heartbeat, mem_storage=True,
                num_replicas=1, inactive_threshold=max(5 * config.heartbeat, 5.0),
                filter_subject=self._subject,
            )
            await store.js._jsm.add_consumer(self._stream, config=consumer)
            self.availability(True, "consumer running")
            silence = 3 * config.heartbeat
            while True:
                try:
                    msg = await sub.next_msg(timeout=silence)
                except nats.errors.TimeoutError:
                    logger.info("consumer of %s silent for %.1f s", self._stream, silence)
                    return
                if not await self._handle(msg):
                    return
        finally:
            with anyio.CancelScope(shield=True):
                with contextlib.suppress(Exception):  # the connection may be gone
                    await sub.unsubscribe()

    async def _handle(self, msg: Msg) -> bool:
        """Take one message of the consumer; False to create it again."""
        headers = msg.headers or {}
        if headers.get("Status") == "100":
            if msg.reply:  # flow control request
                await self._store.nc.publish(msg.reply)
            stalled = headers.get("Nats-Consumer-Stalled")
            if stalled:
                await self._store.nc.publish(stalled)
            last = headers.get("Nats-Last-Stream")
            return not (last and int(last) > self._view.head)  # missed messages
        if not msg.reply:
            return True
        meta = msg.metadata
        seq = int(meta.sequence.stream)
        head = self._view.head
        if seq <= head:
            return True
        if seq > head + 1:
            await self._check_epoch()
            if seq > self._view.head + 1:  # the stream has what we missed: start over
                return False
        now = anyio.current_time()
        event = self._acked.pop(seq, None)
        if event is None:
            event = self._event(seq, msg.data, meta.timestamp.timestamp(), now)
        self._add([event])
        return True
