"""The ``jetstream`` log engine: one NATS JetStream stream per namespace, shared by every
broadcaster node connected to the same NATS (nats-py; asyncio only).

:class:`JetStreamConfig` imports nothing of NATS; the engine itself (``JetStreamStore``,
``JetStreamLog``) needs the ``jetstream`` extra (nats-py) and is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._config import JetStreamConfig

if TYPE_CHECKING:
    from ._log import JetStreamLog
    from ._store import JetStreamStore

__all__ = ["JetStreamConfig", "JetStreamLog", "JetStreamStore"]


def __getattr__(name: str) -> Any:
    if name == "JetStreamStore":
        from ._store import JetStreamStore

        return JetStreamStore
    if name == "JetStreamLog":
        from ._log import JetStreamLog

        return JetStreamLog
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
