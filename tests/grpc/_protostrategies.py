"""Hypothesis strategies for any protobuf message, built from its descriptor, and for
byte-level mutations of serialized messages.

Strings mix values the server gives meaning to (namespaces, topics, filters, with the
malformed variants a hostile client would try) with arbitrary text; integers reach their
type's extremes; enums include unknown numbers; Timestamps and Durations cover the
edges of their ranges.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

F = FieldDescriptor

NAMES = [
    "", "default", "k8s.io", "moby", "a", "b", "a.b-c_d", "k8s.io\n", "Bad Name", "ns!",
    "x" * 76, "x" * 77, "é", "\x00",
]
TOPICS = [
    "/t", "/tasks/exit", "/tasks/exit\n", "tasks/exit", "/", "//", "/a//b", "/bad topic",
    "/" + "a" * 300,
]
FILTERS = [
    'topic=="/t"', 'topic~="^/tasks/"', "namespace==default", "namespace==k8s.io",
    "labels.app==web", 'labels."io.k8s.pod"', 'topic!="/x",labels.a==b', "topic==", "==",
    'topic~="("', 'topic~="[a-"', "event.field==x", 'labels.x~="(a|b)+$"', ",", "topic=",
    '"unterminated',
]
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
STRINGS = st.one_of(st.sampled_from(NAMES + TOPICS + FILTERS), TEXT)

_INT_RANGES = {
    F.TYPE_INT32: (-(2**31), 2**31 - 1), F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    F.TYPE_SFIXED32: (-(2**31), 2**31 - 1), F.TYPE_INT64: (-(2**63), 2**63 - 1),
    F.TYPE_SINT64: (-(2**63), 2**63 - 1), F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1), F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1), F.TYPE_FIXED64: (0, 2**64 - 1),
}


def _int(low: int, high: int) -> st.SearchStrategy[int]:
    edges = [v for v in (low, high, 0, 1, -1, 2, 1000) if low <= v <= high]
    return st.one_of(st.sampled_from(edges), st.integers(low, high),
                     st.integers(max(low, -100), min(high, 100_000)))


_SPECIAL: dict[str, Any] = {
    "google.protobuf.Timestamp": st.fixed_dictionaries({
        "seconds": st.one_of(st.sampled_from([
            -62_135_596_801, -62_135_596_800, -1, 0, 1_700_000_000, 253_402_300_799,
            253_402_300_800, 2**63 - 1, -(2**63)]), st.integers(-(2**63), 2**63 - 1)),
        "nanos": st.one_of(st.sampled_from([0, 1, 999_999_999, 1_000_000_000, -1]),
                           st.integers(-(2**31), 2**31 - 1)),
    }),
    "google.protobuf.Duration": st.fixed_dictionaries({
        "seconds": st.one_of(st.sampled_from([0, 1, -1, 10**9, 315_576_000_000]),
                             st.integers(-(2**63), 2**63 - 1)),
        "nanos": st.one_of(st.sampled_from([0, 1, 999_999_999, -1]),
                           st.integers(-(2**31), 2**31 - 1)),
    }),
    "google.protobuf.Any": st.fixed_dictionaries({
        "type_url": st.one_of(st.sampled_from([
            "", "containerd.events.TaskExit", "type.googleapis.com/containerd.events.TaskExit",
            "application/json", "x" * 200]), TEXT),
        "value": st.binary(max_size=64),
    }),
}


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    if field.type == F.TYPE_STRING:
        return STRINGS
    if field.type == F.TYPE_BYTES:
        return st.binary(max_size=64)
    if field.type == F.TYPE_BOOL:
        return st.booleans()
    if field.type in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return st.one_of(st.sampled_from([0.0, -1.0, 1e-9, 1e300]),
                         st.floats(allow_nan=True, width=32 if field.type == F.TYPE_FLOAT else 64))
    if field.type == F.TYPE_ENUM:
        numbers = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(numbers), st.integers(-3, max(numbers) + 3))
    return _int(*_INT_RANGES[field.type])


@st.composite
def message(draw: st.DrawFn, descriptor: Descriptor, cls: type[Message],
            depth: int = 0) -> Message:
    """A message of type *cls* (its descriptor *descriptor*) with random fields set."""
    msg = cls()
    _fill(draw, msg, descriptor, depth)
    return msg


def _fill(draw: st.DrawFn, msg: Any, descriptor: Descriptor, depth: int) -> None:
    special = _SPECIAL.get(descriptor.full_name)
    if special is not None:
        for name, value in draw(special).items():
            setattr(msg, name, value)
        return
    oneof_choice = {oneof.name: draw(st.sampled_from([None, *oneof.fields]))
                    for oneof in descriptor.oneofs}
    for field in descriptor.fields:
        oneof = field.containing_oneof
        if oneof is not None and oneof_choice[oneof.name] is not field:
            continue
        if oneof is None and not draw(st.booleans()):
            continue
        _set(draw, msg, field, depth)


def _set(draw: st.DrawFn, msg: Any, field: FieldDescriptor, depth: int) -> None:
    target = getattr(msg, field.name) if field.type == F.TYPE_MESSAGE or field.is_repeated \
        else None
    if field.type == F.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
        key_field = field.message_type.fields_by_name["key"]
        value_field = field.message_type.fields_by_name["value"]
        for _ in range(draw(st.integers(0, 3))):
            key = draw(_scalar(key_field))
            if value_field.type == F.TYPE_MESSAGE:
                _fill(draw, target[key], value_field.message_type, depth + 1)
            else:
                target[key] = draw(_scalar(value_field))
        return
    if field.type == F.TYPE_MESSAGE:
        if depth >= 3:
            return
        if field.is_repeated:
            for _ in range(draw(st.integers(0, 3))):
                _fill(draw, target.add(), field.message_type, depth + 1)
        else:
            target.SetInParent()
            _fill(draw, target, field.message_type, depth + 1)
        return
    if field.is_repeated:
        target.extend(draw(st.lists(_scalar(field), max_size=3)))
    else:
        setattr(msg, field.name, draw(_scalar(field)))


def messages(cls: type[Message]) -> st.SearchStrategy[Message]:
    """Random messages of *cls*."""
    return message(cls.DESCRIPTOR, cls)


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """*data* with one to three byte-level mutations: flip, delete, insert, truncate."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "delete", "insert", "truncate", "append"]))
        at = draw(st.integers(0, len(out))) if out else 0
        if kind == "flip" and out:
            at = min(at, len(out) - 1)
            out[at] ^= draw(st.integers(1, 255))
        elif kind == "delete" and out:
            del out[min(at, len(out) - 1)]
        elif kind == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "truncate":
            del out[at:]
        else:
            out += draw(st.binary(min_size=1, max_size=16))
    return bytes(out)


def wire(cls: type[Message]) -> st.SearchStrategy[bytes]:
    """Request bytes for *cls*: a random message, a mutation of one, or garbage."""
    valid = messages(cls).map(lambda m: m.SerializeToString())
    return st.one_of(valid, valid, valid.flatmap(mutated), st.binary(max_size=64))
