"""broadcaster: event-broadcast middleware for container runtimes.

The public API lives here; code lives in underscored modules.
"""

import contextlib

from ._core._callbacks import Callback, CallbackHandle
from ._core._config import FilterConfig, HubConfig, NamespaceConfig, Retention
from ._core._durable import FsyncMode, LogStore, LogUnavailable, StorageError
from ._core._errors import (
    BroadcasterError,
    InvalidArgument,
    InvalidFilter,
    InvalidLabels,
    InvalidNamespace,
    InvalidPolicy,
    InvalidTopic,
    PayloadTooLarge,
    QuotaExceeded,
)
from ._core._filters import compile_filters
from ._core._hub import Broadcaster, PublishItem
from ._core._log import EventLog, LogFactory, MemoryLog
from ._core._outlet import Outlet
from ._core._policy import Policy, PolicyKind
from ._core._ready import ReadyQueue
from ._core._sqlite_store import LocalConfig, SqliteStore
from ._core._stats import (
    LATENCY_BUCKETS,
    HubStatistics,
    LatencyStatistics,
    NamespaceStatistics,
    SubscriptionStatistics,
)
from ._core._subscription import Liveness, Subscription
from ._core._types import (
    AvailabilityNotice,
    DropNotice,
    DropReason,
    Ended,
    EndReason,
    Event,
    Heartbeat,
    Item,
    ResyncNotice,
    ResyncReason,
)
from ._core._validation import validate_namespace, validate_topic
from ._gc import DEFAULT_GC_THRESHOLD, tune_gc

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_GC_THRESHOLD",
    "LATENCY_BUCKETS",
    "AvailabilityNotice",
    "Broadcaster",
    "BroadcasterError",
    "Callback",
    "CallbackHandle",
    "DropNotice",
    "DropReason",
    "EndReason",
    "Ended",
    "Event",
    "EventLog",
    "FilterConfig",
    "FsyncMode",
    "Heartbeat",
    "HubConfig",
    "HubStatistics",
    "InvalidArgument",
    "InvalidFilter",
    "InvalidLabels",
    "InvalidNamespace",
    "InvalidPolicy",
    "InvalidTopic",
    "Item",
    "LatencyStatistics",
    "Liveness",
    "LocalConfig",
    "LogFactory",
    "LogStore",
    "LogUnavailable",
    "MemoryLog",
    "NamespaceConfig",
    "NamespaceStatistics",
    "Outlet",
    "PayloadTooLarge",
    "Policy",
    "PolicyKind",
    "PublishItem",
    "QuotaExceeded",
    "ReadyQueue",
    "ResyncNotice",
    "ResyncReason",
    "Retention",
    "SqliteStore",
    "StorageError",
    "Subscription",
    "SubscriptionStatistics",
    "compile_filters",
    "tune_gc",
    "validate_namespace",
    "validate_topic",
]


def _fixup_module_metadata() -> None:
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith("broadcaster._"):
            with contextlib.suppress(AttributeError, TypeError):
                obj.__module__ = "broadcaster"


_fixup_module_metadata()
del _fixup_module_metadata
