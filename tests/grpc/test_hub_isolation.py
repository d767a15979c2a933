"""What one broken or hostile Subscribe client can do to the others, over real
connections: heartbeat acks must answer heartbeats, and a client that stops reading its
stream cannot hold publishers hostage."""

from __future__ import annotations

from typing import Any

import anyio
import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2

from broadcaster import HubConfig, NamespaceConfig
from broadcaster.v1 import broadcaster_pb2 as pb

from ._helpers import ack, add, publish, read_kind, stub, wait_acked, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("shared_event_loop")]

FAST = HubConfig(heartbeat_interval=0.05, max_missed_heartbeats=3)


#: heartbeats every 0.05 s, eviction only after 500 s without an ack: no scheduling delay
#: decides a test (a 0.15 s limit did, on a loaded machine); whether acks counted is read
#: from the hub once they were handled
PATIENT = HubConfig(heartbeat_interval=0.05, max_missed_heartbeats=10_000)


async def test_acking_what_arrives_keeps_every_subscription_alive(make_server: Any) -> None:
    """The server sends one Heartbeat per stream; answering it counts for all the stream's
    subscriptions, including one added after that heartbeat went out (that counted acks
    keep a subscription alive, and a missing one evicts it, is timed on trio's virtual
    clock in tests/core/test_heartbeats.py)."""
    server = await make_server(hub=PATIENT)
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        call = stub(channel).Subscribe()
        await call.write(add("first", ("default",)))
        heartbeats = 0
        with anyio.fail_after(20):
            while heartbeats < 24:
                response = await call.read()
                kind = response.WhichOneof("kind")
                assert kind in ("add_result", "heartbeat"), response
                if kind == "heartbeat":
                    heartbeats += 1
                    heartbeat_id = response.heartbeat.heartbeat_id
                    await call.write(ack(heartbeat_id))
                    # every subscription of the stream counts it ("later" from the 4th)
                    await wait_acked(server.hub, heartbeat_id, 1 if heartbeats <= 3 else 2)
                    if heartbeats == 3:
                        await call.write(add("later", ("default",)))
        assert server.hub.subscription_count == 2
        stats = server.hub.statistics()
        assert stats.heartbeat_acks_ignored == 0
        assert stats.namespaces["default"].evicted == {}
        call.cancel()


async def test_blind_acks_are_ignored_and_counted(make_server: Any) -> None:
    """``Ack(heartbeat_id=0)`` every few seconds kept a dead subscriber forever."""
    server = await make_server(hub=FAST)
    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        call = stub(channel).Subscribe()
        await call.write(add("blind", ("default",)))
        assert (await read_kind(call, "add_result")).ok

        async def ack_zero() -> None:
            while True:
                await call.write(ack(0))
                await anyio.sleep(0.02)

        async with anyio.create_task_group() as tg:
            tg.start_soon(ack_zero)
            ended = await read_kind(call, "subscription_ended", within=10)
            tg.cancel_scope.cancel()
        assert (ended.subscription_id, ended.reason) == ("blind", "heartbeat_timeout")
        assert server.hub.statistics().heartbeat_acks_ignored > 0
        call.cancel()


async def test_a_client_that_stops_reading_cannot_hold_publishers_hostage(
    make_server: Any,
) -> None:
    """``block`` with room for one event and a huge timeout (allowed here on purpose), a
    client that never reads its stream and keeps acking the newest heartbeat id: every
    publish into that namespace used to hang. Now the subscription is evicted once its
    stream stops taking events, the publishes go through and another subscriber of the
    namespace loses nothing."""
    hub = HubConfig(heartbeat_interval=0.1, max_missed_heartbeats=3,
                    default_namespace=NamespaceConfig(max_block_timeout=1e6))
    server = await make_server(hub=hub, batch_max_events=8, batch_linger=0)
    address = server.addresses[0]
    total = 400
    async with (
        grpc.aio.insecure_channel(address) as stuck_channel,
        grpc.aio.insecure_channel(address) as healthy_channel,
        grpc.aio.insecure_channel(address) as publisher,
    ):
        stuck = stub(stuck_channel).Subscribe()
        policy = pb.OverflowPolicy(kind=pb.OverflowPolicy.BLOCK, max_events=1,
                                   block_timeout=duration_pb2.Duration(seconds=10**6))
        await stuck.write(add("stuck", ("ns",), policy=policy))
        assert (await read_kind(stuck, "add_result")).ok  # and never reads again
        healthy = stub(healthy_channel).Subscribe()
        await healthy.write(add("healthy", ("ns",)))
        assert (await read_kind(healthy, "add_result")).ok
        received: list[int] = []

        async def keep_acking_the_newest_id() -> None:
            while True:
                await stuck.write(ack(server.hub.heartbeat_id))
                await anyio.sleep(0.03)

        async def read_healthy() -> None:
            while len(received) < total:
                response = await healthy.read()
                kind = response.WhichOneof("kind")
                if kind == "heartbeat":
                    await healthy.write(ack(response.heartbeat.heartbeat_id))
                elif kind == "event_batch":
                    received.extend(d.event.sequence for d in response.event_batch.deliveries)
                else:
                    assert kind != "drop_notice", response

        payload = any_pb2.Any(type_url="t", value=b"x" * 16384)  # fills flow control fast
        async with anyio.create_task_group() as tg:
            tg.start_soon(keep_acking_the_newest_id)
            tg.start_soon(read_healthy)
            with anyio.fail_after(30):  # it used to hang here for good
                for _ in range(total):
                    await publish(publisher, "ns", "/x", payload=payload)
                await wait_until(lambda: len(received) == total, within=10)
            tg.cancel_scope.cancel()
        assert received == list(range(1, total + 1))
        evicted = server.hub.statistics().namespaces["ns"].evicted
        assert sum(evicted.values()) == 1
        assert evicted.keys() <= {"not_consuming", "heartbeat_timeout"}
        stuck.cancel()
        healthy.cancel()


class _HeldTurns:
    """``Turns.take`` replaced so that no stream's turn comes until :attr:`gate` is set:
    a saturated event loop, as far as the streams can tell. Counts the streams held."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from broadcaster.grpc._turns import Turns

        self.gate = anyio.Event()
        self.held = 0
        self._monkeypatch = monkeypatch
        self._take = Turns.take

    def hold(self) -> None:
        from broadcaster.grpc._turns import Turns

        async def busy_take(turns: Turns, key: str = "") -> None:
            if not self.gate.is_set():
                self.held += 1
                await self.gate.wait()
            await self._take(turns, key)

        self._monkeypatch.setattr(Turns, "take", busy_take)


async def test_a_stream_the_server_is_too_busy_to_serve_is_not_evicted(
    make_server: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server's Subscribe streams wait for their turn of a saturated event loop
    (issue 9, ``fanout_streams``: thousands of streams ahead of it) far longer than the
    liveness limit, while its client reads everything it is sent and answers every
    heartbeat. The loop itself never stalls, so only the stream knows the time was the
    server's: the subscription used to be evicted (``not_consuming`` with events waiting,
    or ``heartbeat_timeout``); now it is kept and gets every event once its turn comes."""
    server = await make_server(hub=FAST)  # evicted after 0.15 s of the client's time
    turns = _HeldTurns(monkeypatch)

    async with (
        grpc.aio.insecure_channel(server.addresses[0]) as channel,
        grpc.aio.insecure_channel(server.addresses[0]) as publisher,
    ):
        call = stub(channel).Subscribe()
        await call.write(add("s", ("ns",)))
        assert (await read_kind(call, "add_result")).ok
        first = (await read_kind(call, "heartbeat")).heartbeat_id
        await call.write(ack(first))
        await wait_acked(server.hub, first, 1)
        turns.hold()  # the stream's turn does not come
        for _ in range(5):
            await publish(publisher, "ns", "/x")
        await wait_until(lambda: turns.held == 1)
        # 20 heartbeats (1 s) go by: 6x the limit
        await wait_until(lambda: server.hub.heartbeat_id >= first + 20)
        assert server.hub.subscription_count == 1
        assert server.hub.statistics().namespaces["ns"].evicted == {}
        turns.gate.set()
        received: list[int] = []
        with anyio.fail_after(10):
            while len(received) < 5:
                response = await call.read()
                kind = response.WhichOneof("kind")
                assert kind in ("event_batch", "heartbeat"), response
                if kind == "heartbeat":
                    await call.write(ack(response.heartbeat.heartbeat_id))
                else:
                    received.extend(d.event.sequence for d in response.event_batch.deliveries)
        assert received == [1, 2, 3, 4, 5]
        assert server.hub.subscription_count == 1
        call.cancel()


async def test_a_containerd_stream_the_server_is_too_busy_to_serve_is_not_evicted(
    make_server: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same on the containerd API (no acks: ``liveness="consume"``): the stream's
    wait for its turn is the server's time, not the client's."""
    from broadcaster.containerd.services.events.v1 import events_pb2, events_pb2_grpc

    server = await make_server(hub=FAST)
    turns = _HeldTurns(monkeypatch)

    async with grpc.aio.insecure_channel(server.addresses[0]) as channel:
        call = events_pb2_grpc.EventsStub(channel).Subscribe(events_pb2.SubscribeRequest())
        await wait_until(lambda: server.hub.subscription_count == 1)
        await server.hub.publish("ns", "/x")
        with anyio.fail_after(10):
            assert (await call.read()).topic == "/x"
        turns.hold()  # the stream's turn does not come
        for _ in range(3):
            await server.hub.publish("ns", "/y")
        await wait_until(lambda: turns.held == 1)
        start = server.hub.heartbeat_id
        await wait_until(lambda: server.hub.heartbeat_id >= start + 20)  # 6x the limit
        assert server.hub.subscription_count == 1
        turns.gate.set()
        with anyio.fail_after(10):
            topics = [(await call.read()).topic for _ in range(3)]
        assert topics == ["/y"] * 3
        assert server.hub.subscription_count == 1
        assert server.hub.statistics().namespaces["ns"].evicted == {}
        call.cancel()
