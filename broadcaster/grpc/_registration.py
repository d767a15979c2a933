"""Serving a service's methods on a grpc.aio server."""

from __future__ import annotations

from typing import Any

import grpc

__all__ = ["add_service"]


def add_service(server: grpc.aio.Server, service: str,
                handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]) -> None:
    """Serve *handlers* (by method name) as *service* on *server*, each method registered
    with gRPC core as the generated ``add_*Servicer_to_server`` functions do: a
    registered method has a queue of incoming calls of its own, so that thousands of
    Subscribe streams waiting for the event loop to take them do not hold up a Publish,
    a Stats or a Health call (all of an unregistered service's calls share one queue)."""
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    server.add_registered_method_handlers(service, handlers)
