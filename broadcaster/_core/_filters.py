"""containerd's filter syntax, for event envelopes.

One filter is selectors joined by ``,`` (all must match); several filters are OR-ed::

    selector  := fieldpath [ operator value ]
    fieldpath := field ( "." field )*
    field     := quoted | [A-Za-z_][A-Za-z0-9_-]*
    operator  := "==" | "!=" | "~="
    value     := quoted | /regexp/ (after ~= only) | characters up to "," or space
    quoted    := a double-quoted string with Go/C escapes

Fields of an event: ``namespace``, ``topic``, ``type`` (its type URL) and
``labels.KEY``. A selector with no operator tests that the field is present and
non-empty. ``!=`` also matches an absent field, as in containerd.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ._errors import InvalidFilter
from ._types import Event

__all__ = ["Matcher", "compile_filters"]

_FIELD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_OPERATORS = ("==", "!=", "~=")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "/": "/", "0": "\0"}
_TOP_FIELDS = ("namespace", "topic", "type", "labels")

Getter = Callable[[Event], str | None]
Matcher = Callable[[Event], bool]


@dataclass(frozen=True, slots=True)
class _Selector:
    path: tuple[str, ...]
    operator: str | None
    value: str

    def compile(self, field: str) -> Matcher:
        getter = _getter(self.path, field)
        if self.operator is None:
            return lambda e: bool(getter(e))
        if self.operator == "==":
            value = self.value
            return lambda e: getter(e) == value
        if self.operator == "!=":
            value = self.value
            return lambda e: getter(e) != value
        try:
            pattern = re.compile(self.value)
        except re.error as exc:
            raise InvalidFilter(field, f"bad regular expression {self.value!r}: {exc}") from None
        return lambda e: (v := getter(e)) is not None and pattern.search(v) is not None


def _getter(path: tuple[str, ...], field: str) -> Getter:
    head = path[0]
    if head not in _TOP_FIELDS:
        raise InvalidFilter(
            field, f"unknown field {head!r}; known: {', '.join(_TOP_FIELDS)}, labels.KEY"
        )
    if head == "labels":
        if len(path) != 2:
            raise InvalidFilter(field, "labels takes exactly one key: labels.KEY")
        key = path[1]
        return lambda e: e.labels.get(key)
    if len(path) != 1:
        raise InvalidFilter(field, f"field {head!r} has no sub-fields")
    if head == "namespace":
        return lambda e: e.namespace
    if head == "topic":
        return lambda e: e.topic
    return lambda e: e.type_url


class _Parser:
    def __init__(self, text: str, field: str) -> None:
        self.text, self.pos, self.field = text, 0, field

    def error(self, what: str) -> InvalidFilter:
        return InvalidFilter(self.field, f"{what} at position {self.pos} in {self.text!r}")

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def at_end(self) -> bool:
        self.skip_space()
        return self.pos >= len(self.text)

    def selectors(self) -> list[_Selector]:
        out = [self.selector()]
        while not self.at_end():
            if self.text[self.pos] != ",":
                raise self.error("expected ','")
            self.pos += 1
            out.append(self.selector())
        return out

    def selector(self) -> _Selector:
        path = [self.field_name()]
        while self.pos < len(self.text) and self.text[self.pos] == ".":
            self.pos += 1
            path.append(self.field_name())
        self.skip_space()
        op = self.text[self.pos : self.pos + 2]
        if op not in _OPERATORS:
            if self.at_end() or self.text[self.pos] == ",":
                return _Selector(tuple(path), None, "")
            raise self.error("expected '==', '!=' or '~='")
        self.pos += 2
        self.skip_space()
        return _Selector(tuple(path), op, self.value(regex=op == "~="))

    def field_name(self) -> str:
        self.skip_space()
        if self.pos < len(self.text) and self.text[self.pos] == '"':
            return self.quoted()
        m = _FIELD_RE.match(self.text, self.pos)
        if not m:
            raise self.error("expected a field name")
        self.pos = m.end()
        return m.group()

    def value(self, regex: bool) -> str:
        if self.pos >= len(self.text):
            raise self.error("expected a value")
        ch = self.text[self.pos]
        if ch == '"':
            return self.quoted()
        if regex and ch == "/":
            end = self.text.find("/", self.pos + 1)
            while end != -1 and self.text[end - 1] == "\\":
                end = self.text.find("/", end + 1)
            if end == -1:
                raise self.error("unterminated /regexp/")
            value = self.text[self.pos + 1 : end].replace("\\/", "/")
            self.pos = end + 1
            return value
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in ", \t\n":
            self.pos += 1
        value = self.text[start : self.pos]
        if '"' in value:
            raise self.error("stray '\"' in value")
        return value

    def quoted(self) -> str:
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            self.pos += 1
            if ch == '"':
                return "".join(out)
            if ch == "\\":
                if self.pos >= len(self.text):
                    break
                esc = self.text[self.pos]
                self.pos += 1
                if esc not in _ESCAPES:
                    raise self.error(f"unknown escape '\\{esc}'")
                out.append(_ESCAPES[esc])
            else:
                out.append(ch)
        raise self.error("unterminated quoted string")


def compile_filters(filters: Sequence[str]) -> Matcher | None:
    """Compile containerd filters into one predicate, or None when there are none.

    :param filters: filter strings; an event matches if any one of them matches
    :raises InvalidFilter: naming ``filters[i]`` and what is wrong with it
    """
    if isinstance(filters, str):
        filters = [filters]
    alternatives: list[list[Matcher]] = []
    for i, text in enumerate(filters):
        field = f"filters[{i}]"
        if not isinstance(text, str):
            raise InvalidFilter(field, "must be a string")
        parser = _Parser(text, field)
        if parser.at_end():
            raise InvalidFilter(field, "is empty")
        alternatives.append([s.compile(field) for s in parser.selectors()])
    if not alternatives:
        return None
    if len(alternatives) == 1 and len(alternatives[0]) == 1:
        return alternatives[0][0]
    return lambda e: any(all(m(e) for m in conj) for conj in alternatives)


def topics_of(filters: Sequence[str]) -> frozenset[str] | None:
    """The topics outside which *filters* match nothing, or None if they may match any.

    Every alternative must require ``topic==VALUE``; the hub then parks the subscription
    under those topics only, so publishing other topics never wakes it. Call after
    :func:`compile_filters` accepted *filters*.
    """
    if isinstance(filters, str):
        filters = [filters]
    if not filters:
        return None
    topics: set[str] = set()
    for i, text in enumerate(filters):
        required = [s.value for s in _Parser(text, f"filters[{i}]").selectors()
                    if s.path == ("topic",) and s.operator == "=="]
        if not required:
            return None
        topics.add(required[0])
    return frozenset(topics)
