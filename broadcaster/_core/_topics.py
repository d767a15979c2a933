"""Which topics were published where, for subscriptions that filter on topics.

For every topic some subscription of a namespace filters on (``topic==X``, the
compiled filter's ``topics``), the index keeps the retained sequences published with it
and the newest one retention trimmed. A cursor of such a subscription skips a range in
which none of its topics was published without reading it, and never reports trimmed
events it could not have matched as lost.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Container, Iterable, Sequence

from ._types import Event

__all__ = ["TopicIndex"]


class TopicIndex:
    """The topics some subscription filters on, and their retained sequences."""

    __slots__ = ("_seqs", "_trimmed", "watchers")

    def __init__(self) -> None:
        self._seqs: dict[str, deque[int]] = {}
        self._trimmed: dict[str, int] = {}
        #: subscriptions filtering on each topic (empty: nothing to record at publish)
        self.watchers: dict[str, int] = {}

    def watch(self, topics: Iterable[str], head: int) -> None:
        """One more subscription filters on *topics*; *head* is the newest sequence."""
        for topic in topics:
            self.watchers[topic] = self.watchers.get(topic, 0) + 1
            if topic not in self._seqs:
                self._seqs[topic] = deque()
                # untracked before now: any earlier event may have had this topic
                self._trimmed[topic] = head

    def unwatch(self, topics: Iterable[str]) -> None:
        for topic in topics:
            left = self.watchers[topic] - 1
            if left:
                self.watchers[topic] = left
            else:
                del self.watchers[topic], self._seqs[topic], self._trimmed[topic]

    def reset(self, head: int) -> None:
        """The log began a new incarnation whose newest sequence is *head*: any event up
        to it may have had any topic watched."""
        for topic, seqs in self._seqs.items():
            seqs.clear()
            self._trimmed[topic] = head

    def note(self, events: Sequence[Event], first: int, waited: Container[str],
             published: set[str]) -> None:
        """Record the topics of *events*, just published (*first*: the oldest retained
        sequence after the log's trim); add to *published* those in *waited*."""
        by_topic = self._seqs
        for event in events:
            seqs = by_topic.get(event.topic)
            if seqs is not None:
                seqs.append(event.sequence)
                if seqs[0] < first:  # keeps each published topic's list within retention
                    self._trim(event.topic, seqs, first)
                if event.topic in waited:
                    published.add(event.topic)

    def trim(self, first: int) -> None:
        """Forget the sequences retention trimmed, for topics not published lately."""
        for topic, seqs in self._seqs.items():
            self._trim(topic, seqs, first)

    def _trim(self, topic: str, seqs: deque[int], first: int) -> deque[int]:
        if seqs and seqs[0] < first:
            while seqs and seqs[0] < first:
                last = seqs.popleft()
            self._trimmed[topic] = last
        return seqs

    def quiet_since(self, topics: frozenset[str], start: int, first: int) -> bool:
        """True if no event with one of *topics* was published at or after *start*.

        A topic no longer watched (its readers left the namespace, as when the hub
        closes: they still read what was published) may have been: False."""
        for topic in topics:
            seqs = self._seqs.get(topic)
            if seqs is None:
                return False
            self._trim(topic, seqs, first)
            if (seqs[-1] if seqs else self._trimmed[topic]) >= start:
                return False
        return True

    def lost_since(self, topics: frozenset[str], start: int, first: int) -> bool:
        """True if retention trimmed an event with one of *topics* at or after *start*
        (or may have: a topic no longer watched)."""
        for topic in topics:
            seqs = self._seqs.get(topic)
            if seqs is None:
                return True
            self._trim(topic, seqs, first)
            if self._trimmed[topic] >= start:
                return True
        return False
