"""Wire encoding of the Subscribe hot path: events serialized once, batches spliced.

See the "ZERO-COPY FAN-OUT LAYOUT" note in ``protos/broadcaster/v1/broadcaster.proto``::

    E = Event.SerializeToString()                  (cached in core Event.encoded)
    D = (0x0A varint(len(id)) id)* 0x12 varint(len(E)) E
    B = (0x0A varint(len(D)) D)*
    R = 0x0A varint(len(B)) B                      (a SubscribeResponse)

Everything here is pure (no I/O), so it is tested byte for byte against protobuf.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from google.protobuf import any_pb2, timestamp_pb2

from .._core._types import DropNotice, Ended, Event, ResyncNotice
from ..v1 import broadcaster_pb2 as pb

__all__ = [
    "encode_add_result",
    "encode_batches",
    "encode_drop_notice",
    "encode_ended",
    "encode_event",
    "encode_heartbeat",
    "encode_item_notice",
    "encode_removed",
    "encode_resync_notice",
    "id_prefix",
    "varint",
]

#: Tag prefix of an encoded broadcaster.v1.Event stored in ``Event.encoded``. The
#: containerd edge may cache another encoding in the same slot, so the v1 bytes are kept
#: behind this marker byte (never sent): ``b"\x01" + E``.
_MARK = 1


def varint(value: int) -> bytes:
    """The protobuf base-128 varint of a non-negative *value*."""
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_event(event: Event) -> bytes:
    """``broadcaster.v1.Event`` bytes of *event*, computed once and cached on it."""
    cached = event.encoded
    if cached is not None and cached[:1] == b"\x01":
        return cached[1:]
    seconds, nanos = divmod(event.timestamp_ns, 1_000_000_000)
    message = pb.Event(
        namespace=event.namespace,
        topic=event.topic,
        labels=event.labels,
        timestamp=timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos),
        sequence=event.sequence,
    )
    if event.payload or event.type_url:
        message.payload.CopyFrom(any_pb2.Any(type_url=event.type_url, value=bytes(event.payload)))
    data = message.SerializeToString(deterministic=True)
    if cached is None:
        event.encoded = b"\x01" + data
    return data


def id_prefix(subscription_id: str) -> bytes:
    """The ``Delivery.subscription_ids`` entry for one id (cache it per subscription)."""
    raw = subscription_id.encode()
    return b"\x0a" + varint(len(raw)) + raw


def encode_batches(
    deliveries: Iterable[tuple[Event, Sequence[bytes]]],
    max_events: int,
    max_bytes: int,
) -> list[bytes]:
    """Serialized ``SubscribeResponse{event_batch}`` messages for *deliveries*.

    :param deliveries: each event with the :func:`id_prefix` of every subscription of the
        stream it goes to, in delivery order
    :param max_events: most deliveries in one message
    :param max_bytes: a message is closed once its body reaches this size (one delivery
        larger than it still goes out alone)
    """
    out: list[bytes] = []
    parts: list[bytes] = []
    size = count = 0
    for event, prefixes in deliveries:
        data = encode_event(event)
        ids = prefixes[0] if len(prefixes) == 1 else b"".join(prefixes)
        head = ids + b"\x12" + varint(len(data))
        dlen = len(head) + len(data)
        outer = b"\x0a" + varint(dlen) + head
        if count and (count >= max_events or size + len(outer) + len(data) > max_bytes):
            out.append(_wrap(parts, size))
            parts, size, count = [], 0, 0
        parts.append(outer)
        parts.append(data)
        size += len(outer) + len(data)
        count += 1
    if count:
        out.append(_wrap(parts, size))
    return out


def _wrap(parts: list[bytes], size: int) -> bytes:
    parts.insert(0, b"\x0a" + varint(size))
    return b"".join(parts)


def encode_heartbeat(heartbeat_id: int, latest: dict[str, int], epoch: str) -> bytes:
    """A serialized ``SubscribeResponse{heartbeat}``."""
    message = pb.SubscribeResponse(
        heartbeat=pb.Heartbeat(heartbeat_id=heartbeat_id, latest_sequences=latest, epoch=epoch)
    )
    return message.SerializeToString()


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
) -> bytes:
    """A serialized ``SubscribeResponse{add_result}``: ok when *code* is 0, then with the
    subscription's start positions and the server's epoch."""
    result = pb.AddResult(subscription_id=subscription_id, ok=code == 0, epoch=epoch)
    if start_sequences:
        result.start_sequences.update(start_sequences)
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
    return None

