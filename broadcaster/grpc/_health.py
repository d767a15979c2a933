"""``grpc.health.v1.Health`` with ``List`` (grpcio-health-checking's asyncio servicer
leaves it unimplemented: each call raised NotImplementedError in a worker thread, logged
a traceback and answered UNIMPLEMENTED)."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

__all__ = ["Health"]

_pb: Any = health_pb2  # HealthList* are newer than the type stubs


class Health(HealthServicer):
    """Check, Watch and List of every service's status."""

    _server_status: MutableMapping[str, Any]

    async def List(self, request: Any, context: Any) -> Any:
        """The status of every service (``""`` is the server as a whole)."""
        response = _pb.HealthListResponse()
        for name, status in self._server_status.items():
            response.statuses[name].status = status
        return response
