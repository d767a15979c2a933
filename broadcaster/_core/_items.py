"""What a publisher hands in, checked before anything is published.

Every check of one event lives here: topic, labels, payload type, the payload limit
(payload and type URL together) and the event's size against retention. Topics and type
URLs that pass are interned, so that retained events share one string per distinct value
instead of holding a copy each.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ._config import NamespaceConfig
from ._errors import InvalidArgument, PayloadTooLarge
from ._log import event_size
from ._validation import validate_event_id, validate_labels, validate_topic

__all__ = ["CheckedItem", "ItemChecker", "PublishItem"]

#: The labels of every event published without labels (one shared, read-only mapping).
NO_LABELS: Mapping[str, str] = MappingProxyType({})

_MEMO_SIZE = 4096  # distinct topics (and type URLs) remembered; cleared when full


@dataclass(frozen=True, slots=True)
class PublishItem:
    """One event of :meth:`Broadcaster.publish_many`.

    :ivar event_id: a client-chosen id (1-128 printable ASCII characters): an event
        whose id was published into the namespace within the log's deduplication window
        is not stored again, and its publish returns the original sequence
    """

    topic: str
    payload: bytes = b""
    type_url: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    timestamp_ns: int | None = None
    event_id: str | None = None


#: A checked event: (topic, payload, type_url, labels, timestamp_ns or None, size).
CheckedItem = tuple[str, bytes, str, Mapping[str, str], int | None, int]


class ItemChecker:
    """Checks publish items; remembers the topics and type URLs it has accepted."""

    __slots__ = ("_topics", "_type_urls")

    def __init__(self) -> None:
        self._topics: dict[str, str] = {}
        self._type_urls: dict[str, str] = {}

    def check(self, config: NamespaceConfig, index: int, item: PublishItem,
              max_size: int) -> CheckedItem:
        """Return *item* checked against *config*, as published.

        :param index: its position in the batch (named in errors as ``items[i]``)
        :param max_size: the largest size an event may have (what retention can hold)
        :raises InvalidTopic, InvalidLabels, InvalidArgument: on malformed input
        :raises PayloadTooLarge: if payload and type URL exceed ``max_payload_bytes``, or
            the event exceeds what retention can hold
        """
        prefix = f"items[{index}]." if index else ""
        topic = self._topics.get(item.topic) if type(item.topic) is str else None
        if topic is None:
            topic = validate_topic(item.topic, prefix + "topic")
            _remember(self._topics, topic)
        type_url = self._type_urls.get(item.type_url) if type(item.type_url) is str else None
        if type_url is None:
            if not isinstance(item.type_url, str):
                raise InvalidArgument(prefix + "type_url", "must be a string")
            type_url = item.type_url
            _remember(self._type_urls, type_url)
        labels = validate_labels(item.labels, prefix + "labels") if item.labels else NO_LABELS
        payload = item.payload
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise InvalidArgument(prefix + "payload", "must be bytes")
        limit = config.max_payload_bytes
        if len(payload) > limit:
            raise PayloadTooLarge(
                prefix + "payload", f"{len(payload)} bytes exceed the limit of {limit}"
            )
        url_bytes = len(type_url) if type_url.isascii() else len(type_url.encode())
        if len(payload) + url_bytes > limit:
            raise PayloadTooLarge(
                prefix + "type_url",
                f"{url_bytes} bytes, with the payload's {len(payload)}, exceed the limit of "
                f"{limit} (max_payload_bytes counts payload and type_url together)",
            )
        if item.event_id is not None:
            validate_event_id(item.event_id, prefix + "event_id")
        size = event_size(topic, payload, type_url, labels)
        if size > max_size:
            raise PayloadTooLarge(
                prefix + "payload",
                f"event of {size} bytes exceeds the namespace's retained bytes ({max_size})",
            )
        return topic, payload, type_url, labels, item.timestamp_ns, size


def _remember(memo: dict[str, str], value: str) -> None:
    if len(memo) >= _MEMO_SIZE:
        memo.clear()
    memo[value] = value
