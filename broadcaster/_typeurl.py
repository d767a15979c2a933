"""containerd type URLs, and event payloads as ``ctr events`` prints them.

containerd packs events into ``google.protobuf.Any`` with *bare* type URLs
(``containerd.events.TaskExit``), where Google's runtime writes
``type.googleapis.com/containerd.events.TaskExit``; both name the same type here.

``ctr events`` prints each envelope as Go's ``fmt.Println(timestamp, namespace, topic,
json)``, where *json* is Go's ``encoding/json`` of the gogo-generated struct::

    2023-11-14 22:13:20.123456789 +0000 UTC ns1 /tasks/exit {"container_id":"c1",...}

:func:`decode_event`, :func:`go_json` and :func:`format_ctr_line` reproduce that output
byte for byte (as the Debian ``ctr`` 1.6, built with Go 1.19, prints it), and
:func:`encode_json` turns the same JSON back into a payload.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType, ModuleType
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from ._core._errors import InvalidArgument
from ._proto import MAX_SECONDS, MIN_SECONDS
from .containerd.events import (
    container_pb2,
    content_pb2,
    image_pb2,
    namespace_pb2,
    snapshot_pb2,
    task_pb2,
)
from .containerd.types import mount_pb2

__all__ = [
    "CONTAINERD_TYPES",
    "GOOGLE_PREFIX",
    "TypeRegistry",
    "containerd_type_url",
    "decode_event",
    "encode_json",
    "format_ctr_line",
    "go_json",
    "go_time_string",
    "type_name",
]

#: The prefix ``Any.Pack()`` writes; containerd leaves it out.
GOOGLE_PREFIX = "type.googleapis.com/"
_CONTAINERD = "containerd."
_TIMESTAMP = "google.protobuf.Timestamp"
_EPOCH = dt.datetime(1970, 1, 1)
_ZERO_TIME = "0001-01-01T00:00:00Z"

JSON = Any  # a JSON-able value: dict, list, str, int, bool
# The runtime's descriptor classes (upb's or the pure-Python ones); typed loosely because
# the stubs declare the pure-Python classes only.
_Field = Any
_Descriptor = Any


# -- type URLs ------------------------------------------------------------------------


def type_name(type_url: str) -> str:
    """The full message name a type URL refers to (what follows its last ``/``)."""
    return type_url.rpartition("/")[2]


def containerd_type_url(type_url: str) -> str:
    """The form of *type_url* that containerd clients decode: the bare name for
    ``type.googleapis.com/containerd.*`` types, any other URL unchanged."""
    if type_url.startswith(GOOGLE_PREFIX) and type_url.startswith(_CONTAINERD, 20):
        return type_url[20:]
    return type_url


class TypeRegistry:
    """Message classes by full name, looked up by bare or prefixed type URL.

    :param classes: generated message classes
    """

    def __init__(self, classes: Iterable[type[Message]]) -> None:
        self._by_name: Mapping[str, type[Message]] = MappingProxyType(
            {cls.DESCRIPTOR.full_name: cls for cls in classes}
        )

    @classmethod
    def from_modules(cls, modules: Iterable[ModuleType]) -> TypeRegistry:
        """Every top-level message of generated ``*_pb2`` modules."""
        return cls(
            message_factory.GetMessageClass(desc)
            for module in modules
            for desc in module.DESCRIPTOR.message_types_by_name.values()
        )

    def lookup(self, type_url: str) -> type[Message] | None:
        """The class *type_url* (bare or with any ``host/`` prefix) names, or None."""
        return self._by_name.get(type_name(type_url))

    def names(self) -> list[str]:
        """The full names known, sorted."""
        return sorted(self._by_name)

    def classes(self) -> list[type[Message]]:
        """The message classes known, by full name."""
        return [self._by_name[name] for name in self.names()]


#: containerd 1.6's event types (``containerd.events.*``, image events
#: ``containerd.services.images.v1.*``) and ``containerd.types.Mount``.
CONTAINERD_TYPES = TypeRegistry.from_modules(
    (container_pb2, content_pb2, image_pb2, namespace_pb2, snapshot_pb2, task_pb2, mount_pb2)
)


# -- decoding: protobuf -> ctr's JSON ---------------------------------------------------


class _BadTimestamp(ValueError):
    pass


def decode_event(
    type_url: str, payload: bytes, registry: TypeRegistry = CONTAINERD_TYPES
) -> dict[str, JSON]:
    """Decode an event payload into the JSON object ``ctr events`` prints for it.

    Keys are the proto field names in field order; zero scalars, empty strings, lists
    and maps and absent messages are left out; timestamps are always present, as
    RFC 3339 (``"0001-01-01T00:00:00Z"`` when unset); bytes are base64; map keys sorted.

    :param type_url: bare (``containerd.events.TaskExit``) or prefixed type URL
    :param payload: the serialized message (an Any's ``value``)
    :param registry: the known types
    :returns: the decoded object; ``{"type_url", "payload_base64"}`` for an unknown
        type, with an ``"error"`` key too when the payload does not decode (``ctr``
        skips such events)
    """
    cls = registry.lookup(type_url) if type_url else None
    if cls is None:
        return _opaque(type_url, payload)
    try:
        return _message_json(cls.FromString(bytes(payload)))
    except (DecodeError, _BadTimestamp) as exc:
        return {**_opaque(type_url, payload), "error": str(exc)}


def _opaque(type_url: str, payload: bytes) -> dict[str, JSON]:
    return {"type_url": type_url, "payload_base64": base64.b64encode(payload).decode()}


def _message_json(msg: Message) -> dict[str, JSON]:
    out: dict[str, JSON] = {}
    for field in msg.DESCRIPTOR.fields:
        name = field.name
        if _is_timestamp(field) and not _is_repeated(field):
            # gogo's non-nullable stdtime: always present, Go's zero time when unset
            out[name] = _rfc3339(getattr(msg, name)) if msg.HasField(name) else _ZERO_TIME
            continue
        value = getattr(msg, name)
        if _is_map(field):
            if value:
                conv = _map_value_converter(field)
                out[name] = {k: conv(value[k]) for k in sorted(value)}
        elif _is_repeated(field):
            if value:
                out[name] = [_scalar_or_message(field, v) for v in value]
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if msg.HasField(name):
                out[name] = _message_json(value)
        elif value:
            out[name] = _scalar_or_message(field, value)
    return out


def _map_value_converter(field: _Field) -> Any:
    value_field = field.message_type.fields_by_name["value"]
    return lambda v: _scalar_or_message(value_field, v)


def _scalar_or_message(field: _Field, value: Any) -> JSON:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return _rfc3339(value) if _is_timestamp(field) else _message_json(value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode()
    return value


def _is_timestamp(field: _Field) -> bool:
    return field.message_type is not None and field.message_type.full_name == _TIMESTAMP


def _is_repeated(field: _Field) -> bool:
    return bool(field.is_repeated)


def _is_map(field: _Field) -> bool:
    return (
        _is_repeated(field)
        and field.message_type is not None
        and field.message_type.GetOptions().map_entry
    )


def _datetime(seconds: int, nanos: int) -> dt.datetime:
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise _BadTimestamp(f"timestamp seconds {seconds} out of range")
    if not 0 <= nanos < 1_000_000_000:
        raise _BadTimestamp(f"timestamp nanos {nanos} out of range")
    return _EPOCH + dt.timedelta(seconds=seconds)


def _fraction(nanos: int) -> str:
    return f".{nanos:09d}".rstrip("0") if nanos else ""


def _rfc3339(ts: Any) -> str:
    """Go's ``time.Time.MarshalJSON`` (RFC 3339 with trimmed nanoseconds) of a UTC time."""
    d = _datetime(ts.seconds, ts.nanos)
    return (
        f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}"
        f"{_fraction(ts.nanos)}Z"
    )


def go_time_string(timestamp_ns: int) -> str:
    """Go's ``time.Time.String()`` of a UTC time: ``2023-11-14 22:13:20.5 +0000 UTC``.

    :param timestamp_ns: nanoseconds since the Unix epoch
    :raises ValueError: outside the years 1 to 9999
    """
    seconds, nanos = divmod(timestamp_ns, 1_000_000_000)
    d = _datetime(seconds, nanos)
    return (
        f"{d.year:04d}-{d.month:02d}-{d.day:02d} {d.hour:02d}:{d.minute:02d}:{d.second:02d}"
        f"{_fraction(nanos)} +0000 UTC"
    )


# -- Go's encoding/json -------------------------------------------------------------------

# Go 1.19 json.Marshal: HTML-safe, and U+2028/U+2029 escaped; \b and \f as \u00XX
# (Go 1.22+ writes \b and \f; ctr 1.6 on Debian is built with Go 1.19).
_GO_ESCAPE_RE = re.compile('[\\x00-\\x1f"\\\\<>&\u2028\u2029]')
_GO_SHORT = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _go_escape(m: re.Match[str]) -> str:
    ch = m.group()
    return _GO_SHORT.get(ch) or f"\\u{ord(ch):04x}"


def _go_string(s: str) -> str:
    return f'"{_GO_ESCAPE_RE.sub(_go_escape, s)}"'


def go_json(value: JSON) -> str:
    """Compact JSON the way Go's ``json.Marshal`` writes it (object keys in the given
    order, ``<``, ``>``, ``&`` escaped as ``\\u003c``...).

    :raises TypeError: for a value that is not a dict, list, str, int or bool
    """
    if isinstance(value, str):
        return _go_string(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Mapping):
        items = ",".join(f"{_go_string(k)}:{go_json(v)}" for k, v in value.items())
        return f"{{{items}}}"
    if isinstance(value, list | tuple):
        return f"[{','.join(go_json(v) for v in value)}]"
    if value is None:
        return "null"
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def format_ctr_line(
    timestamp_ns: int,
    namespace: str,
    topic: str,
    type_url: str,
    payload: bytes,
    registry: TypeRegistry = CONTAINERD_TYPES,
) -> str:
    """One line as ``ctr events`` prints it (without the newline)::

        <Go time> <namespace> <topic> <Go JSON of the decoded event>

    An event with neither type URL nor payload ends in ``"<topic> "`` as in ctr. Where
    ctr skips an event it cannot decode, this prints :func:`decode_event`'s
    ``{"type_url",...,"payload_base64",...}`` object instead.

    :raises ValueError: if *timestamp_ns* is outside the years 1 to 9999
    """
    body = go_json(decode_event(type_url, payload, registry)) if type_url or payload else ""
    return f"{go_time_string(timestamp_ns)} {namespace} {topic} {body}"


# -- encoding: ctr's JSON -> protobuf --------------------------------------------------------


def encode_json(
    type_name_or_url: str, data: Mapping[str, JSON], registry: TypeRegistry = CONTAINERD_TYPES
) -> tuple[str, bytes]:
    """Build a payload from its JSON form (as :func:`decode_event` or ctr prints it).

    Accepts proto (snake_case) or lowerCamelCase names, RFC 3339 timestamps, base64
    bytes; ``null`` leaves a field unset.

    :param type_name_or_url: ``containerd.events.TaskExit`` (a ``type.googleapis.com/``
        prefix is accepted)
    :param data: the JSON object
    :returns: the type URL containerd uses (the bare full name) and the serialized message
    :raises InvalidArgument: naming ``type`` for an unknown type, or the JSON path at
        fault (``json.exit_status``) for a bad field
    """
    cls = registry.lookup(type_name_or_url) if type_name_or_url else None
    if cls is None:
        known = ", ".join(registry.names())
        raise InvalidArgument("type", f"unknown type {type_name_or_url!r}; known: {known}")
    msg = cls()
    _fill(msg, data, "json")
    name = msg.DESCRIPTOR.full_name
    url = name if name.startswith(_CONTAINERD) else GOOGLE_PREFIX + name
    return url, msg.SerializeToString()


def _field_of(desc: _Descriptor, key: str, path: str) -> _Field:
    field = desc.fields_by_name.get(key) or desc.fields_by_camelcase_name.get(key)
    if field is None:
        known = ", ".join(f.name for f in desc.fields)
        raise InvalidArgument(path, f"unknown field of {desc.full_name}; known: {known}")
    return field


def _fill(msg: Message, data: JSON, path: str) -> None:
    if not isinstance(data, Mapping):
        raise InvalidArgument(path, f"must be a JSON object, not {_json_kind(data)}")
    for key, value in data.items():
        field = _field_of(msg.DESCRIPTOR, key, f"{path}.{key}")
        if value is not None:
            _set_field(msg, field, value, f"{path}.{field.name}")


def _set_field(msg: Message, field: _Field, value: JSON, path: str) -> None:
    if _is_map(field):
        if not isinstance(value, Mapping):
            raise InvalidArgument(path, f"must be a JSON object, not {_json_kind(value)}")
        target = getattr(msg, field.name)
        value_field = field.message_type.fields_by_name["value"]
        for k, v in value.items():
            target[k] = _convert(value_field, v, f"{path}.{k}")
    elif _is_repeated(field):
        if not isinstance(value, list):
            raise InvalidArgument(path, f"must be a JSON array, not {_json_kind(value)}")
        target = getattr(msg, field.name)
        for i, v in enumerate(value):
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                _fill_message(target.add(), field, v, f"{path}[{i}]")
            else:
                target.append(_convert(field, v, f"{path}[{i}]"))
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        _fill_message(getattr(msg, field.name), field, value, path)
    else:
        try:
            setattr(msg, field.name, _convert(field, value, path))
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(path, str(exc)) from None


def _fill_message(target: Message, field: _Field, value: JSON, path: str) -> None:
    if _is_timestamp(field):
        if not isinstance(value, str):
            raise InvalidArgument(path, f"must be an RFC 3339 string, not {_json_kind(value)}")
        try:
            target.FromJsonString(value)  # type: ignore[attr-defined]
        except ValueError as exc:
            raise InvalidArgument(path, f"bad RFC 3339 time {value!r}: {exc}") from None
    else:
        _fill(target, value, path)
        target.SetInParent()


_INT_RANGES = {
    FieldDescriptor.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.CPPTYPE_ENUM: (-(2**31), 2**31 - 1),
}


def _convert(field: _Field, value: JSON, path: str) -> Any:
    kind = field.cpp_type
    if field.type == FieldDescriptor.TYPE_BYTES:
        if not isinstance(value, str):
            raise InvalidArgument(path, f"must be a base64 string, not {_json_kind(value)}")
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error as exc:
            raise InvalidArgument(path, f"bad base64: {exc}") from None
    if kind == FieldDescriptor.CPPTYPE_STRING:
        if not isinstance(value, str):
            raise InvalidArgument(path, f"must be a string, not {_json_kind(value)}")
        return value
    if kind == FieldDescriptor.CPPTYPE_BOOL:
        if not isinstance(value, bool):
            raise InvalidArgument(path, f"must be true or false, not {_json_kind(value)}")
        return value
    if kind in _INT_RANGES:
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidArgument(path, f"must be an integer, not {_json_kind(value)}")
        low, high = _INT_RANGES[kind]
        if not low <= value <= high:
            raise InvalidArgument(path, f"{value} is out of range [{low}, {high}]")
        return value
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidArgument(path, f"must be a number, not {_json_kind(value)}")
    return value


def _json_kind(value: JSON) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return "null" if value is None else type(value).__name__
