"""The fields of protobuf payloads, by the rules of containerd's field-path generator.

containerd's ``protoc-gen-go-fieldpath`` writes a ``Field(fieldpath)`` method for every
event message; :func:`message_fields` answers the same questions from the message's
descriptor, so containerd's event types and any type a user registers get the same
meaning:

- an empty path, an unknown field and an unhandled field are absent; unhandled are
  numbers, enums, bytes, repeated fields, and messages named ``Timestamp``;
- a string is present when non-empty (when set, for a proto3 ``optional``); a bool is
  always present, as ``true`` or ``false``; the rest of the path after a scalar is
  ignored;
- a map field named ``labels``: absent when empty, else the entry whose key is the rest
  of the path joined with ``.``;
- a ``google.protobuf.Any`` field: the fields of the message it holds (absent when unset
  or of a type not registered here);
- any other message field: its own fields, by the same rules (absent when unset).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from .._core._payload import FieldLookup, json_fields
from .._typeurl import CONTAINERD_TYPES, type_name

__all__ = ["CONTAINERD_PAYLOADS", "PayloadTypes", "message_fields"]

_ABSENT = ("", False)
_Descriptor = Any  # upb's or the pure-Python descriptor classes
_Handler = Callable[[Message, Sequence[str], "PayloadTypes"], tuple[str, bool]]
_Table = Mapping[str, _Handler]


def _repeated(field: _Descriptor) -> bool:
    return bool(field.is_repeated)


def _handler(field: _Descriptor) -> _Handler | None:
    """The generator's case for *field*, in its order (labels, Any, message, string,
    bool), or None for an unhandled field."""
    name = field.name
    message = field.message_type if field.type == FieldDescriptor.TYPE_MESSAGE else None
    if message is not None and name == "labels" and message.GetOptions().map_entry:
        def labels(m: Message, rest: Sequence[str], types: PayloadTypes) -> tuple[str, bool]:
            entries = getattr(m, name)
            if not entries:
                return _ABSENT
            key = ".".join(rest)
            return (str(entries[key]), True) if key in entries else _ABSENT
        return labels
    if message is not None and not _repeated(field) and message.name == "Any":
        def any_field(m: Message, rest: Sequence[str], types: PayloadTypes
                      ) -> tuple[str, bool]:
            if not m.HasField(name):
                return _ABSENT
            packed = getattr(m, name)
            fields = types(packed.type_url, packed.value)
            return _ABSENT if fields is None else fields(rest)
        return any_field
    if message is not None and not _repeated(field) and message.name != "Timestamp":
        def nested(m: Message, rest: Sequence[str], types: PayloadTypes) -> tuple[str, bool]:
            if not m.HasField(name):
                return _ABSENT
            return types.field(getattr(m, name), rest)
        return nested
    if _repeated(field):
        return None
    presence = bool(field.has_presence)
    if field.type == FieldDescriptor.TYPE_STRING:
        if presence:
            return lambda m, rest, types: (getattr(m, name), True) if m.HasField(name) \
                else _ABSENT
        def string(m: Message, rest: Sequence[str], types: PayloadTypes) -> tuple[str, bool]:
            value: str = getattr(m, name)
            return value, value != ""
        return string
    if field.type == FieldDescriptor.TYPE_BOOL:
        if presence:
            return lambda m, rest, types: ("true" if getattr(m, name) else "false", True) \
                if m.HasField(name) else _ABSENT
        return lambda m, rest, types: ("true" if getattr(m, name) else "false", True)
    return None


def _tables(descriptors: Iterable[_Descriptor]) -> dict[str, _Table]:
    """The handler tables of *descriptors* and of every message type they nest."""
    tables: dict[str, _Table] = {}
    pending = list(descriptors)
    while pending:
        descriptor = pending.pop()
        if descriptor.full_name in tables:
            continue
        table: dict[str, _Handler] = {}
        for field in descriptor.fields:
            handler = _handler(field)
            if handler is not None:
                table[field.name] = handler
                if field.type == FieldDescriptor.TYPE_MESSAGE and not _repeated(field):
                    pending.append(field.message_type)
        tables[descriptor.full_name] = MappingProxyType(table)
    return tables


class PayloadTypes:
    """A payload-fields resolver (:attr:`broadcaster.HubConfig.payload_fields`) for
    protobuf message types, and JSON payloads.

    A type is found by the type URL it was registered under, else by the full message
    name the URL ends with (``containerd.events.TaskExit`` and
    ``type.googleapis.com/containerd.events.TaskExit`` alike). Immutable: register
    returns a new resolver.

    :param classes: generated message classes
    :param json: also read JSON payloads (type URL ``application/json`` or ``...+json``)
    """

    __slots__ = ("_by_name", "_by_url", "_json", "_tables")

    def __init__(self, classes: Iterable[type[Message]] = (), *, json: bool = True,
                 type_urls: Mapping[str, type[Message]] | None = None) -> None:
        classes = list(classes)
        urls = dict(type_urls or {})
        self._by_name: Mapping[str, type[Message]] = MappingProxyType(
            {cls.DESCRIPTOR.full_name: cls for cls in classes})
        self._by_url: Mapping[str, type[Message]] = MappingProxyType(urls)
        self._json = json
        self._tables: Mapping[str, _Table] = MappingProxyType(_tables(
            [cls.DESCRIPTOR for cls in classes] + [cls.DESCRIPTOR for cls in urls.values()]))

    def register(self, message_class: type[Message], type_url: str | None = None
                 ) -> PayloadTypes:
        """A resolver that also knows *message_class*: by its full name, and by
        *type_url* when given (for URLs that do not end with the full name).

        :raises TypeError: if *message_class* is not a generated message class
        """
        if not (isinstance(message_class, type) and issubclass(message_class, Message)):
            raise TypeError(f"{message_class!r} is not a protobuf message class")
        urls = dict(self._by_url)
        if type_url is not None:
            urls[type_url] = message_class
        return PayloadTypes([*self._by_name.values(), message_class], json=self._json,
                            type_urls=urls)

    def lookup(self, type_url: str) -> type[Message] | None:
        """The message class *type_url* names here, or None."""
        found = self._by_url.get(type_url)
        return found if found is not None else self._by_name.get(type_name(type_url))

    def names(self) -> list[str]:
        """The full names of the registered message types, sorted."""
        return sorted({cls.DESCRIPTOR.full_name for cls in (*self._by_name.values(),
                                                            *self._by_url.values())})

    def __call__(self, type_url: str, payload: bytes) -> FieldLookup | None:
        """The fields of *payload*, or None for an unknown type or a payload that does
        not decode."""
        cls = self.lookup(type_url)
        if cls is None:
            return json_fields(type_url, payload) if self._json else None
        try:
            message = cls.FromString(payload)
        except DecodeError:
            return None
        return message_fields(message, self)

    def table(self, descriptor: _Descriptor) -> _Table:
        """The field handlers of a message type."""
        table = self._tables.get(descriptor.full_name)
        return table if table is not None else _tables([descriptor])[descriptor.full_name]

    def field(self, message: Message, path: Sequence[str]) -> tuple[str, bool]:
        """The field *path* of *message*: ``(value, present)``."""
        if not path:
            return _ABSENT
        handler = self.table(message.DESCRIPTOR).get(path[0])
        return _ABSENT if handler is None else handler(message, path[1:], self)


def message_fields(message: Message, types: PayloadTypes | None = None) -> FieldLookup:
    """The field lookup of a decoded *message* (``Any`` fields resolved by *types*)."""
    resolver = types if types is not None else CONTAINERD_PAYLOADS
    table = resolver.table(message.DESCRIPTOR)

    def lookup(path: Sequence[str]) -> tuple[str, bool]:
        handler = table.get(path[0]) if path else None
        return _ABSENT if handler is None else handler(message, path[1:], resolver)

    return lookup


#: containerd 1.6's event types (and JSON payloads): the gRPC server's default
CONTAINERD_PAYLOADS = PayloadTypes(CONTAINERD_TYPES.classes())
