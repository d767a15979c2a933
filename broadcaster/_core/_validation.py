"""Namespace, topic and label validation (containerd's rules)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from ._errors import InvalidArgument, InvalidLabels, InvalidNamespace, InvalidTopic

__all__ = ["EVENT_ID_MAX", "validate_event_id", "validate_labels", "validate_namespace",
           "validate_topic"]

# containerd namespaces/validate.go: alphanumerics separated by ".", "_" or "-", at most 76.
_NAMESPACE_MAX = 76
# Matched with fullmatch: "$" would also accept a trailing newline ("k8s.io\n").
_NAMESPACE_RE = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")
# containerd events/exchange: topics are "/"-rooted paths of identifiers.
_TOPIC_MAX = 255
_TOPIC_COMPONENT_RE = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")
# containerd labels/validate.go: key + value at most 4096 bytes.
_LABEL_MAX = 4096
_LABELS_MAX_COUNT = 64
#: Longest client-chosen event id (a NATS header value: printable ASCII, no spaces).
EVENT_ID_MAX = 128
_EVENT_ID_RE = re.compile(r"[\x21-\x7e]+")


def validate_namespace(name: str, field: str = "namespace") -> str:
    """Return *name* if it is a valid namespace.

    :raises InvalidNamespace: if it is empty, too long or has other characters than
        letters and digits separated by single ``.``, ``_`` or ``-``
    """
    if not isinstance(name, str) or not name:
        raise InvalidNamespace(field, "must not be empty")
    if len(name) > _NAMESPACE_MAX:
        raise InvalidNamespace(field, f"{name[:20]!r}... is over {_NAMESPACE_MAX} characters")
    if not _NAMESPACE_RE.fullmatch(name):
        raise InvalidNamespace(
            field,
            f"{name!r} must be letters and digits separated by single '.', '_' or '-'",
        )
    return name


def validate_topic(topic: str, field: str = "topic") -> str:
    """Return *topic* if it is a valid topic such as ``/tasks/exit``.

    :raises InvalidTopic: if it is empty, does not start with ``/``, has an empty
        component or a component with characters other than letters, digits, ``.``,
        ``_`` and ``-``
    """
    if not isinstance(topic, str) or not topic:
        raise InvalidTopic(field, "must not be empty")
    if len(topic) > _TOPIC_MAX:
        raise InvalidTopic(field, f"is longer than {_TOPIC_MAX} characters")
    if topic[0] != "/":
        raise InvalidTopic(field, f"{topic!r} must start with '/'")
    for component in topic[1:].split("/"):
        if not component:
            raise InvalidTopic(field, f"{topic!r} has an empty component")
        if not _TOPIC_COMPONENT_RE.fullmatch(component):
            raise InvalidTopic(field, f"{topic!r}: component {component!r} is not valid")
    return topic


def validate_labels(labels: Mapping[str, str] | None, field: str = "labels") -> dict[str, str]:
    """Return a copy of *labels* if every key and value is a string of sane size.

    :raises InvalidLabels: on a non-string, empty key, oversize pair or too many labels
    """
    if not labels:
        return {}
    if len(labels) > _LABELS_MAX_COUNT:
        raise InvalidLabels(field, f"has {len(labels)} labels, at most {_LABELS_MAX_COUNT}")
    out: dict[str, str] = {}
    for key, value in labels.items():
        if not isinstance(key, str) or not key:
            raise InvalidLabels(field, "keys must be non-empty strings")
        if not isinstance(value, str):
            raise InvalidLabels(f"{field}[{key!r}]", "value must be a string")
        if len(key) + len(value) > _LABEL_MAX:
            raise InvalidLabels(f"{field}[{key!r}]", f"key and value exceed {_LABEL_MAX} bytes")
        out[key] = value
    return out


def validate_event_id(event_id: str, field: str = "event_id") -> str:
    """Return *event_id* if it can identify an event for deduplication.

    :raises InvalidArgument: unless it is 1 to 128 printable ASCII characters without
        spaces (it travels as a NATS header value under the ``jetstream`` log)
    """
    if not isinstance(event_id, str) or not event_id:
        raise InvalidArgument(field, "must be a non-empty string (or unset)")
    if len(event_id) > EVENT_ID_MAX:
        raise InvalidArgument(field, f"is longer than {EVENT_ID_MAX} characters")
    if not _EVENT_ID_RE.fullmatch(event_id):
        raise InvalidArgument(field, f"{event_id[:40]!r} must be printable ASCII without spaces")
    return event_id
