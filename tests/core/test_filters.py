from __future__ import annotations

import pytest

from broadcaster import Event, InvalidFilter, compile_filters
from broadcaster._core._filters import topics_of


def ev(ns: str = "k8s.io", topic: str = "/tasks/exit", labels: dict[str, str] | None = None,
       type_url: str = "containerd.events.TaskExit") -> Event:
    return Event(ns, topic, b"", type_url, labels or {}, 0, 1, 0.0, 0)


@pytest.mark.parametrize(
    ("filters", "event", "expected"),
    [
        (['topic=="/tasks/exit"'], ev(), True),
        (['topic=="/tasks/exit"'], ev(topic="/tasks/start"), False),
        (["topic==/tasks/exit"], ev(), True),
        (['topic~="^/tasks/"'], ev(topic="/tasks/oom"), True),
        (['topic~="^/tasks/"'], ev(topic="/containers/delete"), False),
        (["topic~=/^\\/tasks\\//"], ev(topic="/tasks/oom"), True),
        (["namespace==k8s.io"], ev(), True),
        (["namespace==moby"], ev(), False),
        (["namespace!=moby"], ev(), True),
        (['namespace==k8s.io,topic=="/tasks/exit"'], ev(), True),
        (['namespace==k8s.io,topic=="/tasks/exit"'], ev(ns="moby"), False),
        (["namespace==moby", 'topic=="/tasks/exit"'], ev(), True),  # OR
        (["labels.app==web"], ev(labels={"app": "web"}), True),
        (["labels.app==web"], ev(labels={"app": "db"}), False),
        (["labels.app"], ev(labels={"app": "db"}), True),
        (["labels.app"], ev(), False),
        (["labels.app!=web"], ev(), True),  # absent counts as "not equal", as in containerd
        (['labels."io.k8s.pod"==p1'], ev(labels={"io.k8s.pod": "p1"}), True),
        (['type=="containerd.events.TaskExit"'], ev(), True),
        ([' topic == "/tasks/exit" , namespace == k8s.io '], ev(), True),
        (['topic=="a\\"b"'], ev(topic='a"b'), True),
    ],
)
def test_matching(filters: list[str], event: Event, expected: bool) -> None:
    matcher = compile_filters(filters)
    assert matcher is not None
    assert matcher(event) is expected


def test_no_filters_means_everything() -> None:
    assert compile_filters([]) is None


@pytest.mark.parametrize(
    ("filters", "field", "words"),
    [
        (["topic=="], "filters[0]", "expected a value"),
        (["=="], "filters[0]", "expected a field name"),
        (["topic=/x"], "filters[0]", "expected '=='"),
        (['topic=="/x'], "filters[0]", "unterminated"),
        (["ok==1", "nosuch==1"], "filters[1]", "unknown field 'nosuch'"),
        (["topic~=\"(\""], "filters[0]", "bad regular expression"),
        (["labels==x"], "filters[0]", "labels.KEY"),
        (["topic.x==1"], "filters[0]", "no sub-fields"),
        ([""], "filters[0]", "is empty"),
        (["topic==a b"], "filters[0]", "expected ','"),
        (['topic=="\\q"'], "filters[0]", "unknown escape"),
    ],
)
def test_bad_filters_name_the_problem(filters: list[str], field: str, words: str) -> None:
    if filters[0] == "ok==1":
        filters = ["topic==1", filters[1]]
    with pytest.raises(InvalidFilter) as info:
        compile_filters(filters)
    assert info.value.field == field
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("filters", "topics"),
    [
        (['topic=="/tasks/exit"'], {"/tasks/exit"}),
        (['topic=="/a",labels.x==y', 'namespace==k8s.io,topic=="/b"'], {"/a", "/b"}),
        (['topic=="/a"', "labels.x==y"], None),  # the second alternative matches any topic
        (['topic~="^/a"'], None),
        (['topic!="/a"'], None),
        ([], None),
    ],
)
def test_topics_of_is_the_only_topics_a_filter_can_match(
    filters: list[str], topics: set[str] | None
) -> None:
    assert topics_of(filters) == (None if topics is None else frozenset(topics))
