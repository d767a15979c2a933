"""The queue of one Subscribe stream and the batching of its messages.

Pure: no I/O and no grpc. The stream's pump puts what it read from each subscription,
its reader puts the control messages it answers with (``AddResult``, ``Removed``), and
the writer takes everything queued as the messages to send, in order::

    put(recipient, items)      items one subscription gave (events and notices)
    put_message(bytes)         a serialized SubscribeResponse, sent as it is
    take() -> [bytes]          EventBatch, Heartbeat, notices and control messages

Subscriptions of a stream mostly read the very same events (same namespaces, filters
that match alike), so runs of events are grouped across subscriptions: a chunk equal to
one already taken (the same ``Event`` objects, compared in C) only adds its
subscription's id to that run, and each event goes out once with the ids of every
subscription it matched. A delivery then costs per *event*, not per event and
subscription.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

from .. import Ended, Event, Heartbeat
from ._encode import (
    EventEncoder,
    encode_heartbeat,
    encode_item_notice,
    id_prefix,
    pack_batches,
    pack_run,
    single_epoch,
)
from ._heartbeat_share import HeartbeatShare

__all__ = ["Drain", "Recipient"]


class Recipient:
    """One subscription of a stream, as the drain sees it.

    :param subscription_id: the id the client gave it
    :ivar closed: nothing more is sent for it (removed, or its ``Ended`` was taken)
    """

    __slots__ = ("closed", "id", "prefix")

    def __init__(self, subscription_id: str) -> None:
        self.id = subscription_id
        self.prefix = id_prefix(subscription_id)  # its Delivery.subscription_ids entry
        self.closed = False


#: Queue entries: (recipient, items) from the pump, or (None, message) from the reader.
_Chunk = tuple[Recipient, Sequence[object]] | tuple[None, bytes]


def _no_one_ended(recipient: Recipient) -> None:
    pass


class Drain:
    """The queue of one stream, turned into its messages.

    It keeps no reference to the stream (what it needs of it is given to :meth:`take`),
    so that a closed stream is freed by reference counting.

    :param encoder: serializes events (one per server: it caches each event's bytes)
    :param max_events: deliveries in one EventBatch message
    :param max_bytes: body size after which an EventBatch message is closed
    :param heartbeats: the server's heartbeat budget: a heartbeat goes out only if it is
        due for :attr:`heartbeat_slot` (None: every one)
    """

    __slots__ = ("_encoder", "_heartbeats", "_last_heartbeat", "_max_bytes", "_max_events",
                 "_queue", "heartbeat_slot", "queued_items")

    def __init__(self, encoder: EventEncoder, max_events: int, max_bytes: int,
                 heartbeats: HeartbeatShare | None = None) -> None:
        self._encoder = encoder
        self._heartbeats = heartbeats
        #: this stream's slot in *heartbeats*
        self.heartbeat_slot = 0
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._queue: deque[_Chunk] = deque()
        self._last_heartbeat = 0
        #: items put and not taken yet (the pump stops reading above a high-water mark)
        self.queued_items = 0

    @property
    def last_heartbeat(self) -> int:
        """The id of the newest Heartbeat message :meth:`take` returned (0: none)."""
        return self._last_heartbeat

    def __bool__(self) -> bool:
        """Whether anything is queued."""
        return bool(self._queue)

    def put(self, recipient: Recipient, items: Sequence[object]) -> None:
        """Queue what *recipient*'s subscription gave (a ``receive_batch`` result)."""
        self._queue.append((recipient, items))
        self.queued_items += len(items)

    def put_message(self, message: bytes) -> None:
        """Queue a serialized message, to send after what is queued before it."""
        self._queue.append((None, message))

    def take(self, latest: Callable[[], tuple[dict[str, int], dict[str, str]]],
             on_ended: Callable[[Recipient], None] = _no_one_ended) -> list[bytes]:
        """Everything queued, as messages in order.

        Events of consecutive chunks go out in EventBatch messages (each event once,
        with the ids of every subscription it goes to; sorted by namespace and sequence
        when several subscriptions gave them). Anything else closes the batch being
        built and goes out in its place: a notice for its subscription, a message as it
        was put. A Heartbeat goes out once per heartbeat for the whole stream, right
        after the batch being built (which holds every event given before it), so that
        a heartbeat read with an event does not split the event's deliveries. Nothing is
        sent for a recipient once it is closed.

        :param latest: the newest sequence and the epoch of each namespace the stream's
            subscriptions read, for a Heartbeat (one per stream for all its
            subscriptions)
        :param on_ended: called with each recipient whose ``Ended`` was taken (after it
            is marked closed)
        """
        queue, encoder = self._queue, self._encoder
        max_events, max_bytes = self._max_events, self._max_bytes
        share = self._heartbeats
        if len(queue) == 1:  # the common case: one subscription gave only events
            recipient, payload = queue[0]
            if recipient is not None and not recipient.closed and payload and all(
                    type(item) is Event for item in payload):
                queue.clear()
                self.queued_items -= len(payload)
                return pack_run(payload, recipient.prefix, max_events,  # type: ignore[arg-type]
                                max_bytes, encoder)
        messages: list[bytes] = []
        runs: dict[tuple[int, ...], tuple[list[Event], list[bytes]]] = {}
        contributors: set[Recipient] = set()
        # a new heartbeat: sent after the batch being built (the events before it in
        # every subscription that gave it are in that batch), so that the heartbeat of
        # one subscription does not split the deliveries of an event to several
        heartbeat: Heartbeat | None = None

        def add_run(recipient: Recipient, events: list[Event]) -> None:
            key: tuple[int, ...] = (id(events[0]), id(events[-1]), len(events))
            run = runs.get(key)
            if run is not None and run[0] == events:
                run[1].append(recipient.prefix)
            else:
                if run is not None:  # same ends and length, other events (filters)
                    key = (*key, len(runs))
                runs[key] = (events, [recipient.prefix])
            contributors.add(recipient)

        def flush() -> None:
            nonlocal heartbeat
            if runs:
                pack()
            if heartbeat is not None:
                sequences, epochs = latest()
                messages.append(encode_heartbeat(
                    heartbeat.heartbeat_id, sequences,
                    single_epoch(heartbeat.epoch, epochs.values()), epochs))
                heartbeat = None

        def pack() -> None:
            if len(runs) == 1:
                [(events, prefixes)] = runs.values()
                messages.extend(pack_run(events, b"".join(prefixes), max_events, max_bytes,
                                         encoder))
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
                    max_events, max_bytes))
            runs.clear()
            contributors.clear()

        while queue:
            recipient, payload = queue.popleft()
            if recipient is None:
                flush()
                messages.append(payload)  # type: ignore[arg-type]
                continue
            items: Sequence[object] = payload
            self.queued_items -= len(items)
            if recipient.closed or not items:
                continue
            run = runs.get((id(items[0]), id(items[-1]), len(items)))
            if run is not None and run[0] == items:  # the common case: O(1) per chunk
                run[1].append(recipient.prefix)
                contributors.add(recipient)
                continue
            start = 0
            for i, item in enumerate(items):
                if type(item) is Event:
                    continue
                if i > start:
                    add_run(recipient, items[start:i])  # type: ignore[arg-type]
                start = i + 1
                if type(item) is Heartbeat:
                    if item.heartbeat_id > self._last_heartbeat and (
                            share is None or share.due(self.heartbeat_slot, item.heartbeat_id)):
                        self._last_heartbeat = item.heartbeat_id
                        if heartbeat is not None:  # an older one waits: it goes first
                            flush()
                        heartbeat = item
                else:
                    flush()
                    message = encode_item_notice(recipient.id, item)
                    if message is not None:
                        messages.append(message)
                    if type(item) is Ended:
                        recipient.closed = True
                        on_ended(recipient)
            if start == 0:
                add_run(recipient, items)  # type: ignore[arg-type]
            elif start < len(items):
                add_run(recipient, items[start:])  # type: ignore[arg-type]
        flush()
        return messages
