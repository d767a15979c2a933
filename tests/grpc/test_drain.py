"""The Subscribe stream's drain (``broadcaster/grpc/_drain.py``): what the pump read,
turned into the stream's messages. No server, no event loop: items in, bytes out, parsed
back with protobuf."""

from __future__ import annotations

from broadcaster import DropNotice, DropReason, Ended, EndReason, Event, Heartbeat
from broadcaster.grpc._drain import Drain, Recipient
from broadcaster.grpc._encode import EventEncoder, encode_add_result, encode_event
from broadcaster.v1 import broadcaster_pb2 as pb


def _event(seq: int, namespace: str = "a") -> Event:
    return Event(namespace, "/t", b"p%d" % seq, "", {}, 1_700_000_000 * 10**9 + seq, seq,
                 0.0, 10)


class _Stream:
    """A drain with the stream's side recorded."""

    def __init__(self, max_events: int = 100, max_bytes: int = 1 << 20) -> None:
        self.latest = {"a": 7}
        self.epochs = {"a": "ep"}
        self.ended: list[str] = []
        self.heartbeat_epochs: dict[str, str] = {}
        self.drain = Drain(EventEncoder(), max_events, max_bytes)

    def take(self) -> list[tuple[str, object]]:
        """Each message as (kind, what matters of it)."""
        out: list[tuple[str, object]] = []
        for data in self.drain.take(lambda: (dict(self.latest), dict(self.epochs)),
                                    lambda r: self.ended.append(r.id)):
            message = pb.SubscribeResponse.FromString(data)
            kind = message.WhichOneof("kind")
            if kind == "event_batch":
                out.append((kind, [((d.event.namespace, d.event.sequence),
                                    list(d.subscription_ids))
                                   for d in message.event_batch.deliveries]))
            elif kind == "heartbeat":
                hb = message.heartbeat
                out.append((kind, (hb.heartbeat_id, dict(hb.latest_sequences), hb.epoch)))
                self.heartbeat_epochs = dict(hb.epochs)
            else:
                out.append((kind, getattr(message, kind).subscription_id))
        return out


def test_the_same_events_of_several_subscriptions_go_out_once_with_every_id() -> None:
    stream, a, b = _Stream(), Recipient("a"), Recipient("b")
    events = [_event(1), _event(2)]
    stream.drain.put(a, events)
    stream.drain.put(b, list(events))  # another list of the same Event objects
    assert stream.take() == [("event_batch", [(("a", 1), ["a", "b"]), (("a", 2), ["a", "b"])])]


def test_events_matched_by_some_subscriptions_only_carry_their_ids_in_order() -> None:
    stream, a, b, c = _Stream(), Recipient("a"), Recipient("b"), Recipient("c")
    e1, e2, e3, other = _event(1), _event(2), _event(3), _event(2, "b")
    stream.drain.put(a, [e1, e2, e3])
    stream.drain.put(b, [e1, e3])
    stream.drain.put(c, [e1, other, e3])  # same ends and length as a's, another middle
    assert stream.take() == [("event_batch", [
        (("a", 1), ["a", "b", "c"]), (("a", 2), ["a"]), (("a", 3), ["a", "b", "c"]),
        (("b", 2), ["c"])])]


def test_notices_and_messages_keep_their_place_between_events() -> None:
    stream, a, b = _Stream(), Recipient("a"), Recipient("b")
    drop = DropNotice("a", 3, 2, 4, DropReason.OVERFLOW_NEWEST)
    stream.drain.put_message(encode_add_result("a", epoch="e"))
    stream.drain.put(a, [_event(1), drop, _event(5)])
    stream.drain.put_message(encode_add_result("b", epoch="e"))
    stream.drain.put(b, [_event(6)])
    assert stream.take() == [
        ("add_result", "a"),
        ("event_batch", [(("a", 1), ["a"])]),
        ("drop_notice", "a"),
        ("event_batch", [(("a", 5), ["a"])]),
        ("add_result", "b"),
        ("event_batch", [(("a", 6), ["b"])]),
    ]


def test_one_heartbeat_per_heartbeat_for_the_whole_stream() -> None:
    stream, a, b = _Stream(), Recipient("a"), Recipient("b")
    stream.drain.put(a, [_event(1), Heartbeat(5, {"a": 1}, "ep")])
    stream.drain.put(b, [Heartbeat(5, {"a": 1}, "ep")])
    assert stream.take() == [("event_batch", [(("a", 1), ["a"])]),
                             ("heartbeat", (5, {"a": 7}, "ep"))]  # the stream's latest
    stream.drain.put(b, [Heartbeat(5, {}, "ep")])  # already sent
    assert stream.take() == []
    stream.latest, stream.epochs = {"a": 8, "b": 1}, {"a": "ep", "b": "ep"}
    stream.drain.put(a, [Heartbeat(6, {}, "ep")])
    assert stream.take() == [("heartbeat", (6, {"a": 8, "b": 1}, "ep"))]
    assert stream.heartbeat_epochs == {"a": "ep", "b": "ep"}


def test_a_heartbeat_read_with_an_event_does_not_split_its_deliveries() -> None:
    """A heartbeat due as an event arrives: each subscription gives the event then the
    heartbeat. The event goes out once with both ids, then the one Heartbeat (it used to
    close the batch: the event went out twice, seen under load in
    test_one_event_goes_once_to_all_matching_subscriptions)."""
    stream, a, b = _Stream(), Recipient("a"), Recipient("b")
    event = _event(1)
    stream.drain.put(b, [event, Heartbeat(5, {"a": 1}, "ep")])
    stream.drain.put(a, [event, Heartbeat(5, {"a": 1}, "ep")])
    assert stream.take() == [("event_batch", [(("a", 1), ["b", "a"])]),
                             ("heartbeat", (5, {"a": 7}, "ep"))]
    # a newer heartbeat while one waits: both go, in order, after the events before
    # them, and before a message queued after them
    stream.drain.put(a, [_event(2), Heartbeat(6, {}, "ep")])
    stream.drain.put(b, [_event(3), Heartbeat(7, {}, "ep")])
    stream.drain.put_message(encode_add_result("c", epoch="e"))
    assert stream.take() == [("event_batch", [(("a", 2), ["a"]), (("a", 3), ["b"])]),
                             ("heartbeat", (6, {"a": 7}, "ep")),
                             ("heartbeat", (7, {"a": 7}, "ep")),
                             ("add_result", "c")]


def test_a_heartbeat_carries_the_epoch_of_each_namespace_of_the_stream() -> None:
    """Under jetstream each namespace has its own epoch and the hub none: the single
    ``epoch`` field is the one they share, if they do."""
    stream, a = _Stream(), Recipient("a")
    stream.latest, stream.epochs = {"a": 7, "b": 2}, {"a": "ea", "b": "eb"}
    stream.drain.put(a, [Heartbeat(1, {"a": 7}, "", {"a": "ea"})])
    assert stream.take() == [("heartbeat", (1, {"a": 7, "b": 2}, ""))]
    assert stream.heartbeat_epochs == {"a": "ea", "b": "eb"}  # the stream's, not a's
    stream.epochs = {"a": "ea", "b": "ea"}
    stream.drain.put(a, [Heartbeat(2, {"a": 7}, "", {"a": "ea"})])
    assert stream.take() == [("heartbeat", (2, {"a": 7, "b": 2}, "ea"))]


def test_ended_closes_the_recipient_and_nothing_follows_it() -> None:
    stream, a, b = _Stream(), Recipient("a"), Recipient("b")
    stream.drain.put(a, [_event(1), Ended(EndReason.SLOW_CONSUMER, "too slow")])
    stream.drain.put(b, [_event(1)])
    stream.drain.put(a, [_event(2)])  # read before the Ended was taken: not sent
    assert stream.take() == [("event_batch", [(("a", 1), ["a"])]),
                             ("subscription_ended", "a"),
                             ("event_batch", [(("a", 1), ["b"])])]
    assert a.closed and not b.closed and stream.ended == ["a"]


def test_a_closed_recipient_gets_nothing_more() -> None:
    stream, a = _Stream(), Recipient("a")
    stream.drain.put(a, [_event(1)])
    a.closed = True  # removed by the client meanwhile
    assert stream.take() == [] and stream.ended == []


def test_batches_are_cut_at_their_bounds() -> None:
    stream, a, b = _Stream(max_events=2), Recipient("a"), Recipient("b")
    events = [_event(i) for i in range(1, 6)]
    stream.drain.put(a, events)
    stream.drain.put(b, events[:4])
    got = stream.take()
    assert [len(batch) for _, batch in got] == [2, 2, 1]  # type: ignore[arg-type]
    assert [d for _, batch in got for d in batch] == [  # type: ignore[attr-defined]
        (("a", i), ["a", "b"] if i < 5 else ["a"]) for i in range(1, 6)]
    by_size = _Stream(max_bytes=60)
    by_size.drain.put(a, events)
    assert len(by_size.take()) > 1


def test_queued_items_count_what_was_put_and_not_taken() -> None:
    stream, a = _Stream(), Recipient("a")
    assert not stream.drain and stream.drain.queued_items == 0
    stream.drain.put(a, [_event(1), _event(2)])
    stream.drain.put_message(b"")
    stream.drain.put(a, [Heartbeat(1, {}, "")])
    assert stream.drain and stream.drain.queued_items == 3
    stream.drain.take(lambda: ({}, {}))
    assert not stream.drain and stream.drain.queued_items == 0


def test_the_bytes_are_protobufs() -> None:
    stream, a, b = _Stream(), Recipient("a"), Recipient("bb")
    e1, e2 = _event(1), _event(2)
    stream.drain.put(a, [e1, e2])
    stream.drain.put(b, [e2])
    [data] = stream.drain.take(lambda: ({}, {}))
    expected = pb.SubscribeResponse(event_batch=pb.EventBatch(deliveries=[
        pb.Delivery(subscription_ids=["a"], event=pb.Event.FromString(encode_event(e1))),
        pb.Delivery(subscription_ids=["a", "bb"], event=pb.Event.FromString(encode_event(e2))),
    ]))
    assert data == expected.SerializeToString(deterministic=True)
