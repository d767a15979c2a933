"""Every error the client raises is a ClientError, chained to its cause."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import grpc
import pytest

from broadcaster import InvalidLabels, InvalidNamespace, InvalidTopic
from broadcaster.client import (
    Client,
    ClientClosedError,
    ClientError,
    ClientTimeoutError,
    InvalidArgumentError,
    SubscribeError,
    grpc_target,
)

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("shared_event_loop")]

NOWHERE = "127.0.0.1:1"  # nothing listens: every call would fail if it were sent


def _invalid_calls() -> list[Any]:
    """(id, call of a client not entered, field, core error class or None)."""

    def publish(**kw: Any) -> Callable[[Client], Awaitable[Any]]:
        args = {"namespace": "ns", "topic": "/t", "payload": b""} | kw
        return lambda c: c.publish(args.pop("namespace"), args.pop("topic"), **args)

    def subscribe(*args: Any, **kw: Any) -> Callable[[Client], Awaitable[Any]]:
        async def call(c: Client) -> None:
            c.subscribe(*args, **kw)
        return call

    def publisher(**kw: Any) -> Callable[[Client], Awaitable[Any]]:
        async def call(c: Client) -> None:
            c.publisher("ns", **kw)
        return call

    return [
        pytest.param(publish(namespace=""), "namespace", InvalidNamespace, id="namespace"),
        pytest.param(publish(topic="t"), "topic", InvalidTopic, id="topic"),
        pytest.param(publish(labels={"": "v"}), "labels", InvalidLabels, id="labels"),
        pytest.param(publish(payload=42), "payload", TypeError, id="payload"),
        pytest.param(publish(timestamp="now"), "timestamp", ValueError, id="timestamp"),
        pytest.param(publish(timestamp=10**30), "timestamp", None, id="timestamp-range"),
        pytest.param(publish(type_url=b"x"), "type_url", None, id="type_url"),
        pytest.param(subscribe(["ok", "bad name"]), "namespaces[1]", InvalidNamespace,
                     id="subscribe-namespaces"),
        pytest.param(subscribe(since=3), "since", None, id="since-without-namespaces"),
        pytest.param(subscribe("ns", since=-1), "since", None, id="since-negative"),
        pytest.param(subscribe("ns", since={"ns": "x"}), "since", ValueError,
                     id="since-not-int"),
        pytest.param(subscribe("ns", since=2**64), "since", None, id="since-too-big"),
        pytest.param(subscribe("ns", filters='topic=="/a"'), "filters", None,
                     id="filters-one-string"),
        pytest.param(subscribe("ns", filters=["topic==\"/a\"", 3]), "filters[1]", None,
                     id="filters-not-strings"),
        pytest.param(subscribe("ns", policy="drop_newest"), "policy", None, id="policy"),
        pytest.param(subscribe("ns", epoch=1), "epoch", None, id="epoch"),
        pytest.param(publisher(max_batch=0), "max_batch", None, id="max_batch"),
        pytest.param(publisher(max_batch=10, max_in_flight=5), "max_in_flight", None,
                     id="max_in_flight"),
        pytest.param(publisher(linger=-1), "linger", None, id="linger"),
    ]


@pytest.mark.parametrize(("call", "field", "cause"), _invalid_calls())
async def test_bad_arguments_raise_invalid_argument_errors(
    call: Callable[[Client], Awaitable[Any]], field: str, cause: type[Exception] | None
) -> None:
    client = Client(NOWHERE, timeout=0.01)
    try:
        with pytest.raises(InvalidArgumentError) as info:
            await call(client)
    finally:
        await client.aclose()
    assert isinstance(info.value, ClientError) and isinstance(info.value, ValueError)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    if cause is None:
        assert info.value.__cause__ is None
    else:
        assert isinstance(info.value.__cause__, cause)


def test_constructor_arguments_are_checked() -> None:
    with pytest.raises(InvalidArgumentError, match="^buffer: "):
        Client(NOWHERE, buffer=0)
    with pytest.raises(InvalidArgumentError, match="^address: "):
        Client("")
    with pytest.raises(InvalidArgumentError, match="^address: "):
        grpc_target("")


async def test_subscribe_timeout_is_a_client_error_chained_to_the_connection_error() -> None:
    async with Client(NOWHERE, timeout=0.5) as client:
        with anyio.fail_after(5), pytest.raises(ClientTimeoutError) as info:
            async with client.subscribe("ns"):
                pass
    assert isinstance(info.value, TimeoutError)
    cause = info.value.__cause__
    assert isinstance(cause, SubscribeError) and cause.code is grpc.StatusCode.UNAVAILABLE
    assert "last error: UNAVAILABLE" in str(info.value)


async def test_a_closed_client_raises_client_closed_error() -> None:
    async with Client(NOWHERE) as client:
        pass
    for call in (lambda: client.publish("ns", "/t"), lambda: client.stats()):
        with pytest.raises(ClientClosedError) as info:
            await call()
        assert isinstance(info.value, anyio.ClosedResourceError)
    with pytest.raises(ClientClosedError):
        client.subscribe("ns")
    with pytest.raises(ClientClosedError):
        client.publisher("ns")


async def test_subscribing_needs_the_client_entered() -> None:
    client = Client(NOWHERE)
    try:
        with pytest.raises(ClientClosedError, match="async with"):
            client.subscribe("ns")
    finally:
        await client.aclose()
