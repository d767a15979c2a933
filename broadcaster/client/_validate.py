"""The client's argument checks: the core's naming rules, raised as the client's
:class:`InvalidArgumentError` chained to the core error that found the fault."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from .._core._errors import BroadcasterError
from .._core._policy import Policy
from .._core._validation import (
    validate_event_id,
    validate_labels,
    validate_namespace,
    validate_topic,
)
from .._proto import MAX_NS, MIN_NS
from ._errors import InvalidArgumentError
from ._wire import Payload, payload_of, timestamp_ns_of

__all__ = [
    "check_epoch",
    "check_event_id",
    "check_filters",
    "check_labels",
    "check_namespace",
    "check_namespaces",
    "check_payload",
    "check_policy",
    "check_since",
    "check_timestamp",
    "check_topic",
    "invalid",
]


def invalid(exc: BroadcasterError) -> InvalidArgumentError:
    """The client error for a core validation error (raise it ``from exc``)."""
    return InvalidArgumentError(exc.field, exc.message)


def check_namespace(name: str, field: str = "namespace") -> str:
    """*name* if it is a valid namespace (containerd's rule)."""
    try:
        return validate_namespace(name, field)
    except BroadcasterError as exc:
        raise invalid(exc) from exc


def check_topic(topic: str, field: str = "topic") -> str:
    """*topic* if it is a valid topic such as ``/tasks/exit``."""
    try:
        return validate_topic(topic, field)
    except BroadcasterError as exc:
        raise invalid(exc) from exc


def check_labels(labels: Mapping[str, str] | None, field: str = "labels") -> dict[str, str]:
    """A copy of *labels* if every key and value is a string of sane size."""
    try:
        return validate_labels(labels, field)
    except BroadcasterError as exc:
        raise invalid(exc) from exc


def check_payload(payload: Payload, type_url: str | None) -> tuple[str, bytes]:
    """``(type_url, value)`` of a payload given as bytes or a protobuf message."""
    if type_url is not None and not isinstance(type_url, str):
        raise InvalidArgumentError("type_url", f"must be a string, not {type(type_url)!r}")
    try:
        return payload_of(payload, type_url)
    except TypeError as exc:
        raise InvalidArgumentError("payload", str(exc).removeprefix("payload: ")) from exc


def check_timestamp(timestamp: datetime | int | float | None) -> int | None:
    """Nanoseconds since the Unix epoch of a datetime, int (ns) or float (seconds),
    within protobuf Timestamp's range (years 1 to 9999)."""
    try:
        ns = timestamp_ns_of(timestamp)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidArgumentError(
            "timestamp", f"expected a datetime, int ns or float seconds ({exc})"
        ) from exc
    if ns is not None and not MIN_NS <= ns <= MAX_NS:
        raise InvalidArgumentError("timestamp", "must be between years 1 and 9999")
    return ns


def check_namespaces(namespaces: str | Sequence[str] | None) -> tuple[str, ...]:
    """Validated namespaces; empty for "all namespaces"."""
    if namespaces is None:
        return ()
    if isinstance(namespaces, str):
        return (check_namespace(namespaces),)
    return tuple(check_namespace(n, f"namespaces[{i}]") for i, n in enumerate(namespaces))


def check_since(
    since: int | Mapping[str, int] | None, namespaces: tuple[str, ...]
) -> dict[str, int]:
    """The resume cursor per namespace of ``since=`` (an int for each of *namespaces*, or a
    mapping per namespace; None: none)."""
    if since is None:
        return {}
    try:
        if isinstance(since, Mapping):
            cursors = {check_namespace(ns, "since"): int(v) for ns, v in since.items()}
        elif not namespaces:
            raise InvalidArgumentError(
                "since", "an int needs namespaces; give a mapping per namespace"
            )
        else:
            cursors = dict.fromkeys(namespaces, int(since))
    except (TypeError, ValueError) as exc:
        if isinstance(exc, InvalidArgumentError):
            raise
        raise InvalidArgumentError("since", f"sequences must be integers ({exc})") from exc
    if any(v < 0 for v in cursors.values()):
        raise InvalidArgumentError("since", "must not be negative")
    if any(v >= 1 << 64 for v in cursors.values()):
        raise InvalidArgumentError("since", "must be below 2**64")
    return cursors


def check_filters(filters: Sequence[str]) -> tuple[str, ...]:
    """The filter strings (the server parses them and names the one at fault)."""
    if isinstance(filters, str):
        raise InvalidArgumentError("filters", "must be a sequence of filter strings, "
                                   "not one string")
    out = tuple(filters)
    for i, item in enumerate(out):
        if not isinstance(item, str):
            raise InvalidArgumentError(f"filters[{i}]", f"must be a string, not {type(item)!r}")
    return out


def check_policy(policy: Policy | None) -> Policy | None:
    """*policy* if it is a :class:`broadcaster.Policy` or None."""
    if policy is not None and not isinstance(policy, Policy):
        raise InvalidArgumentError("policy", f"must be a broadcaster.Policy, not {type(policy)!r}")
    return policy


def check_epoch(epoch: str | Mapping[str, str] | None) -> str | dict[str, str] | None:
    """*epoch*: a string (the epoch of every namespace's ``since``), a mapping of
    namespace to epoch, or None."""
    if epoch is None or isinstance(epoch, str):
        return epoch
    if isinstance(epoch, Mapping):
        out: dict[str, str] = {}
        for ns, value in epoch.items():
            check_namespace(ns, "epoch")
            if not isinstance(value, str):
                raise InvalidArgumentError(f"epoch[{ns!r}]",
                                           f"must be a string, not {type(value)!r}")
            out[ns] = value
        return out
    raise InvalidArgumentError("epoch", f"must be a string or a mapping, not {type(epoch)!r}")


def check_event_id(event_id: str | None) -> str | None:
    """*event_id* if it is None or a valid event id (1-128 printable ASCII characters)."""
    if event_id is None:
        return None
    try:
        return validate_event_id(event_id)
    except BroadcasterError as exc:
        raise invalid(exc) from exc

