"""Where the events that subscriptions' filters require were published.

A subscription whose every filter requires ``topic==X`` is *keyed*: each of its filters
gives one key, ``(X, (), "")``, or ``(X, path, value)`` when the filter also requires
``event.<path>==<value>`` (a field of the payload). For every key some subscription of a
namespace has, the index keeps the retained sequences of the events that have it and the
newest one that may have had it but is not listed (retention trimmed it, or it came
before anyone watched the key). A cursor of a keyed subscription then skips unread the
ranges without its keys, reads only the events listed for its field keys, and never
reports trimmed events it could not have matched as lost; a parked one is woken only by
an event with one of its keys.

Topic keys are noted when events are appended (a dictionary look-up per event). Field
keys need the payload decoded: appending only queues the events of topics with field
keys (:attr:`TopicIndex.pending`), and the notifier's task reads their fields
(:meth:`TopicIndex.note_fields`), through the hub's payload reader and its cache, once
per event whatever the number of subscriptions. Until then those events are not listed
yet, and a cursor reads them (it never skips what the index has not looked at). A
pending event that retention trims before the notifier reached it is read by whoever
asks first whether it was lost (it is still referenced), so that losses stay exact; the
events so held beyond retention are bounded (:data:`MAX_UNLISTED_TRIMMED`), and past
that bound the oldest are given up as "may have had any of its topic's field keys".
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Set

from ._filters import Key
from ._payload import FieldLookup
from ._types import Event

__all__ = ["MAX_UNLISTED_TRIMMED", "Key", "TopicIndex", "topic_key"]

#: events trimmed by retention whose fields the notifier has not read yet that the index
#: keeps referenced (so that losses stay exact); past it, the oldest are given up
MAX_UNLISTED_TRIMMED = 4096

_COMPACT_SMALL = 16  # lists this short drop trimmed sequences at once


def topic_key(topic: str) -> Key:
    """The key of every event of *topic*."""
    return (topic, (), "")


class TopicIndex:
    """The keys some subscription of a namespace has, and their retained sequences.

    :param payload_of: reads the fields of an event's payload (the hub's cached reader)
    :param waited: the keys parked subscriptions wait under (the namespace's)
    :param burst: where the keys newly published and waited for are added
    :param wild: the keys parked all-namespaces subscriptions wait under (the hub's,
        shared by every namespace)
    :ivar watchers: subscriptions having each key (empty: nothing to note at publish)
    :ivar pending: events of topics with field keys whose fields are not read yet
    """

    __slots__ = ("_burst", "_fields", "_payload_of", "_plain", "_seqs", "_trimmed",
                 "_waited", "_wild", "pending", "watchers")

    def __init__(self, payload_of: Callable[[Event], FieldLookup | None],
                 waited: Mapping[Key, object], burst: set[Key],
                 wild: Mapping[Key, object] | None = None) -> None:
        self._payload_of = payload_of
        self._waited = waited
        self._wild: Mapping[Key, object] = {} if wild is None else wild
        self._burst = burst
        # sorted; the front may hold sequences retention already trimmed (dropped from
        # the list lazily, see _compact): queries bound by the log's first sequence
        self._seqs: dict[Key, list[int]] = {}
        self._trimmed: dict[Key, int] = {}
        self.watchers: dict[Key, int] = {}
        self._plain: dict[str, tuple[Key, list[int]]] = {}  # topic keys, by topic
        # field keys by topic, then path, then value
        self._fields: dict[str, dict[tuple[str, ...], dict[str, Key]]] = {}
        self.pending: deque[Event] = deque()

    # -- which keys -----------------------------------------------------------------

    def watch(self, keys: Iterable[Key], head: int) -> None:
        """One more subscription has *keys*; *head* is the newest sequence."""
        for key in keys:
            self.watchers[key] = self.watchers.get(key, 0) + 1
            if key in self._seqs:
                continue
            seqs: list[int] = []
            self._seqs[key] = seqs
            # untracked before now: any earlier event may have had this key
            self._trimmed[key] = head
            topic, path, value = key
            if path:
                self._fields.setdefault(topic, {}).setdefault(path, {})[value] = key
            else:
                self._plain[topic] = (key, seqs)

    def unwatch(self, keys: Iterable[Key]) -> None:
        for key in keys:
            left = self.watchers[key] - 1
            if left:
                self.watchers[key] = left
                continue
            del self.watchers[key], self._seqs[key], self._trimmed[key]
            topic, path, value = key
            if not path:
                del self._plain[topic]
                continue
            paths = self._fields[topic]
            values = paths[path]
            del values[value]
            if not values:
                del paths[path]
                if not paths:
                    del self._fields[topic]

    def reset(self, head: int) -> None:
        """The log began a new incarnation whose newest sequence is *head*: any event up
        to it may have had any key watched."""
        self.pending.clear()
        for key, seqs in self._seqs.items():
            seqs.clear()
            self._trimmed[key] = head

    # -- noting what was published ------------------------------------------------------

    def note(self, events: Iterable[Event], first: int) -> None:
        """Note *events*, just appended (*first*: the log's oldest retained sequence
        after the append): their topic keys now, and queue those of topics with field
        keys for :meth:`note_fields`."""
        plain, fields, waited, wild = self._plain, self._fields, self._waited, self._wild
        pending = self.pending
        queued = False
        for event in events:
            topic = event.topic
            entry = plain.get(topic)
            if entry is not None:
                key, seqs = entry
                seqs.append(event.sequence)
                if seqs[0] < first:
                    self._compact(key, seqs, first, eager=False)
                if key in waited or key in wild:
                    self._burst.add(key)
            if topic in fields:
                pending.append(event)
                queued = True
        if queued and len(pending) > MAX_UNLISTED_TRIMMED and pending[0].sequence < first:
            self._bound_pending(first)

    def note_fields(self, first: int, limit: int) -> bool:
        """Read the fields of up to *limit* pending events and list them under the field
        keys they have; return whether events remain pending."""
        pending = self.pending
        for _ in range(min(limit, len(pending))):
            self._note_fields(pending.popleft(), first)
        return bool(pending)

    def _note_fields(self, event: Event, first: int) -> None:
        paths = self._fields.get(event.topic)
        if paths is None:
            return  # nobody watches its topic's fields any more
        lookup = self._payload_of(event)
        if lookup is None:
            return  # no fields: no field key
        for path, values in paths.items():
            value, present = lookup(path)
            if present:
                key = values.get(value)
                if key is not None:
                    seqs = self._seqs[key]
                    seqs.append(event.sequence)
                    if seqs[0] < first:
                        self._compact(key, seqs, first, eager=False)
                    if key in self._waited or key in self._wild:
                        self._burst.add(key)

    def _note_trimmed(self, first: int) -> None:
        """Read now the pending events that retention trimmed (a reader asks whether
        they held its keys)."""
        pending = self.pending
        while pending and pending[0].sequence < first:
            self._note_fields(pending.popleft(), first)

    def _bound_pending(self, first: int) -> None:
        """Keep at most :data:`MAX_UNLISTED_TRIMMED` trimmed events pending; the oldest
        beyond it may have had any field key of its topic."""
        pending = self.pending
        excess = bisect_left(pending, first, key=_sequence) - MAX_UNLISTED_TRIMMED
        if excess <= 0:
            return
        given_up: dict[str, int] = {}
        for _ in range(excess):
            event = pending.popleft()
            given_up[event.topic] = event.sequence
        for topic, last in given_up.items():
            for values in self._fields.get(topic, {}).values():
                for key in values.values():
                    self._trimmed[key] = max(self._trimmed[key], last)

    # -- retention -----------------------------------------------------------------------

    def trim(self, first: int) -> None:
        """Forget the sequences retention trimmed (and read the pending events it did)."""
        self._note_trimmed(first)
        for key, seqs in self._seqs.items():
            if seqs and seqs[0] < first:
                self._compact(key, seqs, first, eager=True)

    def _compact(self, key: Key, seqs: list[int], first: int, eager: bool) -> None:
        """Drop the trimmed sequences from the front of *seqs*, noting the last one; when
        not *eager*, only once they are a good part of it (cost amortised per event)."""
        if not eager and len(seqs) > _COMPACT_SMALL and seqs[len(seqs) >> 2] >= first:
            return
        cut = bisect_left(seqs, first)
        if cut:
            if seqs[cut - 1] > self._trimmed[key]:
                self._trimmed[key] = seqs[cut - 1]
            del seqs[:cut]

    # -- what a cursor asks --------------------------------------------------------------

    def lost_since(self, keys: Set[Key], start: int, first: int) -> bool:
        """True if retention trimmed an event with one of *keys* at or after *start*
        (or may have: a key no longer watched, a given-up pending event)."""
        if self.pending and self.pending[0].sequence < first:
            self._note_trimmed(first)
        trimmed, by_key = self._trimmed, self._seqs
        for key in keys:
            seqs = by_key.get(key)
            if seqs is None or trimmed[key] >= start:
                return True
            if seqs and seqs[0] < first:  # sequences trimmed, not dropped from it yet
                i = bisect_left(seqs, start)
                if i < len(seqs) and seqs[i] < first:
                    return True
        return False

    def listing(self, keys: Set[Key], start: int, stop: int
                ) -> tuple[list[int] | None, int]:
        """What a cursor must read of ``[start, stop)`` (all retained: ``start`` is at or
        after the log's first sequence): ``(sequences, known)``.

        - ``([], stop)``: no event there has one of *keys*: skip it all, unread;
        - ``(sequences, known)``, for field keys only: in ``[start, known)`` exactly the
          events at *sequences* (sorted) have one of the keys; ``[known, stop)`` is not
          noted yet (pending) and must be read;
        - ``(None, start)``: the index cannot tell (a key untracked there or no longer
          watched; or a topic key was published there, whose events a shared filtered
          read serves best): read it all."""
        by_key, trimmed = self._seqs, self._trimmed
        plain = fielded = False
        for key in keys:
            seqs = by_key.get(key)
            if seqs is None or trimmed[key] >= start:
                return None, start
            if key[1]:
                fielded = True
            else:
                plain = True
        known = stop
        if fielded and self.pending:
            known = min(stop, max(start, self.pending[0].sequence))
        if plain:
            if known < stop:
                return None, start
            for key in keys:
                seqs = by_key[key]
                if seqs and seqs[-1] >= start:
                    return None, start
            return [], stop
        if len(keys) == 1:
            (key,) = keys
            return _between(by_key[key], start, known), known
        merged: set[int] = set()
        for key in keys:
            merged.update(_between(by_key[key], start, known))
        return sorted(merged), known


def _sequence(event: Event) -> int:
    return event.sequence


def _between(seqs: list[int], start: int, stop: int) -> list[int]:
    """The sequences of sorted *seqs* with ``start <= s < stop``."""
    i = bisect_left(seqs, start)
    return seqs[i:bisect_left(seqs, stop, lo=i)]
