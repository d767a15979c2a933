"""The range of ``google.protobuf.Timestamp``: 0001-01-01T00:00:00Z to
9999-12-31T23:59:59.999999999Z, nanos in [0, 999,999,999].

An event outside it cannot be delivered to a containerd client (Go's ``ctr events``
fails to decode it, so the server would have to skip it silently), so both APIs refuse
it at publish.
"""

from __future__ import annotations

from .._core._errors import InvalidArgument

__all__ = ["MAX_SECONDS", "MIN_SECONDS", "check_timestamp"]

#: 0001-01-01T00:00:00Z in seconds since the Unix epoch (Go's zero time)
MIN_SECONDS = -62_135_596_800
#: 9999-12-31T23:59:59Z in seconds since the Unix epoch
MAX_SECONDS = 253_402_300_799

_NANOS = 1_000_000_000


def check_timestamp(seconds: int, nanos: int, field: str) -> int:
    """Nanoseconds since the Unix epoch of a Timestamp's *seconds* and *nanos*.

    :raises InvalidArgument: naming *field* if the time is outside protobuf's range
    """
    if not 0 <= nanos < _NANOS:
        raise InvalidArgument(field, f"nanos {nanos} is outside 0 to 999999999")
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise InvalidArgument(
            field, f"seconds {seconds} is outside protobuf's Timestamp range "
            "(0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z)")
    return seconds * _NANOS + nanos
