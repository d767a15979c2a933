"""``~=`` patterns mean what they mean in containerd (Go's regexp, through RE2), and no
pattern can stall the hub."""

from __future__ import annotations

import anyio
import pytest

from broadcaster import Event, InvalidFilter, compile_filters
from broadcaster._core._regex import compile_regex

from ._util import Broadcaster, drain, events_of


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("a$", "a\n", False),  # Go: $ is the end of the text; Python's re matches here
        ("(?m)a$", "a\n", True),
        ("a\\z", "a", True),
        ("^/tasks/", "/tasks/exit", True),
        ("tasks", "/tasks/exit", True),  # unanchored, as MatchString
        ("(?i)EXIT", "/tasks/exit", True),
        ("(?i:E)XIT", "/tasks/exit", False),
        ("a.b", "a\nb", False),  # . excludes newline unless (?s)
        ("(?s)a.b", "a\nb", True),
        ("(?U)a+", "aaa", True),
        ("\\Qa.b\\E", "a.b", True),
        ("\\Qa.b\\E", "axb", False),
        ("[[:alpha:]]+\\d", "ab1", True),
        ("\\pL\\p{Greek}", "x\u03b1", True),
        ("\\PL", "abc", False),
        ("\\x{e9}", "\u00e9", True),
        ("^.$", "\u00e9", True),  # one rune, not two bytes
        ("\\bexit\\b", "/tasks/exit", True),
        ("(?P<name>x)|(?<other>y)", "y", True),
        ("x{2,3}", "xx", True),
        ("\\141", "a", True),  # octal
        ("(a+)+$", "a" * 30 + "!", False),  # linear time: no catastrophic backtracking
        ("(x+x+)+y", "x" * 5000, False),
    ],
)
def test_go_semantics(pattern: str, text: str, expected: bool) -> None:
    assert compile_regex(pattern).search(text) is expected


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        ("(a)\\1", "invalid escape sequence: \\1"),  # no backreferences
        ("(?=a)", "invalid perl operator: (?="),  # no look-around
        ("(?<!a)b", "invalid"),
        ("\\Z", "invalid escape sequence: \\Z"),  # Python's \Z is Go's \z
        ("\\C", "invalid escape sequence: `\\C`"),  # RE2 has it, Go does not
        ("(?P<a>x)(?P<a>y)", "duplicate capture group name"),
        ("a{1001}", "invalid repetition size"),
        ("a**", "bad repetition operator"),
        ("(?x)a", "invalid perl operator"),  # no verbose flag
        ("[z-a]", "invalid character class range"),
        ("(", "missing )"),
        ("\\pL{1000}", "pattern too large"),  # past RE2's memory bound
    ],
)
def test_what_go_refuses_is_refused(pattern: str, words: str) -> None:
    with pytest.raises(InvalidFilter) as info:
        compile_filters([f"topic~={_quoted(pattern)}"])
    assert info.value.field == "filters[0]"
    assert words in info.value.message


def _quoted(pattern: str) -> str:
    return '"' + pattern.replace("\\", "\\\\").replace('"', '\\"') + '"'


def test_a_pattern_from_an_escaped_filter_value() -> None:
    """Go-quoted values unescape before the pattern is compiled: ``"\\\\."`` is ``\\.``."""
    matcher = compile_filters(['topic~="^/a\\\\.b$"'])
    assert matcher is not None
    event = Event("ns", "/a.b", b"", "", {}, 0, 1, 0.0, 0)
    assert matcher(event)
    assert not matcher(Event("ns", "/axb", b"", "", {}, 0, 1, 0.0, 0))


def test_a_pattern_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(InvalidFilter, match="invalid UTF-8"):
        compile_filters(['topic~="\\xff"'])


@pytest.mark.anyio
async def test_a_catastrophic_pattern_stalls_no_one() -> None:
    """Issue 9: ``labels.x~="(a+)+$"`` and one event labelled ``"a"*30 + "!"`` froze every
    namespace for 70 s. Now the hostile subscriber's read is as quick as any other, and
    another namespace's publish and delivery go on (bounded generously: Python's re took
    minutes here)."""
    async with Broadcaster() as hub:
        hostile = hub.subscribe("a", filters=['labels.x~="(a+)+$"'])
        other = hub.subscribe("b")
        async with hostile, other:
            with anyio.fail_after(10):
                for n in range(200):
                    await hub.publish("a", "/x", labels={"x": "a" * (30 + n % 5) + "!"})
                await hub.publish("a", "/x", labels={"x": "aaa"})
                assert [e.labels["x"] for e in events_of(drain(hostile))] == ["aaa"]
                await hub.publish("b", "/y")
                assert [e.topic for e in events_of(drain(other))] == ["/y"]
