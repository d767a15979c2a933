"""containerd's filters, applied to events.

A filter is selectors joined by ``,`` (all must match); a subscription's filters are
OR-ed. The grammar is containerd's, rule for rule (:mod:`._filter_syntax`), and so is
the meaning, which containerd gives through an event's *fields*:

- ``namespace`` and ``topic`` (containerd's envelope fields; a longer path such as
  ``topic.x`` names the same field, as in containerd);
- ``event.<path>``: a field of the payload, read by the hub's payload-fields resolver
  (containerd's event types: the fields their generated ``Field`` methods expose);
- ``type`` (the payload's type URL) and ``labels.<key>`` (the event's labels; the rest of
  the path joined with ``.`` is the key): this project's additions;
- any other field is absent.

A selector without operator tests presence; ``==`` matches a present field with that
value; ``!=`` matches any other value, absent fields included (their value is ``""``);
``~=`` matches a regular expression (RE2, Go's dialect) anywhere in the value, ``""``
for an absent field. The empty filter matches everything.

Unlike containerd, which accepts a pattern it cannot compile and then matches nothing
with it, a bad ``~=`` pattern is refused when subscribing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import TypeVar

from ._config import FilterConfig
from ._errors import InvalidFilter
from ._filter_syntax import (
    EQUAL,
    MATCHES,
    NOT_EQUAL,
    PRESENT,
    FilterSyntaxError,
    Selector,
    parse_filter,
)
from ._payload import FieldLookup, json_fields
from ._regex import RegexError, compile_regex
from ._types import Event

__all__ = [
    "CompiledFilters",
    "Key",
    "Matcher",
    "compile_field_filter",
    "compile_filter_list",
    "compile_filters",
    "topics_of",
]

Matcher = Callable[[Event], bool]
#: ``(topic, field path, value)``: events of that topic whose payload field at that path
#: has that value; the path is ``()`` for every event of the topic (see :mod:`._topics`)
Key = tuple[str, tuple[str, ...], str]
_R = TypeVar("_R", str, Key)  # what a filter requires: a namespace, a key
#: the fields of an event's payload (None: it has none that can be read)
PayloadOf = Callable[[Event], "FieldLookup | None"]

_ENVELOPE = {"namespace": "namespace", "topic": "topic", "type": "type_url"}
_DEFAULT_LIMITS = FilterConfig()

# cost classes: cheap tests run first in a conjunction (its order does not change its
# meaning), so that a payload is decoded only for events that passed the others
_ENVELOPE_COST, _LABEL_COST, _REGEX_COST, _PAYLOAD_COST = 0, 1, 2, 4


def _uncached_payload(event: Event) -> FieldLookup | None:
    return json_fields(event.type_url, bytes(event.payload))


@dataclass(frozen=True, slots=True)
class _Test:
    """A compiled selector: ``fn(event)``, its cost class, and for ``attr==value`` on
    the envelope the pair (to merge alternatives into one set lookup)."""

    fn: Matcher
    cost: int
    equal: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class CompiledFilters:
    """A subscription's filters, compiled.

    :ivar matcher: the predicate, or None if the filters match every event
    :ivar topics: the only topics the filters can match (None: any topic)
    :ivar memory: estimated bytes the compiled form holds
    :ivar reads_payload: some selector reads payload fields (``event.``)
    :ivar keys: one key per filter that can match, which every event it matches has
        (see :mod:`._topics`): ``(topic, (), "")`` for a filter requiring ``topic==X``,
        ``(topic, path, value)`` when it also requires ``event.<path>==<value>``; None
        when some filter requires no topic
    :ivar namespaces: the only namespaces the filters can match, when every filter that
        can match requires ``namespace==X`` (None: any namespace; never empty)
    """

    matcher: Matcher | None
    topics: frozenset[str] | None
    memory: int
    reads_payload: bool
    keys: frozenset[Key] | None = None
    namespaces: frozenset[str] | None = None


def _absent(selector: Selector, rx: Callable[[str], bool] | None) -> bool:
    """The result of *selector* on a field that is absent (its value ``""``)."""
    op = selector.operator
    if op == NOT_EQUAL:
        return selector.value != ""
    if op == MATCHES:
        assert rx is not None
        return rx("")
    return False


def _envelope_test(selector: Selector, attr: str, rx: Callable[[str], bool] | None
                   ) -> _Test | bool:
    op, value, get = selector.operator, selector.value, attrgetter(attr)
    always_present = attr != "type_url"  # namespaces and topics are never empty
    if op == PRESENT:
        return True if always_present else _Test(lambda e: bool(e.type_url), _ENVELOPE_COST)
    if op == EQUAL:
        if value == "":
            return False  # a present field is a non-empty one
        if attr == "topic":
            return _Test(lambda e: e.topic == value, _ENVELOPE_COST, (attr, value))
        if attr == "namespace":
            return _Test(lambda e: e.namespace == value, _ENVELOPE_COST, (attr, value))
        return _Test(lambda e: get(e) == value, _ENVELOPE_COST, (attr, value))
    if op == NOT_EQUAL:
        return _Test(lambda e: get(e) != value, _ENVELOPE_COST)
    assert rx is not None
    return _Test(lambda e: rx(get(e)), _REGEX_COST)


def _label_test(selector: Selector, rx: Callable[[str], bool] | None) -> _Test:
    op, value, key = selector.operator, selector.value, ".".join(selector.path[1:])
    if op == PRESENT:
        return _Test(lambda e: key in e.labels, _LABEL_COST)
    if op == EQUAL:
        return _Test(lambda e: e.labels.get(key) == value, _LABEL_COST)
    if op == NOT_EQUAL:
        return _Test(lambda e: e.labels.get(key, "") != value, _LABEL_COST)
    assert rx is not None
    return _Test(lambda e: rx(e.labels.get(key, "")), _LABEL_COST + _REGEX_COST)


def _payload_test(selector: Selector, rx: Callable[[str], bool] | None,
                  payload_of: PayloadOf) -> _Test:
    op, value, path = selector.operator, selector.value, selector.path[1:]
    absent = _absent(selector, rx)

    if op == PRESENT:
        def test(e: Event) -> bool:
            fields = payload_of(e)
            return fields is not None and fields(path)[1]
    elif op == EQUAL:
        def test(e: Event) -> bool:
            fields = payload_of(e)
            if fields is None:
                return False
            found, present = fields(path)
            return present and found == value
    elif op == NOT_EQUAL:
        def test(e: Event) -> bool:
            fields = payload_of(e)
            return absent if fields is None else fields(path)[0] != value
    else:
        assert rx is not None
        search = rx

        def test(e: Event) -> bool:
            fields = payload_of(e)
            return absent if fields is None else search(fields(path)[0])
    cost = _PAYLOAD_COST + (_REGEX_COST if op == MATCHES else 0)
    return _Test(test, cost)


def _compile_selector(selector: Selector, field: str, payload_of: PayloadOf
                      ) -> tuple[_Test | bool, int]:
    """The selector as a test (or a constant, when it cannot depend on the event), and
    the memory its regular expression holds."""
    rx: Callable[[str], bool] | None = None
    memory = 0
    if selector.operator == MATCHES:
        try:
            regex = compile_regex(selector.value)
        except RegexError as exc:
            raise InvalidFilter(
                field, f"bad regular expression {selector.value!r}: {exc}"
            ) from None
        rx, memory = regex.search, regex.memory
    head = selector.path[0]
    if head in _ENVELOPE:
        return _envelope_test(selector, _ENVELOPE[head], rx), memory
    if head == "labels":
        return _label_test(selector, rx), memory
    if head == "event" and len(selector.path) > 1:
        return _payload_test(selector, rx, payload_of), memory
    return _absent(selector, rx), memory  # a field no event has


def _all(tests: Sequence[Matcher]) -> Matcher:
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        return lambda e: first(e) and second(e)

    def conjunction(e: Event) -> bool:
        for test in tests:  # noqa: SIM110 - a loop: no generator per event
            if not test(e):
                return False
        return True

    return conjunction


def _any(alternatives: Sequence[list[_Test]]) -> Matcher:
    if all(len(a) == 1 and a[0].equal is not None for a in alternatives):
        attrs = {a[0].equal[0] for a in alternatives if a[0].equal is not None}
        if len(attrs) == 1:  # topic=="/a" OR topic=="/b"...: one set lookup
            attr = attrs.pop()
            values = frozenset(a[0].equal[1] for a in alternatives if a[0].equal is not None)
            if attr == "topic":
                return lambda e: e.topic in values
            get = attrgetter(attr)
            return lambda e: get(e) in values
    matchers = [_all([t.fn for t in a]) for a in alternatives]
    if len(matchers) == 1:
        return matchers[0]

    def disjunction(e: Event) -> bool:
        for matcher in matchers:  # noqa: SIM110 - a loop: no generator per event
            if matcher(e):
                return True
        return False

    return disjunction


def _check_bounds(filters: Sequence[object], limits: FilterConfig) -> None:
    if len(filters) > limits.max_filters:
        raise InvalidFilter(
            f"filters[{limits.max_filters}]",
            f"exceeds the limit of {limits.max_filters} filters per subscription",
        )
    total = 0
    for i, text in enumerate(filters):
        field = f"filters[{i}]"
        if not isinstance(text, str):
            raise InvalidFilter(field, "must be a string")
        if len(text) > limits.max_filter_length:
            raise InvalidFilter(
                field, f"{len(text)} characters exceed the limit of "
                f"{limits.max_filter_length} per filter",
            )
        total += len(text)
        if total > limits.max_total_length:
            raise InvalidFilter(
                field, f"the filters' {total} characters so far exceed the limit of "
                f"{limits.max_total_length} per subscription",
            )


def compile_filter_list(filters: Sequence[str], *, limits: FilterConfig = _DEFAULT_LIMITS,
                        payload_of: PayloadOf = _uncached_payload) -> CompiledFilters:
    """Compile a subscription's filters.

    :param filters: filter strings; an event matches if any one of them matches
    :param limits: the bounds they must keep
    :param payload_of: reads the fields of an event's payload for ``event.`` selectors
    :raises InvalidFilter: naming ``filters[i]`` and what is wrong with it
    """
    if isinstance(filters, str):
        filters = [filters]
    _check_bounds(filters, limits)
    if not filters:
        return CompiledFilters(None, None, 0, False)
    alternatives: list[list[_Test]] = []
    keys: set[Key] | None = set()
    namespaces: set[str] | None = set()
    memory = selectors = regexes = 0
    reads_payload = matches_all = False
    for i, text in enumerate(filters):
        field = f"filters[{i}]"
        try:
            parsed = parse_filter(text)
        except FilterSyntaxError as exc:
            raise InvalidFilter(field, str(exc)) from None
        selectors += len(parsed)
        regexes += sum(s.operator == MATCHES for s in parsed)
        if selectors > limits.max_selectors:
            raise InvalidFilter(field, f"the filters' selectors exceed the limit of "
                                f"{limits.max_selectors} per subscription")
        if regexes > limits.max_regexes:
            raise InvalidFilter(field, f"the filters' ~= selectors exceed the limit of "
                                f"{limits.max_regexes} per subscription")
        tests: dict[Selector, _Test] = {}
        possible = True
        for selector in parsed:
            test, held = _compile_selector(selector, field, payload_of)
            memory += held
            if test is False:
                possible = False
            elif test is not True:
                assert isinstance(test, _Test)
                tests.setdefault(selector, test)
        if not possible:
            continue  # this alternative matches no event
        if not tests:
            matches_all = True
            continue
        conj = sorted(tests.values(), key=lambda t: t.cost)
        alternatives.append(conj)
        reads_payload = reads_payload or any(t.cost >= _PAYLOAD_COST for t in conj)
        # what every alternative requires (None once one does not)
        keys = _required(keys, _key_of, parsed)
        namespaces = _required(namespaces, _namespace_of, parsed)
    memory += 512 * selectors + 2 * sum(len(f) for f in filters) + 256 * len(filters)
    if matches_all:
        return CompiledFilters(None, None, memory, False)
    if not alternatives:  # nothing can match: an empty topic set parks it for good
        return CompiledFilters(lambda e: False, frozenset(), memory, False, frozenset())
    within = None if namespaces is None else frozenset(namespaces)
    if keys is None:
        return CompiledFilters(_any(alternatives), None, memory, reads_payload,
                               namespaces=within)
    return CompiledFilters(_any(alternatives), frozenset(k[0] for k in keys), memory,
                           reads_payload, frozenset(keys), within)


def _required(found: set[_R] | None, of: Callable[[Sequence[Selector]], _R | None],
              parsed: Sequence[Selector]) -> set[_R] | None:
    """*found* with what the filter *parsed* requires (``of(parsed)``) added, or None if
    it requires nothing of the kind (or an earlier filter did not)."""
    if found is None:
        return None
    value = of(parsed)
    if value is None:
        return None
    found.add(value)
    return found


def _namespace_of(parsed: Sequence[Selector]) -> str | None:
    """The namespace every event a filter (a conjunction: *parsed*) matches is in: its
    first ``namespace==`` value; None if it requires none."""
    for selector in parsed:
        if selector.operator == EQUAL and selector.path[0] == "namespace":
            return selector.value
    return None


def _key_of(parsed: Sequence[Selector]) -> Key | None:
    """The key every event a filter (a conjunction: *parsed*) matches has: its first
    ``topic==`` value, with its first ``event.<path>==<value>`` if any; None if it
    requires no topic."""
    topic: str | None = None
    field: tuple[tuple[str, ...], str] | None = None
    for selector in parsed:
        if selector.operator != EQUAL:
            continue
        head = selector.path[0]
        if head == "topic" and topic is None:
            topic = selector.value
        elif head == "event" and len(selector.path) > 1 and field is None:
            field = (selector.path[1:], selector.value)
    if topic is None:
        return None
    return (topic, (), "") if field is None else (topic, *field)


def compile_filters(filters: Sequence[str], *, limits: FilterConfig = _DEFAULT_LIMITS,
                    payload_of: PayloadOf = _uncached_payload) -> Matcher | None:
    """Compile containerd filters into one predicate, or None when they match every
    event (no filters, or an empty one).

    :param filters: filter strings; an event matches if any one of them matches
    :param limits: the bounds they must keep
    :param payload_of: reads the fields of an event's payload for ``event.`` selectors
        (by default JSON payloads only, decoded at each test)
    :raises InvalidFilter: naming ``filters[i]`` and what is wrong with it
    """
    if not filters:
        return None
    return compile_filter_list(filters, limits=limits, payload_of=payload_of).matcher


def topics_of(filters: Sequence[str]) -> frozenset[str] | None:
    """The topics outside which *filters* match nothing, or None if they may match any.

    Every alternative that can match must require ``topic==VALUE``; the hub then parks
    the subscription under those topics only, so publishing other topics never wakes it.

    :raises InvalidFilter: as :func:`compile_filters`
    """
    if not filters:
        return None
    return compile_filter_list(filters).topics


def compile_field_filter(text: str) -> Callable[[FieldLookup], bool]:
    """One filter as containerd's ``Filter.Match(adaptor)``: a predicate on any object's
    fields, given as a lookup ``path -> (value, present)`` (what event filters do on an
    event's fields, spelled out for arbitrary objects).

    :raises InvalidFilter: naming ``filters[0]``
    """
    try:
        selectors = parse_filter(text)
    except FilterSyntaxError as exc:
        raise InvalidFilter("filters[0]", str(exc)) from None
    tests = [_field_test(selector) for selector in selectors]
    return lambda fields: all(test(fields) for test in tests)


def _field_test(selector: Selector) -> Callable[[FieldLookup], bool]:
    op, value, path = selector.operator, selector.value, selector.path
    if op == PRESENT:
        return lambda fields: fields(path)[1]
    if op == EQUAL:
        return lambda fields: fields(path) == (value, True)
    if op == NOT_EQUAL:
        return lambda fields: fields(path)[0] != value
    try:
        search = compile_regex(value).search
    except RegexError as exc:
        raise InvalidFilter("filters[0]", f"bad regular expression {value!r}: {exc}") from None
    return lambda fields: search(fields(path)[0])
