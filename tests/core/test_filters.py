"""Filters: containerd's grammar and meaning (every case of containerd's
``filters/filter_test.go``), event fields, bounds, the topic index."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broadcaster import Event, HubConfig, InvalidFilter, compile_filters
from broadcaster._core._config import FilterConfig
from broadcaster._core._filter_syntax import (
    EQUAL,
    MATCHES,
    NOT_EQUAL,
    PRESENT,
    Selector,
    parse_filter,
)
from broadcaster._core._filters import compile_field_filter, compile_filter_list, topics_of

from ._util import Broadcaster, all_blocked, drain, events_of

# -- containerd's filters/filter_test.go, TestFilters ------------------------------------

# (name, labels, other) of its corpus
CORPUS: list[tuple[str, dict[str, str], str]] = [
    ("foo", {"foo": "true"}, ""),
    ("bar", {}, ""),
    ("foo", {"foo": "present", "more complex label": "present"}, ""),
    ("bar", {"bar": "true"}, ""),
    ("fooer", {'more complex label with \\ and "': "present"}, ""),
    ("fooer", {'more complex label with \\ and ".post': "present"}, ""),
    ("baz", {}, "too complex, yo"),
    ("bazo", {}, "abc"),
    ("compound", {"foo": "omg_asdf.asdf-qwer"}, ""),
]


def adapt(index: int) -> object:
    """The test's adaptor: ``name``, ``other`` (present when non-empty) and ``labels``
    (the rest of the path joined with ``.``)."""
    name, labels, other = CORPUS[index]

    def field(path: Sequence[str]) -> tuple[str, bool]:
        if path[0] == "name":
            return name, len(name) > 0
        if path[0] == "other":
            return other, len(other) > 0
        if path[0] == "labels":
            key = ".".join(path[1:])
            return labels.get(key, ""), key in labels
        return "", False

    return field


ALL = list(range(len(CORPUS)))

# (containerd's case name, input, the same with every field under "event.", expected:
# the corpus entries that match, or containerd's error string)
CONTAINERD_CASES: list[tuple[str, str, str, list[int] | str]] = [
    ("Empty", "", "", ALL),
    ("Present", "name", "event.name", ALL),
    ("LabelPresent", "labels.foo", "event.labels.foo", [0, 2, 8]),
    ("NameAndLabelPresent", "labels.foo,name", "event.labels.foo,event.name", [0, 2, 8]),
    ("LabelValue", "labels.foo==true", "event.labels.foo==true", [0]),
    ("LabelValuePunctuated", "labels.foo==omg_asdf.asdf-qwer",
     "event.labels.foo==omg_asdf.asdf-qwer", [8]),
    ("LabelValueNoAltQuoting", "labels.|foo|==omg_asdf.asdf-qwer", "",
     "filters: parse error: [labels. >|||< foo|==omg_asdf.asdf-qwer]: "
     "invalid quote encountered"),
    ("Name", "name==bar", "event.name==bar", [1, 3]),
    ("NameNotEqual", "name!=bar", "event.name!=bar", [0, 2, 4, 5, 6, 7, 8]),
    ("NameAndLabelPresent", "name==bar,labels.bar", "event.name==bar,event.labels.bar", [3]),
    ("QuotedValue", 'other=="too complex, yo"', 'event.other=="too complex, yo"', [6]),
    ("RegexpValue", "other~=[abc]+,name!=foo", "event.other~=[abc]+,event.name!=foo", [6, 7]),
    ("RegexpQuotedValue", "other~=/[abc]+/,name!=foo",
     "event.other~=/[abc]+/,event.name!=foo", [6, 7]),
    ("RegexpQuotedValue", "other~=/[abc]{1,2}/,name!=foo",
     "event.other~=/[abc]{1,2}/,event.name!=foo", [6, 7]),
    ("RegexpQuotedValueGarbage", 'other~=/[abc]{0,1}"\\//,name!=foo',
     'event.other~=/[abc]{0,1}"\\//,event.name!=foo', []),
    ("NameAndLabelValue", "name==bar,labels.bar==true",
     "event.name==bar,event.labels.bar==true", [3]),
    ("NameAndLabelValueNoMatch", "name==bar,labels.bar==wrong",
     "event.name==bar,event.labels.bar==wrong", []),
    ("LabelQuotedFieldPathPresent", 'name==foo,labels."more complex label"',
     'event.name==foo,event.labels."more complex label"', [2]),
    ("LabelQuotedFieldPathPresentWithQuoted",
     'labels."more complex label with \\\\ and \\""==present',
     'event.labels."more complex label with \\\\ and \\""==present', [4]),
    ("LabelQuotedFieldPathPresentWithQuotedEmbed",
     'labels."more complex label with \\\\ and \\"".post==present',
     'event.labels."more complex label with \\\\ and \\"".post==present', [5]),
    ("LabelQuotedFieldPathPresentWithQuotedEmbedInvalid",
     'labels.?"more complex label with \\\\ and \\"".post==present', "",
     'filters: parse error: [labels. >|?|< "more complex label with \\\\ and \\"".post'
     '==present]: expected field or quoted'),
    ("TrailingComma", "name==foo,", "",
     "filters: parse error: [name==foo,]: expected field or quoted"),
    ("TrailingFieldSeparator", "labels.", "",
     "filters: parse error: [labels.]: expected field or quoted"),
    ("MissingValue", "image~=,id?=?fbaq", "",
     "filters: parse error: [image~= >|,|< id?=?fbaq]: expected value or quoted"),
    ("FieldQuotedLiteralNotTerminated", "labels.ns/key==value", "",
     "filters: parse error: [labels.ns >|/|< key==value]: quoted literal not terminated"),
    ("ValueQuotedLiteralNotTerminated", "labels.key==/value", "",
     "filters: parse error: [labels.key== >|/|< value]: quoted literal not terminated"),
]
CASE_IDS = [f"{i}-{case[0]}" for i, case in enumerate(CONTAINERD_CASES)]


@pytest.mark.parametrize(("name", "text", "event_text", "expected"), CONTAINERD_CASES,
                         ids=CASE_IDS)
def test_containerd_filter_cases(name: str, text: str, event_text: str,
                                 expected: list[int] | str) -> None:
    """Parse then Match every corpus entry through the test's adaptor, as containerd's
    test does; errors carry containerd's message, the field named ``filters[0]``."""
    if isinstance(expected, str):
        with pytest.raises(InvalidFilter) as info:
            compile_field_filter(text)
        assert str(info.value) == expected.replace("filters: ", "filters[0]: ", 1)
        assert info.value.field == "filters[0]"
        return
    match = compile_field_filter(text)
    assert [i for i in ALL if match(adapt(i))] == expected  # type: ignore[arg-type]


def corpus_payloads(type_url: str, payload: bytes) -> object:
    return adapt(int(payload)) if type_url == "test.Entry" else None


@pytest.mark.anyio
@pytest.mark.parametrize(("name", "text", "event_text", "expected"), CONTAINERD_CASES,
                         ids=CASE_IDS)
async def test_containerd_filter_cases_through_a_hub(name: str, text: str, event_text: str,
                                                     expected: list[int] | str) -> None:
    """The same cases on events: the corpus entries are payloads whose fields a
    resolver gives (the test's adaptor), the filter selects them as ``event.<field>``."""
    config = HubConfig(payload_fields=corpus_payloads)  # type: ignore[arg-type]
    async with Broadcaster(config) as hub:
        if isinstance(expected, str):
            with pytest.raises(InvalidFilter) as info:
                hub.subscribe("ns", filters=[text])
            assert str(info.value) == expected.replace("filters: ", "filters[0]: ", 1)
            return
        async with hub.subscribe("ns", filters=[event_text]) as sub:
            for i in ALL:
                await hub.publish("ns", "/corpus", str(i).encode(), type_url="test.Entry")
            matched = [int(e.payload) for e in events_of(drain(sub))]
        assert matched == expected


@given(st.text(max_size=40))
def test_any_text_parses_or_is_refused_with_invalid_filter(text: str) -> None:
    """containerd's FuzzFiltersParse: a filter or an error, nothing else."""
    try:
        compile_field_filter(text)
    except InvalidFilter as exc:
        assert exc.field == "filters[0]"


def test_operator_names() -> None:
    """containerd's TestOperatorStrings."""
    assert (PRESENT, EQUAL, NOT_EQUAL, MATCHES) == ("?", "==", "!=", "~=")


# -- the grammar beyond containerd's test (traced through its scanner and parser) ---------

@pytest.mark.parametrize(
    ("text", "selectors"),
    [
        ("a == b", [(("a",), "==", "b")]),  # spaces before operator and value
        ("a==b, c", [(("a",), "==", "b"), (("c",), "?", "")]),  # and before a field
        ("_1a.2b==x", [(("_1a", "2b"), "==", "x")]),  # digits and _ anywhere in a field
        ("a==x=y.z/w", [(("a",), "==", "x=y.z/w")]),  # a value runs to , or space
        ("a=='q'", [(("a",), "==", "'q'")]),  # ' is no quote
        ('a=="\\x41\\101\\u00e9\\U0001F600\\t"', [(("a",), "==", "AA\u00e9\U0001F600\t")]),
        ('a=="\\xc3\\xa9"', [(("a",), "==", "\u00e9")]),  # \x escapes are bytes
        ('a=="\\xff"', [(("a",), "==", "\udcff")]),  # not UTF-8: equals no real value
        ('a=="\\ud800"', [(("a",), "==", "\ufffd")]),  # Go encodes a surrogate as U+FFFD
        ("a~=|x\\|y|", [(("a",), "~=", "x|y")]),
        ('"we ird"."x.y"', [(("we ird", "x.y"), "?", "")]),
        ("a==\u00e9t\u00e9", [(("a",), "==", "\u00e9t\u00e9")]),
    ],
)
def test_grammar(text: str, selectors: list[tuple[tuple[str, ...], str, str]]) -> None:
    assert parse_filter(text) == tuple(Selector(*s) for s in selectors)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a==b ", "[a==b >| |< ]: unexpected input:  "),  # no trailing space
        ("a==b , c", "[a==b >| |< , c]: unexpected input:  "),
        ("a-b==c", '[a >|-|< b==c]: expected an operator ("=="|"!="|"~=")'),
        ("a===b", '[a >|=|< ==b]: unsupported operator "==="'),
        ("a=b", '[a >|=|< b]: unsupported operator "="'),
        ("a==.b", "[a== >|.|< b]: expected value or quoted"),
        ("a==", "[a==]: expected value or quoted"),
        ("==a", "[ >|=|< =a]: expected field or quoted"),
        ("   ", "[   ]: expected field or quoted"),
        ('a=="x"y', '[a=="x" >|y|< ]: unexpected input: y'),
        ('a=="\\q"', '[a== >|"|< \\q"]: illegal escape sequence'),
        ('a=="\\x4"', '[a== >|"|< \\x4"]: illegal numeric escape sequence'),
        ('a=="\\400"', '[a== >|"|< \\400"]: unquoting failed: quote syntax error'),
        ('a=="\\U00110000"', '[a== >|"|< \\U00110000"]: unquoting failed: quote syntax error'),
        ('a=="x', '[a== >|"|< x]: quoted literal not terminated'),
        ('a=="x\ny"', '[a== >|"|< x\ny"]: quoted literal not terminated'),
        ("a==/x/", "[a== >|/|< x/]: invalid quote encountered"),  # /.../ after ~= only
        ("a\x00", "[a >|\x00|< ]: unexpected null"),
        ("a==\ufffd", "[a== >|\ufffd|< ]: rune error"),
        ("a?", '[a >|?|< ]: expected an operator ("=="|"!="|"~=")'),
        ("a,?", "[a, >|?|< ]: expected field or quoted"),
    ],
)
def test_grammar_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidFilter) as info:
        compile_filters(["", text])
    assert info.value.field == "filters[1]"
    assert info.value.message == f"parse error: {message}"


# -- an event's fields ------------------------------------------------------------------

def ev(ns: str = "k8s.io", topic: str = "/tasks/exit", labels: dict[str, str] | None = None,
       type_url: str = "containerd.events.TaskExit", payload: bytes = b"") -> Event:
    return Event(ns, topic, payload, type_url, labels or {}, 0, 1, 0.0, 0)


@pytest.mark.parametrize(
    ("filters", "event", "expected"),
    [
        (['topic=="/tasks/exit"'], ev(), True),
        (['topic=="/tasks/exit"'], ev(topic="/tasks/start"), False),
        (['topic~="^/tasks/"'], ev(topic="/tasks/oom"), True),
        (['topic~="^/tasks/"'], ev(topic="/containers/delete"), False),
        (["topic~=/^\\/tasks\\//"], ev(topic="/tasks/oom"), True),
        (['topic.anything=="/tasks/exit"'], ev(), True),  # the envelope ignores the rest
        (["namespace==k8s.io"], ev(), True),
        (["namespace==moby"], ev(), False),
        (["namespace!=moby"], ev(), True),
        (["namespace", "topic"], ev(), True),  # always present
        (['namespace==k8s.io,topic=="/tasks/exit"'], ev(), True),
        (['namespace==k8s.io,topic=="/tasks/exit"'], ev(ns="moby"), False),
        (["namespace==moby", 'topic=="/tasks/exit"'], ev(), True),  # OR
        (['topic=="/a"', 'topic=="/tasks/exit"'], ev(), True),  # one set lookup
        (['topic=="/a"', 'topic=="/b"'], ev(), False),
        (["labels.app==web"], ev(labels={"app": "web"}), True),
        (["labels.app==web"], ev(labels={"app": "db"}), False),
        (["labels.app"], ev(labels={"app": "db"}), True),
        (["labels.app"], ev(labels={"app": ""}), True),  # present, if empty
        (["labels.app"], ev(), False),
        (["labels.app!=web"], ev(), True),  # absent counts as "", as in containerd
        (['labels.app!=""'], ev(), False),
        (['labels.app~=""'], ev(), True),  # "" matches an absent field's ""
        (['labels.app~="."'], ev(), False),
        (['labels."io.k8s.pod"==p1'], ev(labels={"io.k8s.pod": "p1"}), True),
        (["labels.io.k8s.pod==p1"], ev(labels={"io.k8s.pod": "p1"}), True),  # joined
        (['type=="containerd.events.TaskExit"'], ev(), True),
        (["type"], ev(type_url=""), False),
        (['type==""'], ev(type_url=""), False),
        (["type!=x"], ev(type_url=""), True),
        (["nosuch"], ev(), False),  # unknown fields are absent, as in containerd
        (["nosuch==x"], ev(), False),
        (["nosuch!=x"], ev(), True),
        (['nosuch~="^$"'], ev(), True),
        (["event"], ev(), False),
        (['topic=="/tasks/exit",nosuch'], ev(), False),
        ([""], ev(), True),  # the empty filter matches everything
        (["nosuch", ""], ev(), True),
        (['topic=="a\\"b"'], ev(topic='a"b'), True),
        ([' topic == "/tasks/exit", namespace == k8s.io'], ev(), True),
    ],
)
def test_event_fields(filters: list[str], event: Event, expected: bool) -> None:
    matcher = compile_filters(filters)
    assert (matcher is None or matcher(event)) is expected


def test_no_filters_and_the_empty_filter_mean_everything() -> None:
    assert compile_filters([]) is None
    assert compile_filters([""]) is None
    assert compile_filters(["topic==x", ""]) is None


def test_a_filter_that_cannot_match_parks_under_no_topic() -> None:
    compiled = compile_filter_list(["nosuch==x", 'labels.a==b,topic==""'])
    assert compiled.topics == frozenset()
    assert compiled.matcher is not None and not compiled.matcher(ev())


@pytest.mark.parametrize(
    ("filters", "field", "words"),
    [
        (["topic=="], "filters[0]", "expected value or quoted"),
        (["topic==x", "topic~=\"(\""], "filters[1]", "bad regular expression '(': missing )"),
        (['topic~="(a)\\\\1"'], "filters[0]", "invalid escape sequence: \\1"),
        ([1], "filters[0]", "must be a string"),
    ],
)
def test_bad_filters_name_the_problem(filters: list[str], field: str, words: str) -> None:
    with pytest.raises(InvalidFilter) as info:
        compile_filters(filters)
    assert info.value.field == field
    assert words in str(info.value)


# -- bounds ------------------------------------------------------------------------------

SMALL = FilterConfig(max_filters=3, max_filter_length=20, max_total_length=30,
                     max_selectors=4, max_regexes=2)


@pytest.mark.parametrize(
    ("filters", "field", "words"),
    [
        (["a"] * 4, "filters[3]", "exceeds the limit of 3 filters per subscription"),
        (["a==" + "x" * 18], "filters[0]", "21 characters exceed the limit of 20 per filter"),
        (["a" * 15, "b" * 10, "c" * 10], "filters[2]", "35 characters so far exceed the limit"
         " of 30 per subscription"),
        (["a,b,c", "d,e"], "filters[1]", "selectors exceed the limit of 4 per subscription"),
        (["a~=x,b~=y", "c~=z"], "filters[1]", "~= selectors exceed the limit of 2"),
    ],
)
def test_bounds_refuse_with_the_filter_named(filters: list[str], field: str,
                                             words: str) -> None:
    with pytest.raises(InvalidFilter) as info:
        compile_filters(filters, limits=SMALL)
    assert info.value.field == field
    assert words in info.value.message


def test_bounds_are_checked_before_parsing() -> None:
    """A 3.5 MB filter is refused from its length alone."""
    with pytest.raises(InvalidFilter, match=r"^filters\[0\]: 3500003 characters"):
        compile_filters(["a==" + "x" * 3_500_000])


@pytest.mark.anyio
async def test_filter_cache_is_bounded_in_bytes_and_entries() -> None:
    """Distinct filter lists, each subscribed and left: the cache keeps what its byte
    budget holds, not every list (issue 9: 30 lists of 3.5 MB grew RSS by 230 MiB)."""
    def filters(i: int) -> list[str]:
        return [f'labels.k{i}_{j}~="^v{j}"' for j in range(8)]

    one = compile_filter_list(filters(0)).memory
    limits = FilterConfig(cache_bytes=5 * one + one // 2, cache_entries=50)
    async with Broadcaster(HubConfig(filters=limits)) as hub:
        for i in range(30):
            async with hub.subscribe("a", filters=filters(i)):
                pass
            assert hub.filter_cache.bytes <= limits.cache_bytes
        assert len(hub.filter_cache) == 5
        for i in range(60):
            async with hub.subscribe("a", filters=[f"labels.x=={i}"]):
                pass
        assert len(hub.filter_cache) == 50


@pytest.mark.anyio
async def test_identical_filters_share_one_matcher() -> None:
    async with Broadcaster() as hub:
        a = hub.subscribe("a", filters=['topic=="/x"', "labels.k"])
        b = hub.subscribe("a", filters=['topic=="/x"', "labels.k"])
        c = hub.subscribe("a", filters=['topic=="/y"'])
        assert a.matcher is b.matcher is not c.matcher


# -- the topic index -----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("filters", "topics"),
    [
        (['topic=="/tasks/exit"'], {"/tasks/exit"}),
        (['topic=="/a",labels.x==y', 'namespace==k8s.io,topic=="/b"'], {"/a", "/b"}),
        (['topic=="/tasks/exit",event.container_id==c1'], {"/tasks/exit"}),
        (['event.id==x,topic=="/a"', 'topic=="/b",event.id~="^c"'], {"/a", "/b"}),
        (['topic=="/a"', "nosuch==1"], {"/a"}),  # the second alternative matches nothing
        (['topic=="/a"', "labels.x==y"], None),  # the second alternative matches any topic
        (['topic=="/a"', ""], None),
        (['topic~="^/a"'], None),
        (['topic!="/a"'], None),
        ([], None),
    ],
)
def test_topics_of_is_the_only_topics_a_filter_can_match(
    filters: list[str], topics: set[str] | None
) -> None:
    assert topics_of(filters) == (None if topics is None else frozenset(topics))


@pytest.mark.anyio
async def test_a_topic_watcher_with_event_selectors_is_parked_under_its_topic() -> None:
    """Publishing other topics neither wakes it nor decodes a payload for it."""
    decoded: list[str] = []

    def fields(type_url: str, payload: bytes) -> object:
        decoded.append(type_url)
        return lambda path: (payload.decode(), True) if path == ("id",) else ("", False)

    async with Broadcaster(HubConfig(payload_fields=fields)) as hub:  # type: ignore[arg-type]
        sub = hub.subscribe("a", filters=['topic=="/tasks/exit",event.id==c1'])
        async with sub:
            assert sub.topics == frozenset({"/tasks/exit"})
            with anyio.fail_after(5):
                async with anyio.create_task_group() as tg:
                    got: list[Event] = []

                    async def read() -> None:
                        async for item in sub:
                            if isinstance(item, Event):
                                got.append(item)
                                return

                    tg.start_soon(read)
                    await all_blocked()
                    for _ in range(100):
                        await hub.publish("a", "/tasks/start", b"c1", type_url="t")
                    await all_blocked()
                    assert sub.waiting and decoded == []
                    await hub.publish("a", "/tasks/exit", b"c2", type_url="t")
                    await hub.publish("a", "/tasks/exit", b"c1", type_url="t")
            assert [e.sequence for e in got] == [102]
            assert decoded == ["t", "t"]


@pytest.mark.parametrize(("filters", "namespaces"), [
    (['namespace=="a"'], {"a"}),
    (['namespace=="a",topic=="/x"', 'topic~="^/y",namespace=="b"'], {"a", "b"}),
    (['namespace=="a"', 'topic=="/x"'], None),  # the second may match any namespace
    (['namespace!="a"'], None),
    (['namespace~="^a$"'], None),
    (['namespace=="a"', 'namespace==""'], {"a"}),  # the second matches nothing
    (['namespace=="a"', ""], None),  # the empty filter matches everything
    ([], None),
])
def test_the_namespaces_filters_can_match(filters: list[str],
                                          namespaces: set[str] | None) -> None:
    assert compile_filter_list(filters).namespaces == namespaces
