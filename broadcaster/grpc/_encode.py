"""Wire encoding of the Subscribe hot path: events serialized once, batches spliced.

See the "ZERO-COPY FAN-OUT LAYOUT" note in ``protos/broadcaster/v1/broadcaster.proto``::

    E = Event.SerializeToString()                  (0x12 varint(len(E)) E kept by
                                                    the EventEncoder while the event lives)
    D = (0x0A varint(len(id)) id)* 0x12 varint(len(E)) E
    B = (0x0A varint(len(D)) D)*
    R = 0x0A varint(len(B)) B                      (a SubscribeResponse)

Everything here is pure (no I/O), so it is tested byte for byte against protobuf.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from .. import AvailabilityNotice, DropNotice, Ended, Event, ResyncNotice
from .._proto import timestamp_seconds, varint
from ..v1 import broadcaster_pb2 as pb
from ._event_cache import EncodedCache

__all__ = [
    "EventEncoder",
    "encode_add_result",
    "encode_availability_notice",
    "encode_batches",
    "encode_drop_notice",
    "encode_ended",
    "encode_event",
    "encode_heartbeat",
    "encode_item_notice",
    "encode_removed",
    "encode_resync_notice",
    "event_field",
    "id_prefix",
    "pack_batches",
    "pack_run",
    "single_epoch",
]

def _text(tag: bytes, text: str) -> bytes:
    raw = text.encode()
    return tag + varint(len(raw)) + raw if raw else b""


class EventEncoder:
    """Serializes core events as ``Delivery.event`` fields (``0x12 varint(len(E)) E``,
    ready to splice after the subscription ids), each event once: the field is kept in
    :attr:`cache` while the event lives. Remembers the encoded namespace, topic and
    type_url of recent events (at most *max_heads*) and the varint of the current second.
    One per server; not thread-safe.

    :param max_heads: bound of the (namespace, topic, type_url) cache
    :param on_cache: told each event and what keeping its field costs (the server passes
        ``Broadcaster.account_cached``)
    """

    __slots__ = ("_heads", "_max_heads", "_second", "_second_bytes", "cache")

    def __init__(self, max_heads: int = 4096,
                 on_cache: Callable[[Event, int], None] | None = None) -> None:
        #: the field of every event encoded and still alive
        self.cache = EncodedCache(on_cache)
        self._heads: dict[tuple[str, str, str], tuple[bytes, bytes]] = {}
        self._max_heads = max_heads
        self._second: int | None = None  # any int is a valid second (before 1970: < 0)
        self._second_bytes = b""

    def field(self, event: Event) -> bytes:
        """``0x12 varint(len(E)) E``, computed once per event."""
        field = self.cache.get(event)
        return self._new_field(event) if field is None else field

    def fields(self, events: Sequence[Event]) -> list[bytes]:
        """:meth:`field` of each event, in order (those already encoded in one C loop)."""
        fields = self.cache.get_many(events)
        if all(fields):  # every one cached (a field is never empty)
            return fields  # type: ignore[return-value]
        new = self._new_field
        return [f if f is not None else new(e) for f, e in zip(fields, events, strict=True)]

    def _new_field(self, event: Event) -> bytes:
        data = self.serialize(event)
        field = b"\x12" + varint(len(data)) + data
        self.cache.put(event, field)
        return field

    def serialize(self, event: Event) -> bytes:
        """``broadcaster.v1.Event`` bytes, spliced by hand in field-number order: byte for
        byte what ``SerializeToString(deterministic=True)`` gives (labels, rare on the hot
        path, are left to protobuf for its map-entry order)."""
        key = (event.namespace, event.topic, event.type_url)
        head = self._heads.get(key)
        if head is None:
            if len(self._heads) >= self._max_heads:
                self._heads.clear()
            head = self._heads[key] = (
                _text(b"\x0a", key[0]) + _text(b"\x12", key[1]), _text(b"\x0a", key[2]))
        names, type_url = head
        payload = event.payload
        if payload:
            size = varint(len(payload))
            parts = [names, b"\x1a", varint(len(type_url) + 1 + len(size) + len(payload)),
                     type_url, b"\x12", size, bytes(payload)]
        elif type_url:
            parts = [names, b"\x1a", varint(len(type_url)), type_url]
        else:
            parts = [names]
        if event.labels:
            parts.append(pb.Event(labels=event.labels).SerializeToString(deterministic=True))
        seconds, nanos = divmod(event.timestamp_ns, 1_000_000_000)
        if seconds != self._second:
            self._second = seconds
            self._second_bytes = timestamp_seconds(seconds)
        ts = self._second_bytes + (b"\x10" + varint(nanos) if nanos else b"")
        parts.append(b"\x2a" + varint(len(ts)) + ts)
        if event.sequence:
            parts.append(b"\x30" + varint(event.sequence))
        return b"".join(parts)


def event_field(event: Event, encoder: EventEncoder | None = None) -> bytes:
    """The ``Delivery.event`` field of *event* (``0x12 varint(len(E)) E``), by *encoder*
    (kept in its cache) or by a new one."""
    return (encoder or EventEncoder()).field(event)


def encode_event(event: Event, encoder: EventEncoder | None = None) -> bytes:
    """``broadcaster.v1.Event`` bytes of *event* (see :func:`event_field`)."""
    field = event_field(event, encoder)
    _, _, data = _split_len(field, 1)
    return data


def _split_len(data: bytes, pos: int) -> tuple[int, int, bytes]:
    length = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return length, pos, data[pos:pos + length]


def id_prefix(subscription_id: str) -> bytes:
    """The ``Delivery.subscription_ids`` entry for one id (cache it per subscription)."""
    raw = subscription_id.encode()
    return b"\x0a" + varint(len(raw)) + raw


def encode_batches(
    deliveries: Iterable[tuple[Event, Sequence[bytes]]],
    max_events: int,
    max_bytes: int,
    encoder: EventEncoder | None = None,
) -> list[bytes]:
    """Serialized ``SubscribeResponse{event_batch}`` messages for *deliveries*.

    :param deliveries: each event with the :func:`id_prefix` of every subscription of the
        stream it goes to, in delivery order
    :param max_events: most deliveries in one message
    :param max_bytes: a message is closed once its body reaches this size (one delivery
        larger than it still goes out alone)
    :param encoder: encodes the events (a new one when None)
    """
    field = (encoder or EventEncoder()).field
    return pack_batches(
        ((field(event), b"".join(prefixes)) for event, prefixes in deliveries),
        max_events, max_bytes)


def pack_batches(
    deliveries: Iterable[tuple[bytes, bytes]], max_events: int, max_bytes: int
) -> list[bytes]:
    """As :func:`encode_batches`, from already encoded parts: each delivery is the event's
    :func:`event_field` and the concatenated :func:`id_prefix` of its subscriptions."""
    out: list[bytes] = []
    parts: list[bytes] = []
    append = parts.append
    size = count = 0
    for field, ids in deliveries:
        head = b"\x0a" + varint(len(ids) + len(field)) + ids
        n = len(head) + len(field)
        if count and (count >= max_events or size + n > max_bytes):
            out.append(_wrap(parts, size))
            parts = []
            append = parts.append
            size = count = 0
        append(head)
        append(field)
        size += n
        count += 1
    if count:
        out.append(_wrap(parts, size))
    return out


#: Runs at least this long are spliced with C loops when they fit one message.
_SPLICE_RUN = 8


def pack_run(
    events: Sequence[Event], ids: bytes, max_events: int, max_bytes: int,
    encoder: EventEncoder | None = None,
) -> list[bytes]:
    """As :func:`pack_batches` for *events* that all go to the same subscriptions (*ids*,
    their concatenated :func:`id_prefix`): the common case of a stream whose
    subscriptions read the same events. A run of one event, and a longer run that fits
    one message (the usual cases), are spliced without a Python loop per event."""
    encoder = encoder or EventEncoder()
    if len(events) == 1:  # at low rates, every run
        field = encoder.field(events[0])
        body = b"\x0a" + varint(len(ids) + len(field)) + ids + field
        return [b"\x0a" + varint(len(body)) + body]
    fields = encoder.fields(events)
    count = len(fields)
    if count >= _SPLICE_RUN and count <= max_events:
        lens = list(map(len, fields))
        by_length = {flen: b"\x0a" + varint(len(ids) + flen) + ids for flen in set(lens)}
        heads = list(map(by_length.__getitem__, lens))
        size = sum(lens) + sum(map(len, heads))
        if size <= max_bytes:
            parts = [b""] * (2 * count + 1)
            parts[0] = b"\x0a" + varint(size)
            parts[1::2] = heads
            parts[2::2] = fields
            return [b"".join(parts)]
    heads_of: dict[int, bytes] = {}
    out: list[bytes] = []
    parts = []
    size = count = 0
    for field in fields:
        flen = len(field)
        head = heads_of.get(flen)
        if head is None:
            head = heads_of[flen] = b"\x0a" + varint(len(ids) + flen) + ids
        n = len(head) + flen
        if count and (count >= max_events or size + n > max_bytes):
            out.append(_wrap(parts, size))
            parts = []
            size = count = 0
        parts.append(head)
        parts.append(field)
        size += n
        count += 1
    if count:
        out.append(_wrap(parts, size))
    return out


def _wrap(parts: list[bytes], size: int) -> bytes:
    parts.insert(0, b"\x0a" + varint(size))
    return b"".join(parts)


def single_epoch(epoch: str, epochs: Iterable[str]) -> str:
    """The single ``epoch`` field of a message (kept beside the per-namespace ``epochs``
    maps): *epoch*, the hub's, when every namespace shares it; else the one value all of
    *epochs* share (under jetstream each namespace has its own), else ``""``."""
    if epoch:
        return epoch
    distinct = set(epochs)
    return distinct.pop() if len(distinct) == 1 else ""


def encode_heartbeat(heartbeat_id: int, latest: dict[str, int], epoch: str,
                     epochs: Mapping[str, str] | None = None) -> bytes:
    """A serialized ``SubscribeResponse{heartbeat}``."""
    message = pb.SubscribeResponse(
        heartbeat=pb.Heartbeat(heartbeat_id=heartbeat_id, latest_sequences=latest, epoch=epoch,
                               epochs=epochs)
    )
    return message.SerializeToString()


def encode_availability_notice(subscription_id: str, notice: AvailabilityNotice) -> bytes:
    """A serialized ``SubscribeResponse{availability_notice}``."""
    return pb.SubscribeResponse(
        availability_notice=pb.AvailabilityNotice(
            subscription_id=subscription_id, namespace=notice.namespace,
            available=notice.available, reason=notice.reason,
        )
    ).SerializeToString()


def encode_drop_notice(subscription_id: str, notice: DropNotice) -> bytes:
    """A serialized ``SubscribeResponse{drop_notice}``."""
    return pb.SubscribeResponse(
        drop_notice=pb.DropNotice(
            subscription_id=subscription_id,
            namespace=notice.namespace,
            count=notice.count,
            first_sequence=notice.first_sequence,
            last_sequence=notice.last_sequence,
            reason=str(notice.reason),
        )
    ).SerializeToString()


def encode_resync_notice(subscription_id: str, notice: ResyncNotice) -> bytes:
    """A serialized ``SubscribeResponse{resync_notice}``."""
    return pb.SubscribeResponse(
        resync_notice=pb.ResyncNotice(
            subscription_id=subscription_id,
            namespace=notice.namespace,
            requested_since=notice.requested_since,
            oldest_available=notice.oldest_available,
            reason=str(notice.reason),
            epoch=notice.epoch,
        )
    ).SerializeToString()


def encode_ended(subscription_id: str, ended: Ended) -> bytes:
    """A serialized ``SubscribeResponse{subscription_ended}`` (reason: the core's
    :class:`EndReason` value, e.g. ``hub_closed``, ``slow_consumer``)."""
    return pb.SubscribeResponse(
        subscription_ended=pb.SubscriptionEnded(
            subscription_id=subscription_id, reason=str(ended.reason), message=ended.message
        )
    ).SerializeToString()


def encode_add_result(
    subscription_id: str,
    code: int = 0,
    message: str = "",
    *,
    start_sequences: Mapping[str, int] | None = None,
    epoch: str = "",
    epochs: Mapping[str, str] | None = None,
) -> bytes:
    """A serialized ``SubscribeResponse{add_result}``: ok when *code* is 0, then with the
    subscription's start positions and epochs."""
    result = pb.AddResult(subscription_id=subscription_id, ok=code == 0, epoch=epoch)
    if start_sequences:
        result.start_sequences.update(start_sequences)
    if epochs:
        result.epochs.update(epochs)
    if code:
        result.error.code = code
        result.error.message = message
    return pb.SubscribeResponse(add_result=result).SerializeToString()


def encode_removed(subscription_id: str) -> bytes:
    """A serialized ``SubscribeResponse{removed}``."""
    return pb.SubscribeResponse(
        removed=pb.Removed(subscription_id=subscription_id)
    ).SerializeToString()


def encode_item_notice(subscription_id: str, item: object) -> bytes | None:
    """The message of a non-event, non-heartbeat item, or None for other items."""
    if isinstance(item, DropNotice):
        return encode_drop_notice(subscription_id, item)
    if isinstance(item, ResyncNotice):
        return encode_resync_notice(subscription_id, item)
    if isinstance(item, Ended):
        return encode_ended(subscription_id, item)
    if isinstance(item, AvailabilityNotice):
        return encode_availability_notice(subscription_id, item)
    return None

