"""containerd's ``Envelope`` of a core event, serialized once per event for every
containerd Subscribe stream (pure: no I/O)."""

from __future__ import annotations

from collections.abc import Callable

from .. import Event
from .._proto import MAX_SECONDS, MIN_SECONDS
from .._typeurl import containerd_type_url
from ..containerd.services.events.v1 import events_pb2
from ._event_cache import EncodedCache

__all__ = ["EnvelopeEncoder", "envelope_bytes"]

_UNSENDABLE = b""  # kept for an event that cannot be sent, so that it is reported once


def envelope_bytes(event: Event) -> bytes | None:
    """The serialized Envelope of *event*, or None if its timestamp is outside Go's
    range (a Go client would fail to decode the whole stream). The type URL is in the
    bare form containerd clients decode (``containerd.events.TaskExit``)."""
    seconds, nanos = divmod(event.timestamp_ns, 1_000_000_000)
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        return None
    env = events_pb2.Envelope(namespace=event.namespace, topic=event.topic)
    ts = env.timestamp
    ts.seconds = seconds
    ts.nanos = nanos
    if event.type_url or event.payload:
        any_ = env.event
        any_.type_url = containerd_type_url(event.type_url)
        any_.value = bytes(event.payload)
    return env.SerializeToString()


class EnvelopeEncoder:
    """Envelopes of events, each built once and kept in :attr:`cache` while its event
    lives (one per server, shared by the containerd streams).

    :param on_cache: told each event and what keeping its envelope costs (the server
        passes ``Broadcaster.account_cached``)
    :param on_unsendable: told each event that cannot be sent, once while it lives
    """

    __slots__ = ("_on_unsendable", "cache")

    def __init__(self, on_cache: Callable[[Event, int], None] | None = None,
                 on_unsendable: Callable[[Event], None] = lambda event: None) -> None:
        #: the envelope of every event encoded and still alive
        self.cache = EncodedCache(on_cache)
        self._on_unsendable = on_unsendable

    def envelope(self, event: Event) -> bytes | None:
        """The serialized Envelope of *event*, or None if it cannot be sent."""
        data = self.cache.get(event)
        if data is None:
            data = envelope_bytes(event)
            if data is None:
                self._on_unsendable(event)
                data = _UNSENDABLE
            self.cache.put(event, data)
        return data or None
