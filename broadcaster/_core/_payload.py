"""The fields of event payloads, for ``event.<field>`` selectors.

The core cannot read a protobuf payload (it imports no protobuf); it reads payloads
through a *payload-fields resolver* passed in by configuration
(:attr:`HubConfig.payload_fields`): given an event's type URL and payload, the resolver
returns a :data:`FieldLookup` for it, or None when it does not know the type or the
payload does not decode. A field lookup answers a field path the way containerd's
generated ``Field`` methods do: ``(value, present)``.

JSON payloads (type URL ``application/json`` or ``...+json``) are read here, with the
standard library: :func:`json_fields`.

Decoding happens when a filter first asks for a field of an event, never when it is
published, and once per event for every subscription: :class:`FieldCache` keeps the
lookups of the most recent events (bounded in events and payload bytes).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Sequence

from ._types import Event

__all__ = ["FieldCache", "FieldLookup", "PayloadFields", "is_json_type", "json_fields"]

#: A decoded payload's fields: ``lookup(path)`` returns ``(value, present)``, as
#: containerd's ``Field(fieldpath []string) (string, bool)``.
FieldLookup = Callable[[Sequence[str]], tuple[str, bool]]

#: ``resolver(type_url, payload)``: the payload's fields, or None for a type it does not
#: know or a payload that does not decode. May raise; that counts as not decoding.
PayloadFields = Callable[[str, bytes], "FieldLookup | None"]

_ABSENT = ("", False)
_ENTRY_OVERHEAD = 256  # bytes a cached lookup costs beyond its payload (estimate)


def is_json_type(type_url: str) -> bool:
    """True for ``application/json`` and ``type/subtype+json`` (parameters ignored)."""
    media = type_url.partition(";")[0].strip().lower()
    return media == "application/json" or ("/" in media and media.endswith("+json"))


def _render(node: object) -> tuple[str, bool]:
    if isinstance(node, str):
        return node, True
    if isinstance(node, bool):
        return ("true" if node else "false"), True
    if isinstance(node, int | float):
        return json.dumps(node), True
    return _ABSENT  # null, objects and arrays have no value of their own


def _json_lookup(root: dict[str, object]) -> FieldLookup:
    def lookup(path: Sequence[str]) -> tuple[str, bool]:
        if not path:
            return _ABSENT
        node: object = root
        i, end = 0, len(path)
        while i < end:
            key = path[i]
            if isinstance(node, dict):
                if key in node:
                    node = node[key]
                elif i + 1 < end and (joined := ".".join(path[i:])) in node:
                    node, i = node[joined], end  # labels.io.k8s.pod: one dotted key
                    break
                else:
                    return _ABSENT
            elif isinstance(node, list) and key.isdigit() and key.isascii():
                index = int(key)
                if index >= len(node):
                    return _ABSENT
                node = node[index]
            else:
                return _ABSENT
            i += 1
        return _render(node)

    return lookup


def json_fields(type_url: str, payload: bytes) -> FieldLookup | None:
    """The fields of a JSON payload (None unless *type_url* is a JSON media type and the
    payload is a JSON object).

    A path names object members (an array element by its decimal index); when a member
    is not found, the rest of the path joined with ``.`` is tried as one key, as
    containerd does for ``labels``. Strings are their own value, ``true``/``false`` and
    numbers their JSON text; a member holding ``null``, an object or an array is absent.
    """
    if not is_json_type(type_url):
        return None
    try:
        root = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    return _json_lookup(root) if isinstance(root, dict) else None


class FieldCache:
    """The field lookups of recent events, shared by every filter of a hub, so that a
    payload is decoded once however many subscriptions select on it.

    Bounded by *max_events* and by *max_bytes* of payload (oldest decoded first out);
    payloads over *max_payload* bytes are not decoded at all (they have no fields).

    :ivar decoded: payloads decoded so far
    :ivar failed: payloads the resolver raised on (they have no fields)
    """

    __slots__ = ("_bytes", "_cache", "_order", "_resolver", "decoded", "failed",
                 "max_bytes", "max_events", "max_payload")

    def __init__(self, resolver: PayloadFields, *, max_events: int, max_bytes: int,
                 max_payload: int) -> None:
        self._resolver = resolver
        self._cache: dict[Event, FieldLookup | None] = {}
        self._order: deque[Event] = deque()
        self._bytes = 0
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.max_payload = max_payload
        self.decoded = 0
        self.failed = 0

    def __len__(self) -> int:
        return len(self._cache)

    @property
    def bytes(self) -> int:
        """The payload bytes (plus a per-entry estimate) the cache holds."""
        return self._bytes

    def fields(self, event: Event) -> FieldLookup | None:
        """The fields of *event*'s payload, or None if it has none that can be read."""
        cache = self._cache
        if event in cache:
            return cache[event]
        payload = event.payload
        size = len(payload)
        if size > self.max_payload or not (size or event.type_url):
            return None  # not worth a cache entry: this test is as cheap as a lookup
        lookup: FieldLookup | None = None
        self.decoded += 1
        try:
            lookup = self._resolver(event.type_url, bytes(payload))
        except Exception:  # a resolver's bug must not break delivery
            self.failed += 1
        cost = size + _ENTRY_OVERHEAD
        order = self._order
        while order and (len(order) >= self.max_events or self._bytes + cost > self.max_bytes):
            old = order.popleft()
            del cache[old]
            self._bytes -= len(old.payload) + _ENTRY_OVERHEAD
        if cost <= self.max_bytes:
            cache[event] = lookup
            order.append(event)
            self._bytes += cost
        return lookup
