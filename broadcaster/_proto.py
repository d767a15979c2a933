"""Protobuf helpers shared by the server (``broadcaster/grpc/``) and the client
(``broadcaster/client/``): the hand-written wire pieces (varints, ``int64`` fields,
``google.protobuf.Timestamp`` bodies and its range) and the conversion of overflow
policies between ``broadcaster.v1.OverflowPolicy`` and the core's :class:`Policy`, one
function in each direction.

Pure functions: no I/O and no grpc (the client must not import server code, and neither
needs the other's). Everything here is tested byte for byte against protobuf's own
serialization (``tests/test_proto.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

from google.protobuf import duration_pb2

from ._core._config import HubConfig
from ._core._errors import InvalidArgument, InvalidPolicy
from ._core._policy import Policy, PolicyKind
from .v1 import broadcaster_pb2 as pb

__all__ = [
    "MAX_NS",
    "MAX_SECONDS",
    "MIN_NS",
    "MIN_SECONDS",
    "check_timestamp",
    "int64",
    "policy_from_proto",
    "policy_to_proto",
    "timestamp_body",
    "timestamp_seconds",
    "varint",
]

# -- varints -------------------------------------------------------------------------

_MASK64 = (1 << 64) - 1

#: varints of 0 .. 16383 (one and two bytes), looked up rather than computed
_SMALL = tuple(bytes((i,)) for i in range(0x80)) + tuple(
    bytes(((i & 0x7F) | 0x80, i >> 7)) for i in range(0x80, 1 << 14))


def _varint(value: int) -> bytes:
    if value < 1 << 28:
        if value < 1 << 21:
            return bytes(((value & 0x7F) | 0x80, (value >> 7 & 0x7F) | 0x80, value >> 14))
        return bytes(((value & 0x7F) | 0x80, (value >> 7 & 0x7F) | 0x80,
                      (value >> 14 & 0x7F) | 0x80, value >> 21))
    if value < 1 << 35:
        return bytes(((value & 0x7F) | 0x80, (value >> 7 & 0x7F) | 0x80,
                      (value >> 14 & 0x7F) | 0x80, (value >> 21 & 0x7F) | 0x80, value >> 28))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varint(value: int) -> bytes:
    """The protobuf base-128 varint of a non-negative *value* (an unsigned field)."""
    return _SMALL[value] if value < 16384 else _varint(value)


def int64(value: int) -> bytes:
    """The varint of an ``int64`` field: a negative *value* as its 64-bit two's
    complement (ten bytes), as protobuf encodes it; values are taken modulo 2**64, like
    a cast to a 64-bit integer."""
    if 0 <= value < 16384:
        return _SMALL[value]
    return _varint(value & _MASK64)


# -- google.protobuf.Timestamp ----------------------------------------------------------

#: 0001-01-01T00:00:00Z in seconds since the Unix epoch (Go's zero time)
MIN_SECONDS = -62_135_596_800
#: 9999-12-31T23:59:59Z in seconds since the Unix epoch
MAX_SECONDS = 253_402_300_799
_NANOS = 1_000_000_000
#: the range of a Timestamp in nanoseconds since the Unix epoch
MIN_NS = MIN_SECONDS * _NANOS
MAX_NS = MAX_SECONDS * _NANOS + _NANOS - 1


def check_timestamp(seconds: int, nanos: int, field: str) -> int:
    """Nanoseconds since the Unix epoch of a Timestamp's *seconds* and *nanos*.

    An event outside protobuf's range cannot be delivered to a containerd client (Go's
    ``ctr events`` fails to decode it), so both of the server's APIs refuse it.

    :raises InvalidArgument: naming *field* if the time is outside 0001-01-01T00:00:00Z
        to 9999-12-31T23:59:59.999999999Z or *nanos* outside [0, 999999999]
    """
    if not 0 <= nanos < _NANOS:
        raise InvalidArgument(field, f"nanos {nanos} is outside 0 to 999999999")
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise InvalidArgument(
            field, f"seconds {seconds} is outside protobuf's Timestamp range "
            "(0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z)")
    return seconds * _NANOS + nanos


def timestamp_seconds(seconds: int) -> bytes:
    """The ``seconds`` field of a Timestamp body (empty for 0; before 1970 negative)."""
    return b"\x08" + int64(seconds) if seconds else b""


def timestamp_body(timestamp_ns: int) -> bytes:
    """The body of the ``google.protobuf.Timestamp`` of *timestamp_ns* (nanoseconds since
    the Unix epoch), fields in number order and zero fields left out, as protobuf writes
    it."""
    seconds, nanos = divmod(timestamp_ns, _NANOS)
    return timestamp_seconds(seconds) + (b"\x10" + varint(nanos) if nanos else b"")


# -- overflow policies ---------------------------------------------------------------

_TO_PROTO = {
    PolicyKind.DROP_NEWEST: pb.OverflowPolicy.DROP_NEWEST,
    PolicyKind.DROP_OLDEST: pb.OverflowPolicy.DROP_OLDEST,
    PolicyKind.BLOCK: pb.OverflowPolicy.BLOCK,
    PolicyKind.RETRY: pb.OverflowPolicy.RETRY,
    PolicyKind.DISCONNECT: pb.OverflowPolicy.DISCONNECT,
}
_FROM_PROTO: dict[int, PolicyKind] = {int(v): k for k, v in _TO_PROTO.items()}

_DurationField = Literal["block_timeout", "initial_backoff", "max_backoff"]
_DURATIONS: tuple[_DurationField, ...] = ("block_timeout", "initial_backoff", "max_backoff")


def policy_to_proto(policy: Policy) -> pb.OverflowPolicy:
    """The ``OverflowPolicy`` message of a :class:`broadcaster.Policy` (the fields of its
    kind only)."""
    msg = pb.OverflowPolicy(
        kind=_TO_PROTO[policy.kind], max_events=policy.max_events, max_bytes=policy.max_bytes
    )
    if policy.kind is PolicyKind.BLOCK:
        msg.block_timeout.FromNanoseconds(round(policy.block_timeout * 1e9))
        msg.fallback = _TO_PROTO[policy.fallback]
    elif policy.kind is PolicyKind.RETRY:
        msg.initial_backoff.FromNanoseconds(round(policy.initial_backoff * 1e9))
        msg.max_backoff.FromNanoseconds(round(policy.max_backoff * 1e9))
        msg.multiplier = policy.multiplier
        msg.max_attempts = policy.max_attempts
        msg.jitter = policy.jitter
    return msg


def policy_from_proto(
    message: pb.OverflowPolicy, config: HubConfig, namespaces: Sequence[str] | None
) -> Policy:
    """The core policy of *message*; zero and unset fields take the default policy of the
    subscription's first namespace (or of ``default_namespace``).

    :raises InvalidPolicy: naming ``policy.<field>``
    """
    first = namespaces[0] if namespaces else None
    base = config.namespace(first).default_policy if first else \
        config.default_namespace.default_policy
    changes: dict[str, object] = {}
    kind = _kind(message.kind, "policy.kind")
    if kind is not None:
        changes["kind"] = kind
    fallback = _kind(message.fallback, "policy.fallback")
    if fallback is not None:
        changes["fallback"] = fallback
    if message.max_events:
        changes["max_events"] = message.max_events
    if message.max_bytes:
        changes["max_bytes"] = message.max_bytes
    for name in _DURATIONS:
        value = _seconds(message, name)
        if value is not None:
            changes[name] = value
    if message.multiplier:
        changes["multiplier"] = message.multiplier
    if message.max_attempts:
        changes["max_attempts"] = message.max_attempts
    if message.jitter:
        changes["jitter"] = message.jitter
    return dataclasses.replace(base, **changes).validated()  # type: ignore[arg-type]


def _kind(value: int, field: str) -> PolicyKind | None:
    if value == pb.OverflowPolicy.KIND_UNSPECIFIED:
        return None
    kind = _FROM_PROTO.get(value)
    if kind is None:
        raise InvalidPolicy(field, f"unknown kind {value}")
    return kind


def _seconds(message: pb.OverflowPolicy, name: _DurationField) -> float | None:
    if not message.HasField(name):
        return None
    duration: duration_pb2.Duration = getattr(message, name)
    value = duration.seconds + duration.nanos / 1e9
    if value <= 0:
        raise InvalidPolicy(f"policy.{name}", "must be positive")
    return value
