"""Which namespaces had events appended, newest last.

A read of a subscription looks at each of its cursors for something to give: new events
in the namespace's log, buffered events, notices, retries, a replay. For a subscription
over a thousand namespaces that is a thousand looks per read, and every heartbeat makes
every subscription read: 250 such subscriptions cost over 100 ms of one busy event loop
per heartbeat, in which every other client waited. A wide subscription
(:data:`broadcaster._core._subscription.WIDE`) looks instead at the cursors its last read
left with something to give and at the namespaces :class:`Recent` lists as appended to
since that read: O(what changed), not O(namespaces).

Appends are the only way events reach a cursor it did not have before; everything else
that gives a cursor something (notices from the durable log's availability, a new
incarnation, a new cursor) tells its subscription directly.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["Recent"]

T = TypeVar("T", bound=Hashable)


class Recent(Generic[T]):
    """Namespaces in the order of their last append, each with the generation of it.

    :ivar gen: the generation of the newest append (0: none yet); a reader remembers it
        and later asks :meth:`since` what was appended after it
    """

    __slots__ = ("_last", "gen")

    def __init__(self) -> None:
        self.gen = 0
        self._last: dict[T, int] = {}  # insertion order: oldest append first

    def note(self, ns: T) -> None:
        """*ns* had events appended (O(1))."""
        self.gen += 1
        last = self._last
        last.pop(ns, None)
        last[ns] = self.gen

    def since(self, gen: int) -> list[T]:
        """The namespaces appended to after generation *gen*, newest first."""
        out: list[T] = []
        for ns, at in reversed(self._last.items()):
            if at <= gen:
                break
            out.append(ns)
        return out

    def forget(self, ns: T) -> None:
        """*ns* was removed."""
        self._last.pop(ns, None)
