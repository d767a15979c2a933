"""Coverage-guided fuzzing of the hand-written protobuf encoder with atheris
(``make fuzz``): for any event, ``EventEncoder`` and the batch packers must produce
exactly the bytes protobuf's own serialization does (deterministic map order).
``python fuzz/encoder.py -help=1`` for libFuzzer's options.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from broadcaster._core._types import Event
    from broadcaster._proto import MAX_SECONDS, MIN_SECONDS
    from broadcaster.grpc._encode import (
        EventEncoder,
        encode_batches,
        id_prefix,
        pack_run,
    )
    from broadcaster.v1 import broadcaster_pb2 as pb

_MIN_NS, _MAX_NS = MIN_SECONDS * 10**9, MAX_SECONDS * 10**9 + 999_999_999


def _event(fdp: atheris.FuzzedDataProvider, sequence: int) -> Event:
    text = fdp.ConsumeUnicodeNoSurrogates
    labels = {text(8): text(8) for _ in range(fdp.ConsumeIntInRange(0, 3))}
    labels.pop("", None)
    return Event(text(16), text(16), fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64)), text(16),
                 labels, fdp.ConsumeIntInRange(_MIN_NS, _MAX_NS), sequence, 0.0, 10)


def _expected(event: Event) -> pb.Event:
    message = pb.Event(namespace=event.namespace, topic=event.topic, labels=event.labels,
                       sequence=event.sequence)
    seconds, nanos = divmod(event.timestamp_ns, 1_000_000_000)
    message.timestamp.seconds, message.timestamp.nanos = seconds, nanos
    message.timestamp.SetInParent()
    if event.payload or event.type_url:
        message.payload.type_url, message.payload.value = event.type_url, event.payload
        message.payload.SetInParent()
    return message


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    encoder = EventEncoder(max_heads=fdp.ConsumeIntInRange(1, 4))
    events = [_event(fdp, fdp.ConsumeIntInRange(0, 2**63 - 1))
              for _ in range(fdp.ConsumeIntInRange(1, 12))]  # runs of 8+ are spliced at once
    for event in events:
        got = encoder.serialize(event)
        want = _expected(event).SerializeToString(deterministic=True)
        if got != want:
            raise AssertionError(f"{event!r}: {got.hex()} != {want.hex()}")
    ids = [fdp.ConsumeUnicodeNoSurrogates(6) or "s" for _ in range(fdp.ConsumeIntInRange(1, 3))]
    max_events, max_bytes = fdp.ConsumeIntInRange(1, 8), fdp.ConsumeIntInRange(1, 4096)
    prefixes = [id_prefix(i) for i in ids]
    batches = encode_batches(((e, prefixes) for e in events), max_events=max_events,
                             max_bytes=max_bytes)
    delivered = []
    for message in batches:
        response = pb.SubscribeResponse.FromString(message)
        delivered += [(list(d.subscription_ids), d.event) for d in response.event_batch.deliveries]
    if delivered != [(ids, _expected(e)) for e in events]:
        raise AssertionError("encode_batches lost or changed deliveries")
    if pack_run(events, b"".join(prefixes), max_events, max_bytes) != batches:
        raise AssertionError("pack_run differs from encode_batches")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
