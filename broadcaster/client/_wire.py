"""Conversion between the client's Python values and broadcaster.v1 wire messages.

Publish requests are encoded by hand (protobuf wire format, canonical field order) so a
batch costs one ``bytes.join`` and no message objects; responses are parsed by the
protobuf runtime (upb, in C) and turned into the client's dataclasses.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from google.protobuf import any_pb2
from google.protobuf.message import Message

from .._proto import timestamp_body, varint
from ..v1 import broadcaster_pb2 as pb
from ._types import AvailabilityNotice, DropNotice, Ended, Event, ResyncNotice

__all__ = [
    "EventEncoder",
    "decode_availability",
    "decode_drop",
    "decode_ended",
    "decode_event",
    "decode_resync",
    "encode_batch",
    "payload_of",
    "timestamp_ns_of",
]

Payload = bytes | bytearray | memoryview | Message


def _len_field(tag: int, data: bytes) -> bytes:
    return bytes((tag,)) + varint(len(data)) + data


def payload_of(payload: Payload, type_url: str | None) -> tuple[str, bytes]:
    """``(type_url, value)`` for a payload given as bytes, a protobuf ``Any`` or any other
    protobuf message (packed with containerd's bare type URL, its full name).

    :raises TypeError: for other payload types
    """
    if isinstance(payload, bytes | bytearray | memoryview):
        return type_url or "", bytes(payload)
    if isinstance(payload, any_pb2.Any):
        return type_url or payload.type_url, payload.value
    if isinstance(payload, Message):
        return type_url or payload.DESCRIPTOR.full_name, payload.SerializeToString()
    raise TypeError(f"payload: expected bytes or a protobuf message, not {type(payload)!r}")


def timestamp_ns_of(timestamp: datetime | int | float | None) -> int | None:
    """Nanoseconds since the Unix epoch for a datetime, int (ns) or float (seconds)."""
    if timestamp is None:
        return None
    if isinstance(timestamp, datetime):
        return round(timestamp.timestamp() * 1_000_000) * 1000
    if isinstance(timestamp, float):
        return round(timestamp * 1e9)
    return int(timestamp)


class EventEncoder:
    """Encodes ``broadcaster.v1.PublishRequest`` messages, caching the repeated parts
    (namespace, topic and type_url fields) of one publisher's events."""

    __slots__ = ("_cache",)

    def __init__(self) -> None:
        self._cache: dict[tuple[int, str], bytes] = {}

    def _cached(self, tag: int, text: str) -> bytes:
        key = (tag, text)
        enc = self._cache.get(key)
        if enc is None:
            enc = _len_field(tag, text.encode())
            if len(self._cache) < 4096:
                self._cache[key] = enc
        return enc

    def encode(
        self,
        namespace: str,
        topic: str,
        type_url: str,
        value: bytes,
        labels: Mapping[str, str] | None = None,
        timestamp_ns: int | None = None,
        event_id: str | None = None,
    ) -> bytes:
        """One serialized PublishRequest."""
        any_ = (self._cached(0x0A, type_url) if type_url else b"") + (
            b"\x12" + varint(len(value)) + value if value else b""
        )
        parts = [self._cached(0x0A, namespace), self._cached(0x12, topic),
                 b"\x1a" + varint(len(any_)) + any_]
        if labels:
            for key, val in labels.items():
                entry = _len_field(0x0A, key.encode()) + _len_field(0x12, val.encode())
                parts.append(b"\x22" + varint(len(entry)) + entry)
        if timestamp_ns is not None:
            ts = timestamp_body(timestamp_ns)  # seconds before 1970: 64-bit two's complement
            parts.append(b"\x2a" + varint(len(ts)) + ts)
        if event_id:
            parts.append(_len_field(0x32, event_id.encode()))
        return b"".join(parts)


def encode_batch(batch_id: int, events: list[bytes]) -> bytes:
    """A serialized ``PublishStreamRequest`` of already encoded PublishRequests."""
    parts = [b"\x08" + varint(batch_id)] if batch_id else []
    for ev in events:
        parts.append(b"\x12" + varint(len(ev)) + ev)
    return b"".join(parts)


def decode_event(ev: pb.Event) -> Event:
    """The client Event of a ``broadcaster.v1.Event``."""
    ts = ev.timestamp
    any_ = ev.payload
    labels = ev.labels
    return Event(
        ev.namespace, ev.topic, ev.sequence, any_.type_url, any_.value,
        ts.seconds * 1_000_000_000 + ts.nanos, dict(labels) if labels else {},
    )


def decode_drop(msg: pb.DropNotice) -> DropNotice:
    return DropNotice(msg.namespace, msg.count, msg.first_sequence, msg.last_sequence,
                      msg.reason)


def decode_resync(msg: pb.ResyncNotice) -> ResyncNotice:
    return ResyncNotice(msg.namespace, msg.requested_since, msg.oldest_available, msg.reason,
                        msg.epoch)


def decode_availability(msg: pb.AvailabilityNotice) -> AvailabilityNotice:
    return AvailabilityNotice(msg.namespace, msg.available, msg.reason)


def decode_ended(msg: pb.SubscriptionEnded) -> Ended:
    return Ended(msg.reason, msg.message)
