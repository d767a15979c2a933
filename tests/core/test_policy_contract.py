"""What every overflow policy must do, checked for each of them (as go-events'
``common_test.go`` checks every sink):

- every event published while a subscription is registered is delivered once or
  reported dropped once (delivered + reported dropped = published), unless the policy
  gives up on the subscriber, which is then told (``Ended(slow_consumer)``) and gets
  nothing more;
- a notice carries the exact range it dropped, and the counts agree everywhere (the
  notices, the subscription's and the namespace's figures);
- a closed or ended subscription accepts nothing: it holds no publisher back, nothing is
  dropped or counted for it, and reading it fails.

First on the policy objects themselves, against a buffer that records what they do;
then through a hub, on trio's virtual clock (``block`` waits and ``retry`` deadlines
take virtual time only).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import anyio
import pytest
import trio.testing

from broadcaster import (
    DropNotice,
    DropReason,
    Ended,
    EndReason,
    Event,
    Heartbeat,
    HubConfig,
    Item,
    Policy,
)
from broadcaster._core._overflow import overflow_policy

from ._util import Broadcaster

BOUND = 4

POLICIES = {
    "drop_newest": Policy.drop_newest(BOUND),
    "drop_oldest": Policy.drop_oldest(BOUND),
    "block": Policy.block(BOUND, timeout=0.5),
    "retry": Policy.retry(BOUND, initial_backoff=0.1, max_backoff=0.4, max_attempts=3,
                          jitter=0.5),
    "disconnect": Policy.disconnect(BOUND),
    # block wraps its fallback: each of them
    "block/drop_oldest": Policy.block(BOUND, timeout=0.5, fallback="drop_oldest"),
    "block/disconnect": Policy.block(BOUND, timeout=0.5, fallback="disconnect"),
}
#: policies that may give up on a subscriber instead of dropping
GIVES_UP = {"disconnect", "block/disconnect"}

every_policy = pytest.mark.parametrize("name", list(POLICIES))


def _event(sequence: int, published_at: float = 0.0) -> Event:
    return Event("ns", "/x", b"", "", {}, 0, sequence, published_at, 300)


class RecordingBuffer:
    """A bounded buffer that records what a policy did with each event."""

    def __init__(self, max_events: int) -> None:
        self.max_events = max_events
        self.buffered: deque[Event] = deque()
        self.dropped: list[tuple[list[int], DropReason]] = []
        self.refused: list[int] = []
        self.retries: deque[tuple[Event, float]] = deque()

    def fit(self, events: Sequence[Event]) -> int:
        return min(len(events), max(0, self.max_events - len(self.buffered)))

    def put(self, events: Sequence[Event]) -> bool:
        self.buffered.extend(events)
        return len(self.buffered) > self.max_events

    def shed(self) -> list[Event]:
        return [self.buffered.popleft() for _ in range(len(self.buffered) - self.max_events)]

    def drop(self, events: Sequence[Event], reason: DropReason) -> None:
        assert events, "a drop of nothing"
        self.dropped.append(([e.sequence for e in events], reason))

    def refuse(self, events: Sequence[Event]) -> None:
        self.refused.extend(e.sequence for e in events)

    def retry_queue(self) -> deque[tuple[Event, float]]:
        return self.retries

    def read(self, n: int) -> list[int]:
        return [self.buffered.popleft().sequence for _ in range(min(n, len(self.buffered)))]


@every_policy
def test_a_policy_accounts_for_every_event_it_is_given(name: str) -> None:
    """Admitted in order, dropped with its policy's reason, waiting, or refused: each
    event exactly once, whatever the interleaving of arrivals, reads and time."""
    policy = POLICIES[name]
    overflow = overflow_policy(policy, lambda: 0.5)
    buffer = RecordingBuffer(BOUND)
    read: list[int] = []
    seq, now = 0, 0.0
    for burst, reads, elapsed in [(10, 2, 0.0), (3, 0, 0.05), (1, 3, 0.3), (6, 9, 2.0),
                                  (0, 9, 0.0), (5, 1, 0.0)]:
        events = [_event(seq + i + 1, now) for i in range(burst)]
        seq += burst
        if events:
            overflow.admit(buffer, events, now)
        now += elapsed
        if buffer.retries:
            overflow.offer(buffer, now)
        read += buffer.read(reads)
        if buffer.retries:
            overflow.offer(buffer, now)
    now += 100.0  # every deadline passed
    if buffer.retries:
        overflow.offer(buffer, now)
    read += buffer.read(len(buffer.buffered))
    dropped = [s for seqs, _ in buffer.dropped for s in seqs]
    accounted = read + dropped + buffer.refused + [e.sequence for e, _ in buffer.retries]
    assert sorted(accounted) == list(range(1, seq + 1)), "an event lost or counted twice"
    assert read == sorted(read), "delivered out of order"
    assert not buffer.retries
    expected_reason = {"drop_newest": DropReason.OVERFLOW_NEWEST,
                       "drop_oldest": DropReason.OVERFLOW_OLDEST,
                       "retry": DropReason.RETRY_EXHAUSTED}.get(name, DropReason.BLOCK_TIMEOUT)
    assert {reason for _, reason in buffer.dropped} <= {expected_reason}
    for seqs, _ in buffer.dropped:
        assert seqs == list(range(seqs[0], seqs[-1] + 1)) or name == "retry"
    assert bool(buffer.refused) == (name in GIVES_UP)
    assert bool(buffer.dropped) == (name not in GIVES_UP)
    assert overflow.sweep == (name in GIVES_UP or name == "retry")
    assert overflow.blocks == name.startswith("block")
    assert overflow.policy is policy


class Received:
    """What a subscriber was given, checked as it arrives."""

    def __init__(self) -> None:
        self.delivered: list[int] = []
        self.notices: list[DropNotice] = []
        self.ended: Ended | None = None

    def add(self, items: list[Item]) -> None:
        for item in items:
            assert self.ended is None, f"{item!r} after {self.ended!r}"
            if isinstance(item, Event):
                assert not self.delivered or item.sequence > self.delivered[-1]
                self.delivered.append(item.sequence)
            elif isinstance(item, DropNotice):
                self.notices.append(item)
            elif isinstance(item, Ended):
                self.ended = item
            else:
                assert isinstance(item, Heartbeat)

    @property
    def reported(self) -> int:
        return sum(notice.count for notice in self.notices)


def drain(sub: object, received: Received) -> None:
    while True:
        try:
            received.add(sub.receive_batch_nowait(3))  # type: ignore[attr-defined]
        except (anyio.WouldBlock, anyio.EndOfStream):
            return


@every_policy
@pytest.mark.parametrize("seed", [0, 737, 1990])
@pytest.mark.trio
async def test_delivered_plus_reported_dropped_is_published(
    name: str, seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    """*seed* draws the retry jitter: 737 and 1990 once made a notice span events
    delivered after it, and events reported in another notice."""
    config = HubConfig(overflow_check_interval=0.05, heartbeat_interval=3600.0, seed=seed)
    async with Broadcaster(config) as hub:
        async with hub.subscribe("ns", policy=POLICIES[name]) as sub:
            received, published = Received(), 0
            for burst, reads, pause in [(10, 1, 0.0), (3, 0, 0.2), (1, 2, 0.3), (6, 9, 2.0),
                                        (0, 9, 0.0), (5, 1, 0.0)]:
                for _ in range(burst):
                    await hub.publish("ns", "/x")
                published += burst
                for _ in range(reads):
                    try:
                        received.add(sub.receive_batch_nowait(1))
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                await anyio.sleep(pause)
            await anyio.sleep(10.0)  # every retry deadline passed, every sweep ran
            drain(sub, received)
            stats = hub.statistics().namespaces["ns"]
            sub_stats = sub.statistics()

    dropped = set()
    for notice in received.notices:  # exact ranges: count = positions, none delivered
        assert notice.namespace == "ns"
        span = range(notice.first_sequence, notice.last_sequence + 1)
        assert notice.count == len(span)
        assert not dropped & set(span), "a sequence reported dropped twice"
        dropped |= set(span)
    assert not dropped & set(received.delivered), "delivered and reported dropped"
    assert received.reported == sum(stats.dropped.values()) == sub_stats.dropped
    assert len(received.delivered) == stats.delivered
    if received.ended is None:
        assert name not in GIVES_UP
        assert sorted(dropped | set(received.delivered)) == list(range(1, published + 1))
    else:
        assert name in GIVES_UP
        assert received.ended.reason is EndReason.SLOW_CONSUMER
        assert stats.evicted == {"slow_consumer": 1}
        assert len(received.delivered) + received.reported < published


@every_policy
@pytest.mark.trio
async def test_a_closed_subscription_accepts_nothing(
    name: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Closed before it read anything, with its buffer full and events waiting: the
    publisher does not wait for it, nothing more is dropped or counted for it, and the
    sweep and the figures leave it alone; reading it fails."""
    config = HubConfig(overflow_check_interval=0.05, heartbeat_interval=3600.0)
    async with Broadcaster(config) as hub:
        other = hub.subscribe("ns", policy=Policy.drop_oldest(1000))
        async with other:
            sub = hub.subscribe("ns", policy=POLICIES[name])
            async with sub:
                for _ in range(2 * BOUND):
                    await hub.publish("ns", "/x")
                before = hub.statistics().namespaces["ns"]
            start = anyio.current_time()
            for _ in range(3 * BOUND):
                await hub.publish("ns", "/x")
            assert anyio.current_time() == start, "a publisher waited for a closed subscription"
            await anyio.sleep(10.0)  # sweeps, retry deadlines
            after = hub.statistics().namespaces["ns"]
            assert after.dropped == before.dropped
            assert after.evicted == before.evicted
            assert after.subscribers == 1
            with pytest.raises(anyio.ClosedResourceError):
                sub.receive_batch_nowait()
            received = Received()
            drain(other, received)
            assert received.delivered == list(range(1, 5 * BOUND + 1))


@pytest.mark.parametrize("name", sorted(GIVES_UP))
@pytest.mark.trio
async def test_an_ended_subscription_accepts_nothing(
    name: str, autojump_clock: trio.testing.MockClock
) -> None:
    config = HubConfig(overflow_check_interval=0.05, heartbeat_interval=3600.0)
    async with Broadcaster(config) as hub, hub.subscribe("ns", policy=POLICIES[name]) as sub:
        for _ in range(BOUND + 1):
            await hub.publish("ns", "/x")
        await anyio.sleep(0.1)  # the sweep gives up on it
        assert sub.end_reason is not None
        assert sub.end_reason.reason is EndReason.SLOW_CONSUMER
        start = anyio.current_time()
        for _ in range(3 * BOUND):
            await hub.publish("ns", "/x")
        assert anyio.current_time() == start
        received = Received()
        drain(sub, received)
        assert received.delivered == [] and received.notices == []
        assert received.ended == sub.end_reason
        with pytest.raises(anyio.EndOfStream):
            sub.receive_batch_nowait()
        stats = hub.statistics().namespaces["ns"]
        assert stats.dropped == {} and stats.evicted == {"slow_consumer": 1}
        assert stats.subscribers == 0
