"""Hub and namespace configuration (immutable; passed in, never global)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from ._dedup import DEFAULT_DEDUP_MAX_IDS, DEFAULT_DEDUP_WINDOW
from ._errors import InvalidArgument, InvalidPolicy
from ._payload import PayloadFields
from ._policy import Policy, PolicyKind
from ._validation import validate_namespace

__all__ = ["FilterConfig", "HubConfig", "NamespaceConfig", "Retention"]

_MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Retention:
    """How much history a namespace keeps for resume (``since=``).

    The oldest events go first when any bound is passed. ``max_age`` is in seconds.
    """

    max_events: int = 100_000
    max_bytes: int = 64 * 1024 * 1024
    max_age: float = 3600.0


@dataclass(frozen=True, slots=True)
class NamespaceConfig:
    """Defaults and quotas of one namespace.

    :ivar retention: history kept for resume
    :ivar default_policy: policy of subscriptions that do not choose one
    :ivar max_subscriptions: subscriptions at once (counting multi-namespace ones)
    :ivar max_payload_bytes: largest payload accepted by ``publish``, counting the type
        URL with it
    :ivar max_policy_events: largest ``max_events`` a subscription may ask for
    :ivar max_policy_bytes: largest ``max_bytes`` a subscription may ask for
    :ivar max_publish_rate: events per second accepted (token bucket), or None
    :ivar publish_burst: the token bucket's size
    :ivar allow_block: whether subscriptions may use the ``block`` policy (which makes
        publishers wait for them)
    :ivar max_block_timeout: the longest ``block_timeout`` a subscription may ask for
    """

    retention: Retention = field(default_factory=Retention)
    default_policy: Policy = field(default_factory=lambda: Policy.drop_oldest(1024))
    max_subscriptions: int = 10_000
    max_payload_bytes: int = 1024 * 1024
    max_policy_events: int = 1_000_000
    max_policy_bytes: int = 256 * 1024 * 1024
    max_publish_rate: float | None = None
    publish_burst: int = 1000
    allow_block: bool = True
    max_block_timeout: float = 5.0

    def __post_init__(self) -> None:
        if not self.max_block_timeout > 0:
            raise InvalidArgument("max_block_timeout", "must be positive")

    def clamp_policy(self, policy: Policy) -> Policy:
        """*policy* cut down to this namespace's limits: smaller bounds, a shorter
        ``block_timeout``, and ``block`` replaced by its fallback where it is not allowed
        (for all-namespaces subscriptions meeting a new namespace)."""
        events, max_bytes = self.max_policy_events, self.max_policy_bytes
        changes: dict[str, object] = {}
        if policy.max_events > events:
            changes["max_events"] = events
        if policy.max_bytes > max_bytes:
            changes["max_bytes"] = max_bytes
        if policy.kind is PolicyKind.BLOCK:
            if not self.allow_block:
                changes["kind"] = policy.fallback
            elif policy.block_timeout > self.max_block_timeout:
                changes["block_timeout"] = self.max_block_timeout
        return replace(policy, **changes) if changes else policy  # type: ignore[arg-type]

    def check_policy(self, policy: Policy, namespace: str | None = None) -> Policy:
        """Return *policy* if it fits this namespace's limits.

        :param namespace: the namespace's name, for the message
        :raises InvalidPolicy: naming the bound that is too large
        """
        policy.validated()
        where = f" in namespace {namespace!r}" if namespace else ""
        if policy.max_events > self.max_policy_events:
            raise InvalidPolicy(
                "policy.max_events", f"{policy.max_events} exceeds {self.max_policy_events}"
            )
        if policy.max_bytes > self.max_policy_bytes:
            raise InvalidPolicy(
                "policy.max_bytes", f"{policy.max_bytes} exceeds {self.max_policy_bytes}"
            )
        if policy.kind is PolicyKind.BLOCK:
            if not self.allow_block:
                raise InvalidPolicy(
                    "policy.kind", f"block is not allowed{where} (allow_block = false): "
                    "choose drop_newest, drop_oldest, retry or disconnect"
                )
            if policy.block_timeout > self.max_block_timeout:
                raise InvalidPolicy(
                    "policy.block_timeout",
                    f"{policy.block_timeout:g} s exceeds the maximum of "
                    f"{self.max_block_timeout:g} s{where} (max_block_timeout)",
                )
        return policy


@dataclass(frozen=True, slots=True)
class FilterConfig:
    """Bounds on subscription filters, so that no filter can stall the hub.

    A subscription's filters are refused (``InvalidFilter``, naming ``filters[i]``) past
    any of the first five bounds; the rest bound memory the hub keeps for filters.

    :ivar max_filters: filters in one subscription (they are OR-ed)
    :ivar max_filter_length: characters in one filter
    :ivar max_total_length: characters in all the filters of one subscription
    :ivar max_selectors: selectors in all the filters of one subscription
    :ivar max_regexes: ``~=`` selectors in all the filters of one subscription
    :ivar cache_entries: compiled filter lists kept for sharing between subscriptions
    :ivar cache_bytes: estimated bytes of the compiled filter lists kept (regular
        expressions count their RE2 memory budget)
    :ivar decode_cache_events: decoded payloads kept for ``event.`` selectors
    :ivar decode_cache_bytes: payload bytes of the decoded payloads kept
    :ivar max_decode_bytes: payloads larger than this are not decoded: they match no
        ``event.`` selector (``==`` and presence), as an unknown type
    :ivar match_slice: seconds one read of a filtered subscription may spend matching
        per namespace (on ``HubConfig.cpu_clock``); the rest is matched at its next
        read, after the other tasks ran. A blocking publisher's check is not sliced.
    """

    max_filters: int = 64
    max_filter_length: int = 8192
    max_total_length: int = 32768
    max_selectors: int = 256
    max_regexes: int = 32
    cache_entries: int = 1024
    cache_bytes: int = 32 * _MiB
    decode_cache_events: int = 8192
    decode_cache_bytes: int = 32 * _MiB
    max_decode_bytes: int = 64 * 1024
    match_slice: float = 0.002

    def __post_init__(self) -> None:
        if not (isinstance(self.match_slice, int | float) and self.match_slice > 0):
            raise InvalidArgument("filters.match_slice", "must be a positive number of seconds")
        for name in self.__slots__:
            if name == "match_slice":
                continue
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidArgument(f"filters.{name}", "must be a positive integer")


def _wall_ns() -> int:
    return time.time_ns()


@dataclass(frozen=True, slots=True)
class HubConfig:
    """Configuration of a :class:`Broadcaster`.

    :ivar heartbeat_interval: seconds between heartbeats to every subscription
    :ivar max_missed_heartbeats: intervals without consumption or ack before eviction
    :ivar callback_timeout: seconds after which a running callback is reported stuck
    :ivar overflow_check_interval: seconds between sweeps that evict slow subscribers
        under the ``disconnect`` policy and count pending drops
    :ivar notify_linger: seconds the notifier waits after a publish before waking parked
        subscribers, so that one wake-up serves several publishes (0: next loop turn)
    :ivar publish_yield_every: a publisher yields to other tasks every N publishes
        (fairness between a flood in one namespace and the rest)
    :ivar wake_batch: subscriptions the hub wakes (after a publish, or at a heartbeat)
        before it lets other tasks run
    :ivar loop_lag_interval: seconds between wake-ups of the task that measures the
        event loop's lag (stalls of the loop are not charged to subscribers' liveness)
    :ivar max_namespaces: namespaces that may exist at once
    :ivar namespace_idle_timeout: seconds after which a namespace with no retained
        events, no subscription naming it and no entry in *namespaces* is removed
    :ivar namespace_head_memory: removed namespaces whose newest sequence the hub
        remembers, so that their numbering continues if they come back
    :ivar max_cursors: cursors (one per subscription and namespace it reads) the hub
        holds at once, over all namespaces
    :ivar max_retained_bytes: bytes of retained events over all namespaces; past it the
        oldest events go first, whatever their namespace
    :ivar default_namespace: settings of namespaces not listed in *namespaces*
    :ivar namespaces: per-namespace settings
    :ivar epoch: identity of this log's incarnation (random when None); a resume with
        another epoch gets a :class:`ResyncNotice`. Memory logs only: a durable store
        has its own epoch (the data directory's, or each stream's)
    :ivar dedup_window: seconds a client-chosen event id is remembered by the memory
        log (durable stores have their own setting)
    :ivar dedup_max_ids: event ids the memory log remembers per namespace at most
    :ivar wall_clock: returns wall-clock nanoseconds (event timestamps); monotonic time
        always comes from ``anyio.current_time()``
    :ivar seed: seed of the jitter random generator (None: from the OS)
    :ivar cpu_clock: monotonic seconds for CPU budgets (``filters.match_slice``,
        ``wide_work_share``)
    :ivar wide_work_share: the share of the event loop's time that registering and
        closing subscriptions over many namespaces (more than 64: an all-namespaces one
        over 1,000 attaches 1,000 cursors, some 2-5 ms) may take: after such work took
        *t* seconds, the next such registration waits until ``t * (1 - share) / share``
        seconds have passed (closes are not delayed, but what they take counts). 1 lets
        them run back to back (one per turn of the event loop)
    :ivar filters: bounds on subscription filters and the memory kept for them
    :ivar payload_fields: reads payload fields for ``event.<field>`` selectors:
        ``resolver(type_url, payload)`` returns a field lookup or None (see
        ``broadcaster.payloads.PayloadTypes``); None reads JSON payloads only. The gRPC server
        uses containerd's event types when this is None.
    """

    heartbeat_interval: float = 10.0
    max_missed_heartbeats: int = 3
    callback_timeout: float = 5.0
    overflow_check_interval: float = 0.1
    notify_linger: float = 0.0005
    publish_yield_every: int = 64
    wake_batch: int = 256
    loop_lag_interval: float = 0.1
    max_namespaces: int = 1024
    namespace_idle_timeout: float = 300.0
    namespace_head_memory: int = 10_000
    max_cursors: int = 250_000
    max_retained_bytes: int = 512 * 1024 * 1024
    default_namespace: NamespaceConfig = field(default_factory=NamespaceConfig)
    namespaces: Mapping[str, NamespaceConfig] = field(default_factory=dict)
    epoch: str | None = None
    dedup_window: float = DEFAULT_DEDUP_WINDOW
    dedup_max_ids: int = DEFAULT_DEDUP_MAX_IDS
    wall_clock: Callable[[], int] = _wall_ns
    seed: int | None = None
    cpu_clock: Callable[[], float] = time.perf_counter
    wide_work_share: float = 0.25
    filters: FilterConfig = field(default_factory=FilterConfig)
    payload_fields: PayloadFields | None = None

    def __post_init__(self) -> None:
        if not self.heartbeat_interval > 0:
            raise InvalidArgument("heartbeat_interval", "must be positive")
        if self.max_missed_heartbeats < 1:
            raise InvalidArgument("max_missed_heartbeats", "must be at least 1")
        if not self.callback_timeout > 0:
            raise InvalidArgument("callback_timeout", "must be positive")
        if not self.overflow_check_interval > 0:
            raise InvalidArgument("overflow_check_interval", "must be positive")
        if not self.notify_linger >= 0:
            raise InvalidArgument("notify_linger", "must be zero or positive")
        if self.publish_yield_every < 1:
            raise InvalidArgument("publish_yield_every", "must be at least 1")
        if self.wake_batch < 1:
            raise InvalidArgument("wake_batch", "must be at least 1")
        if not self.loop_lag_interval > 0:
            raise InvalidArgument("loop_lag_interval", "must be positive")
        if self.max_namespaces < 1:
            raise InvalidArgument("max_namespaces", "must be at least 1")
        if not self.namespace_idle_timeout > 0:
            raise InvalidArgument("namespace_idle_timeout", "must be positive")
        if self.namespace_head_memory < 0:
            raise InvalidArgument("namespace_head_memory", "must be zero or positive")
        if self.max_cursors < 1:
            raise InvalidArgument("max_cursors", "must be at least 1")
        if self.max_retained_bytes < 1:
            raise InvalidArgument("max_retained_bytes", "must be at least 1")
        if not (isinstance(self.wide_work_share, int | float)
                and 0 < self.wide_work_share <= 1):
            raise InvalidArgument("wide_work_share", "must be a number above 0 and at most 1")
        if not self.dedup_window >= 0:
            raise InvalidArgument("dedup_window", "must be zero or positive")
        if self.dedup_max_ids < 1:
            raise InvalidArgument("dedup_max_ids", "must be at least 1")
        for name, ns in self.namespaces.items():
            validate_namespace(name, f"namespaces[{name!r}]")
            ns.check_policy(ns.default_policy)
        self.default_namespace.check_policy(self.default_namespace.default_policy)

    def namespace(self, name: str) -> NamespaceConfig:
        """The settings of namespace *name*."""
        return self.namespaces.get(name, self.default_namespace)


