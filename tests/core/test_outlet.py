"""Liveness of subscriptions read by an edge stream (an :class:`Outlet`): the client is
charged only with the time its stream waited on it, never with the server's own backlog
(issue 9, ``fanout_streams``: healthy subscribers evicted while the loop was saturated).
On trio's virtual clock."""

from __future__ import annotations

import anyio
import pytest
import trio.testing

from broadcaster import Ended, EndReason, Event, Heartbeat, HubConfig, Outlet, Subscription
from broadcaster._core._lag import LoopMonitor

from ._util import Broadcaster

#: eviction after 3 s of the client's time
CONFIG = HubConfig(heartbeat_interval=1.0, max_missed_heartbeats=3)


def _on(outlet: Outlet, sub: Subscription) -> Subscription:
    sub.outlet = outlet
    return sub


def _heartbeats(items: list[object]) -> list[int]:
    return [i.heartbeat_id for i in items if isinstance(i, Heartbeat)]


@pytest.mark.trio
async def test_a_subscription_its_stream_has_not_read_yet_is_not_charged(
    autojump_clock: trio.testing.MockClock
) -> None:
    """The stream waits for its turn of a saturated loop for 20 s (ten times the limit):
    events wait and heartbeats are not even given. The loop itself never stalled, so
    only the outlet knows the time was the server's: the subscription read by the stream
    is kept; one without an outlet, in the same state, is evicted as before."""
    async with Broadcaster(CONFIG) as hub:
        outlet = hub.outlet()
        async with (
            _on(outlet, hub.subscribe("a", liveness="ack")) as served,
            hub.subscribe("a", liveness="ack") as plain,
        ):
            for _ in range(5):
                await hub.publish("a", "/x")
            await anyio.sleep(20)
            assert hub.statistics().loop_stalled_seconds == 0.0
            assert served.end_reason is None
            assert plain.end_reason is not None
            assert plain.end_reason.reason is EndReason.NOT_CONSUMING
            items = served.receive_batch_nowait()  # the stream's turn came at last
            events = [i for i in items if isinstance(i, Event)]
            assert [e.sequence for e in events] == [1, 2, 3, 4, 5]
            assert _heartbeats(items) == [hub.heartbeat_id]
            assert hub.statistics().namespaces["a"].evicted == {"not_consuming": 1}


@pytest.mark.trio
async def test_a_write_the_client_does_not_take_is_charged(
    autojump_clock: trio.testing.MockClock
) -> None:
    """A client that stops reading: the stream's write stays in flight (flow control).
    That is the client's time: with events waiting it is evicted ``not_consuming`` at the
    first heartbeat pass more than 3 s after the write began, acks or not."""
    async with Broadcaster(CONFIG) as hub:
        outlet = hub.outlet()
        async with _on(outlet, hub.subscribe("a", liveness="ack")) as sub:
            await hub.publish("a", "/x")
            sub.receive_batch_nowait()
            await anyio.sleep(0.5)
            outlet.write_started()  # and it never completes
            await hub.publish("a", "/x")
            assert await _ended(sub) is EndReason.NOT_CONSUMING
            # the pass at 4 finds the write 3.5 s in flight
            assert anyio.current_time() == pytest.approx(4.0, abs=0.011)


@pytest.mark.trio
async def test_a_heartbeat_is_charged_from_when_it_was_written(
    autojump_clock: trio.testing.MockClock
) -> None:
    """The stream gives the subscription its heartbeat only at 6.2 s (its backlog) and
    writes it at once: the client owes an answer from then, not from when the hub sent
    the heartbeat; one that never answers is evicted 3 s of its time later."""
    async with Broadcaster(CONFIG) as hub:
        outlet = hub.outlet()
        async with _on(outlet, hub.subscribe("a", liveness="ack")) as sub:
            await anyio.sleep(6.2)
            [heartbeat] = _heartbeats(sub.receive_batch_nowait())
            outlet.write_started()
            await anyio.sleep(0.1)
            outlet.write_done(heartbeat)
            assert await _ended(sub) is EndReason.HEARTBEAT_TIMEOUT
            # owed from 6.2: the pass at 9 finds 2.8 s, the one at 10 finds 3.8 s
            assert anyio.current_time() == pytest.approx(10.0, abs=0.011)


@pytest.mark.trio
async def test_a_client_that_answers_what_it_is_written_stays(
    autojump_clock: trio.testing.MockClock
) -> None:
    """Heartbeats given late (the stream reads the subscription every 2.5 s only),
    written, answered 0.3 s later; one answer reaches the loop before the write's
    completion does. Kept for 30 s."""
    async with Broadcaster(CONFIG) as hub:
        outlet = hub.outlet()
        async with _on(outlet, hub.subscribe("a", liveness="ack")) as sub:
            for round_ in range(12):
                await anyio.sleep(2.5)
                given = _heartbeats(sub.receive_batch_nowait())
                assert given, round_
                outlet.write_started()
                await anyio.sleep(0.05)
                if round_ == 5:  # the answer is read before the write's completion
                    outlet.acked(given[-1])
                    outlet.write_done(given[-1])
                    assert sub.ack(given[-1])
                    continue
                outlet.write_done(given[-1])
                await anyio.sleep(0.3)
                outlet.acked(given[-1])
                assert sub.ack(given[-1])
            assert sub.end_reason is None
            assert outlet.owed(anyio.current_time()) == pytest.approx(11 * 0.35 + 0.05)


@pytest.mark.trio
async def test_blind_answers_do_not_stop_the_clock(
    autojump_clock: trio.testing.MockClock
) -> None:
    """Answers of heartbeats never sent (0, ahead of the hub) or older than the one
    written leave the client owing."""
    async with Broadcaster(CONFIG) as hub:
        outlet = hub.outlet()
        async with _on(outlet, hub.subscribe("a", liveness="ack")) as sub:
            await anyio.sleep(2.5)
            given = _heartbeats(sub.receive_batch_nowait())
            assert given == [2]
            outlet.write_started()
            outlet.write_done(2)
            start = anyio.current_time()
            for answer in (0, 1, hub.heartbeat_id + 1, 10**9):
                outlet.acked(answer)
            await anyio.sleep(1)
            assert outlet.owed(anyio.current_time()) == pytest.approx(
                anyio.current_time() - start)
            assert await _ended(sub) is EndReason.HEARTBEAT_TIMEOUT
            items = sub.receive_batch_nowait()
            assert isinstance(items[-1], Ended)


@pytest.mark.trio
async def test_a_busy_stream_sending_every_sixth_heartbeat_keeps_its_client(
    autojump_clock: trio.testing.MockClock
) -> None:
    """A stream that writes every 0.2 s, each write in flight 0.12 s (its completion
    reaching a saturated loop late), and that sends only every sixth heartbeat (the
    heartbeat budget), answered 0.05 s after it is written: between two answers the
    client owed 6 x 0.6 = 3.6 s in short stretches, over the 3 s limit, and was evicted
    (issue 9, ``fanout_streams``). Every stretch ends with the client owing nothing, so
    it stays for 30 s; once its writes stop being taken it is evicted on time."""
    async with Broadcaster(CONFIG) as hub:
        outlet = hub.outlet()
        async with _on(outlet, hub.subscribe("a", liveness="ack")) as sub:
            given: list[int] = []
            answered = 0
            for _ in range(150):  # 30 s
                await hub.publish("a", "/x")
                given += _heartbeats(sub.receive_batch_nowait())
                due = [h for h in given if h % 6 == 0 and h > answered]
                outlet.write_started()
                await anyio.sleep(0.12)
                outlet.write_done(due[-1] if due else 0)
                if due:
                    await anyio.sleep(0.05)
                    outlet.acked(due[-1])
                    assert sub.ack(due[-1])
                    answered = due[-1]
                    await anyio.sleep(0.03)
                else:
                    await anyio.sleep(0.08)
            assert answered >= 24 and sub.end_reason is None
            assert outlet.owed(anyio.current_time()) > 15  # what it used to be charged
            outlet.write_started()  # a write the client never takes
            stuck = anyio.current_time()
            assert await _ended(sub) is EndReason.HEARTBEAT_TIMEOUT
            assert 3.0 < anyio.current_time() - stuck <= 4.0 + 0.011


def test_the_server_share_of_a_write_is_not_the_clients() -> None:
    """The arithmetic: a stall of the loop inside a write, and the loop's lag (the
    write's completion reached the loop that late), are not counted; the time writing
    and the time owing an answer overlap once."""
    now = [0.0]
    monitor = LoopMonitor(interval=0.1, horizon=100.0)
    outlet = Outlet(lambda: now[0], monitor, lambda: 7)
    outlet.write_started()
    now[0] = 1.0
    monitor.observe(0.4, 0.6)  # a 0.2 s stall during the write
    monitor.measure(0.05)  # the loop runs 0.05 s late
    assert outlet.written(1.0) == pytest.approx(0.75)
    outlet.write_done(7)
    assert outlet.written(1.0) == pytest.approx(0.75)
    now[0] = 1.5
    assert outlet.owed(1.5) == pytest.approx(1.25)  # the write, then the heartbeat owed
    outlet.acked(7)
    now[0] = 9.0
    assert outlet.owed(9.0) == pytest.approx(1.25)
    assert outlet.written(9.0) == pytest.approx(0.75)


async def _ended(sub: Subscription) -> EndReason:
    """Let the (virtual) time run until *sub* is ended; why it was."""
    with anyio.fail_after(10):
        while sub.end_reason is None:
            await anyio.sleep(0.01)
    return sub.end_reason.reason
