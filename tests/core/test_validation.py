from __future__ import annotations

import pytest

from broadcaster import InvalidLabels, InvalidNamespace, InvalidTopic
from broadcaster._core._validation import validate_labels, validate_namespace, validate_topic


@pytest.mark.parametrize("name", ["default", "k8s.io", "moby", "a", "a-b_c.d", "A1", "x" * 76])
def test_valid_namespaces(name: str) -> None:
    assert validate_namespace(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "-a", "a-", "a..b", "a b", "a/b", "x" * 77, ".a", "a_", "ns!", "ü",
     "k8s.io\n", "k8s.io\r\n", "\nk8s.io", "k8s\n.io", "k8s.io\x00"],
)
def test_invalid_namespaces_name_the_field(name: str) -> None:
    with pytest.raises(InvalidNamespace) as info:
        validate_namespace(name)
    assert info.value.field == "namespace"
    assert str(info.value).startswith("namespace: ")


@pytest.mark.parametrize("topic", ["/tasks/exit", "/a", "/containers/delete", "/x.y/z-1_2"])
def test_valid_topics(topic: str) -> None:
    assert validate_topic(topic) == topic


@pytest.mark.parametrize(
    "topic",
    ["", "tasks/exit", "/", "/tasks/", "//x", "/tasks//exit", "/a b", "/" + "a" * 300,
     "/tasks/exit\n", "/tasks\n/exit", "/tasks/exit\r\n"],
)
def test_invalid_topics(topic: str) -> None:
    with pytest.raises(InvalidTopic) as info:
        validate_topic(topic, "items[3].topic")
    assert info.value.field == "items[3].topic"


def test_labels() -> None:
    assert validate_labels({"a": "b"}) == {"a": "b"}
    assert validate_labels(None) == {}
    with pytest.raises(InvalidLabels, match="keys must be non-empty"):
        validate_labels({"": "x"})
    with pytest.raises(InvalidLabels, match=r"labels\['k'\]"):
        validate_labels({"k": 1})  # type: ignore[dict-item]
    with pytest.raises(InvalidLabels, match="exceed"):
        validate_labels({"k": "v" * 5000})
    with pytest.raises(InvalidLabels, match="at most 64"):
        validate_labels({f"k{i}": "v" for i in range(65)})
