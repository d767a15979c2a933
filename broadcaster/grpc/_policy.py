"""broadcaster.v1.OverflowPolicy -> core :class:`Policy` (zero fields mean "default")."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

from google.protobuf import duration_pb2

from .._core._config import HubConfig
from .._core._errors import InvalidPolicy
from .._core._policy import Policy, PolicyKind
from ..v1 import broadcaster_pb2 as pb

__all__ = ["policy_from_proto"]

_KINDS = {
    pb.OverflowPolicy.DROP_NEWEST: PolicyKind.DROP_NEWEST,
    pb.OverflowPolicy.DROP_OLDEST: PolicyKind.DROP_OLDEST,
    pb.OverflowPolicy.BLOCK: PolicyKind.BLOCK,
    pb.OverflowPolicy.RETRY: PolicyKind.RETRY,
    pb.OverflowPolicy.DISCONNECT: PolicyKind.DISCONNECT,
}


def _kind(value: int, field: str) -> PolicyKind | None:
    if value == pb.OverflowPolicy.KIND_UNSPECIFIED:
        return None
    kind: PolicyKind | None = _KINDS.get(value)  # type: ignore[call-overload]
    if kind is None:
        raise InvalidPolicy(field, f"unknown kind {value}")
    return kind


_DurationField = Literal["block_timeout", "initial_backoff", "max_backoff"]


def _seconds(message: pb.OverflowPolicy, name: _DurationField) -> float | None:
    if not message.HasField(name):
        return None
    duration: duration_pb2.Duration = getattr(message, name)
    value = duration.seconds + duration.nanos / 1e9
    if value <= 0:
        raise InvalidPolicy(f"policy.{name}", "must be positive")
    return value


def policy_from_proto(
    message: pb.OverflowPolicy, config: HubConfig, namespaces: Sequence[str] | None
) -> Policy:
    """The core policy for *message*; unset fields take the default policy of the
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
    durations: tuple[_DurationField, ...] = ("block_timeout", "initial_backoff", "max_backoff")
    for name in durations:
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
