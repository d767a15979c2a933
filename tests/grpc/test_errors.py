"""One mapping from core errors to gRPC status (``broadcaster/grpc/_errors.py``), without
a server; over real connections, both APIs answer through it (the other gRPC tests)."""

from __future__ import annotations

from typing import Any

import anyio
import grpc
import pytest

from broadcaster import (
    BroadcasterError,
    InvalidFilter,
    InvalidNamespace,
    LogUnavailable,
    PayloadTooLarge,
    QuotaExceeded,
    StorageError,
)
from broadcaster.grpc._errors import (
    SHUTTING_DOWN,
    RpcError,
    answering,
    map_core_errors,
    rpc_error,
    status_of,
)
from broadcaster.grpc._interceptor import ServerInterceptor
from broadcaster.grpc._telemetry import Telemetry


class PermissionDenied(BroadcasterError, PermissionError):
    """What an authorization check in the core would raise."""


@pytest.mark.parametrize(("error", "code"), [
    (InvalidNamespace("namespace", "bad"), grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidFilter("filters[2]", "bad"), grpc.StatusCode.INVALID_ARGUMENT),
    (QuotaExceeded("namespace", "full"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (PayloadTooLarge("payload", "big"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (LogUnavailable("backplane", "NATS is unreachable"), grpc.StatusCode.UNAVAILABLE),
    (StorageError("data_dir", "disk full"), grpc.StatusCode.UNAVAILABLE),
    (PermissionDenied("namespace", "not yours"), grpc.StatusCode.PERMISSION_DENIED),
    (BroadcasterError("x", "anything else"), grpc.StatusCode.FAILED_PRECONDITION),
])
def test_core_errors_map_by_their_class(error: BroadcasterError, code: grpc.StatusCode) -> None:
    assert status_of(error) is code
    answer = rpc_error(error)
    assert (answer.code, answer.message, answer.reason) == (
        code, f"{error.field}: {error.message}", code.name.lower())
    assert answer.wire_code == code.value[0]


def test_a_closed_hub_is_the_server_shutting_down() -> None:
    answer = rpc_error(anyio.ClosedResourceError())
    assert (answer.code, answer.message, answer.reason) == (
        grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN, "unavailable")


def test_map_core_errors_renames_the_field_and_chains_the_core_error() -> None:
    core = QuotaExceeded("items[2].payload", "too big")
    with pytest.raises(RpcError) as info, map_core_errors(lambda f: f.replace("items", "events")):
        raise core
    assert info.value.message == "events[2].payload: too big"
    assert info.value.__cause__ is core
    with pytest.raises(RpcError, match=f"^{SHUTTING_DOWN}$"), map_core_errors():
        raise anyio.ClosedResourceError


def test_map_core_errors_leaves_everything_else_alone() -> None:
    with pytest.raises(KeyError), map_core_errors():
        raise KeyError("a bug stays a bug")
    edge = RpcError(grpc.StatusCode.NOT_FOUND, "x: none")
    with pytest.raises(RpcError) as info, map_core_errors():
        raise edge
    assert info.value is edge
    with map_core_errors():
        pass


class _Aborted(Exception):
    pass


class _Context:
    """The part of a ServicerContext that aborting uses."""

    def __init__(self) -> None:
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted = (code, details)
        raise _Aborted


@pytest.mark.parametrize(("raised", "aborted", "reason"), [
    (InvalidNamespace("namespace", "bad"),
     (grpc.StatusCode.INVALID_ARGUMENT, "containerd-namespace: bad"), "invalid_argument"),
    (anyio.ClosedResourceError(), (grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN), "unavailable"),
    (RpcError(grpc.StatusCode.PERMISSION_DENIED, "namespace: not yours", "denied"),
     (grpc.StatusCode.PERMISSION_DENIED, "namespace: not yours"), "denied"),
])
@pytest.mark.anyio
async def test_answering_ends_the_call_with_the_mapped_status_and_counts_it(
        raised: BaseException, aborted: tuple[grpc.StatusCode, str], reason: str) -> None:
    context = _Context()
    reasons: list[str] = []
    rename = {"namespace": "containerd-namespace"}.get
    with pytest.raises(_Aborted):
        async with answering(context, reasons.append,  # type: ignore[arg-type]
                             lambda f: rename(f, f)):
            raise raised
    assert context.aborted == aborted
    assert reasons == [reason]


@pytest.mark.anyio
async def test_answering_lets_success_and_bugs_through() -> None:
    context: Any = _Context()
    reasons: list[str] = []
    async with answering(context, reasons.append):
        pass
    with pytest.raises(ZeroDivisionError):
        async with answering(context, reasons.append):
            1 / 0  # noqa: B018
    assert context.aborted is None and reasons == []


@pytest.mark.anyio
@pytest.mark.usefixtures("shared_event_loop")
async def test_an_edge_check_raising_permission_denied_is_answered_by_the_interceptor() -> None:
    """What an authorization check will do: raise RpcError(PERMISSION_DENIED) anywhere in
    a handler (here from a task group); the call gets that status, counted by reason."""
    telemetry = Telemetry()

    async def handler(request: bytes, context: Any) -> bytes:
        async with anyio.create_task_group() as tg:
            async def check() -> None:
                raise RpcError(grpc.StatusCode.PERMISSION_DENIED,
                               "namespace: 'k8s.io' is not yours", "permission_denied")
            tg.start_soon(check)
        return b""

    server = grpc.aio.server(interceptors=[ServerInterceptor(telemetry)])
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "test.Auth", {"Call": grpc.unary_unary_rpc_method_handler(handler)})])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await channel.unary_unary("/test.Auth/Call")(b"", timeout=10)
        assert (info.value.code(), info.value.details()) == (
            grpc.StatusCode.PERMISSION_DENIED, "namespace: 'k8s.io' is not yours")
        assert telemetry.rejected == {"permission_denied": 1}
    finally:
        await server.stop(None)
