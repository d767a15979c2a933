"""``~=`` patterns, compiled with RE2: the dialect of Go's ``regexp`` (what containerd
uses), matched in time linear in the text, whatever the pattern.

Python's ``re`` backtracks: ``(a+)+$`` against 30 ``a`` and a ``!`` takes minutes, and a
filter runs on the event loop. RE2 (the ``google-re2`` package, a pure regex engine and
the one import of the core beyond anyio and the standard library) has no backtracking,
and its syntax is the one Go's ``regexp/syntax`` copied: no backreferences, no
look-around, ``\\z`` but no ``\\Z``, ``(?flags)`` with ``i``, ``m``, ``s``, ``U``, and
``$`` matching only at the very end of the text unless ``(?m)``. Where the two engines
still differ, the pattern is refused here as Go refuses it (``\\C``, duplicate group
names). A pattern whose compiled form would exceed :data:`REGEX_MAX_MEMORY` is refused
too (Go has no such bound; RE2 needs one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import re2  # type: ignore[import-untyped]

__all__ = ["REGEX_MAX_MEMORY", "Regex", "RegexError", "compile_regex"]

#: RE2's memory budget per pattern (program and lazily built DFA states), in bytes
REGEX_MAX_MEMORY = 1 << 20
_MEMO_ENTRIES = 256  # recent short values and their results, per pattern
_MEMO_LENGTH = 128  # longest value remembered

_OPTIONS: Any = re2.Options()
_OPTIONS.log_errors = False
_OPTIONS.never_capture = True
_OPTIONS.max_mem = REGEX_MAX_MEMORY
_UNANCHORED: Any = re2._re2.RE2.Anchor.UNANCHORED
_RE2: Any = re2._re2.RE2


class RegexError(ValueError):
    """A pattern Go's ``regexp`` (or RE2's memory bound) refuses."""


class Regex:
    """A compiled pattern.

    :ivar pattern: the source
    :ivar search: ``search(text)`` is True when the pattern matches anywhere in *text*
        (Go's ``MatchString``)
    :ivar memory: an upper bound of the bytes it may hold (program and DFA cache)
    """

    __slots__ = ("memory", "pattern", "search")

    def __init__(self, pattern: str, compiled: Any) -> None:
        self.pattern = pattern
        self.memory = (16 * int(compiled.ProgramSize()) + REGEX_MAX_MEMORY // 4
                       + _MEMO_ENTRIES * (_MEMO_LENGTH + 100))
        match = compiled.Match
        memo: dict[str, bool] = {}  # label values and topics repeat: skip RE2's call

        def search(text: str) -> bool:
            found = memo.get(text)
            if found is not None:
                return found
            data = text.encode("utf-8", "surrogatepass")
            found = bool(match(_UNANCHORED, data, 0, len(data))[0][0] >= 0)
            if len(text) <= _MEMO_LENGTH:
                if len(memo) >= _MEMO_ENTRIES:
                    memo.clear()
                memo[text] = found
            return found

        self.search: Callable[[str], bool] = search


def _go_incompatibility(pattern: str) -> str | None:
    """What Go's ``regexp`` refuses in *pattern* that RE2 would accept, or None."""
    if any("\ud800" <= ch <= "\udfff" for ch in pattern):
        return "invalid UTF-8"
    names: set[str] = set()
    i, end = 0, len(pattern)
    while i < end:
        ch = pattern[i]
        if ch == "\\" and i + 1 < end:
            nxt = pattern[i + 1]
            if nxt == "Q":  # literal text up to \E
                stop = pattern.find("\\E", i + 2)
                i = end if stop < 0 else stop + 2
                continue
            if nxt == "C":
                return "invalid escape sequence: `\\C`"
            i += 2
            continue
        if ch == "(" and pattern.startswith(("(?P<", "(?<"), i):
            start = pattern.index("<", i) + 1
            close = pattern.find(">", start)
            if close > 0:
                name = pattern[start:close]
                if name in names:
                    return f"duplicate capture group name: `{name}`"
                names.add(name)
        i += 1
    return None


def compile_regex(pattern: str) -> Regex:
    """Compile *pattern* in Go's dialect.

    :raises RegexError: naming what is wrong, as RE2 or Go words it
    """
    problem = _go_incompatibility(pattern)
    if problem is not None:
        raise RegexError(problem)
    compiled = _RE2(pattern.encode("utf-8"), _OPTIONS)
    if not compiled.ok():
        error = compiled.error()
        raise RegexError(error.decode("utf-8", "replace") if isinstance(error, bytes) else error)
    return Regex(pattern, compiled)
