"""Which failures the client treats as a refused stream (pure rules, no server)."""

from __future__ import annotations

import grpc

from broadcaster.client._retry import failed_sending, refused


def test_what_counts_as_a_refusal() -> None:
    unavailable, internal = grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL
    seen = "Stream removed (RST_STREAM (Received RST_STREAM with error code 7))"
    assert refused(unavailable, seen)
    assert not refused(unavailable, "Stream removed (RST_STREAM (Received RST_STREAM "
                                    "with error code 8))")  # CANCEL: may have been seen
    assert not refused(unavailable, "failed to connect to all addresses")
    assert not refused(internal, seen)
    assert not refused(unavailable, None)
    assert failed_sending(internal, "Internal error from Core")
    assert not failed_sending(unavailable, "Internal error from Core")
    assert not failed_sending(internal, "Received RST_STREAM with error code 2")
