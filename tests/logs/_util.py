"""Helpers shared by the log engine tests."""

from __future__ import annotations

from collections.abc import Sequence

from broadcaster._core._durable import NewEvent
from broadcaster._core._log import event_size
from broadcaster._core._types import Event


class Recorder:
    """A LogListener that keeps what it is told."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.resets: list[str] = []
        self.status: list[tuple[bool, str]] = []
        self.loaded = 0

    def events_added(self, namespace: str, events: Sequence[Event]) -> None:
        if self.events:
            assert events[0].sequence == self.events[-1].sequence + 1, "gap or disorder"
        self.events.extend(events)

    def history_loaded(self, namespace: str) -> None:
        self.loaded += 1

    def history_reset(self, namespace: str, epoch: str) -> None:
        self.resets.append(epoch)
        self.events.clear()

    def availability_changed(self, namespace: str, available: bool, reason: str) -> None:
        self.status.append((available, reason))

    @property
    def sequences(self) -> list[int]:
        return [e.sequence for e in self.events]


def item(n: int | str, *, event_id: str | None = None, size: int = 0,
         labels: dict[str, str] | None = None, timestamp_ns: int = 1_700_000_000_000_000_000,
         topic: str = "/tasks/exit", type_url: str = "t/x") -> NewEvent:
    payload = (str(n).encode() + b"." * size)
    labels = labels or {}
    return NewEvent(topic, payload, type_url, labels, timestamp_ns,
                    event_size(topic, payload, type_url, labels), event_id)
