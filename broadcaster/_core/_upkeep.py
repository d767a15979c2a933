"""The hub's periodic work, which keeps it honest when nobody reads or publishes.

- Every ``heartbeat_interval``: retention by age, removal of idle namespaces, and a
  heartbeat: each subscription is visited once (``wake_batch`` at a time, with a
  checkpoint in between); one found dead is evicted (``heartbeat_timeout``,
  ``not_consuming``: see :meth:`Subscription.liveness_check`), the others are woken and
  their next batch ends with a :class:`Heartbeat`.
- Every ``overflow_check_interval``: the sweep settles the cursors whose policy needs
  it (``disconnect`` evicts, ``retry`` expires) in namespaces where something happened.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

from ._config import HubConfig
from ._cursor import evict_slow
from ._lag import LoopMonitor
from ._namespace import NamespaceState
from ._registry import NamespaceTable
from ._subscription import Subscription
from ._types import EndReason

__all__ = ["Upkeep"]


class Upkeep:
    """Heartbeats, liveness, idle namespaces, retention by age and the overflow sweep.

    :param subs: the hub's subscriptions
    :param remove: removes an idle namespace (the hub's job: its readers leave it)
    :param announce: tells the hub the id of the heartbeat being sent (subscriptions
        read it from the hub on every read: a plain attribute there)
    """

    def __init__(self, config: HubConfig, table: NamespaceTable, subs: set[Subscription],
                 remove: Callable[[NamespaceState], None],
                 announce: Callable[[int], None]) -> None:
        self._config = config
        self._table = table
        self._subs = subs
        self._remove = remove
        self._announce = announce
        self._heartbeat_id = 0

    @property
    def liveness_limit(self) -> float:
        """Seconds of silence after which a subscriber is dead."""
        return self._config.heartbeat_interval * self._config.max_missed_heartbeats

    async def heartbeats(self, clock: Callable[[], float], monitor: LoopMonitor) -> None:
        interval = self._config.heartbeat_interval
        while True:
            due = clock() + interval
            await anyio.sleep(interval)
            now = clock()
            monitor.observe(due, now)  # a stall that just ended is not charged to anyone
            for ns in list(self._table.live.values()):
                ns.trim(now)
                ns.trim_topics()
                if self._table.idle(ns, now):
                    self._remove(ns)
            self._heartbeat_id += 1
            self._announce(self._heartbeat_id)
            await self._beat(clock, monitor)

    async def _beat(self, clock: Callable[[], float], monitor: LoopMonitor) -> None:
        """Evict the dead, wake the others (their next read ends with the heartbeat),
        ``wake_batch`` subscriptions at a time with a checkpoint in between."""
        subs, batch = list(self._subs), self._config.wake_batch
        for start in range(0, len(subs), batch):
            if start:
                await anyio.lowlevel.checkpoint()
            self._check_liveness(subs[start : start + batch], clock(), monitor)

    def _check_liveness(self, subs: list[Subscription], now: float,
                        monitor: LoopMonitor) -> None:
        limit, missed = self.liveness_limit, self._config.max_missed_heartbeats
        for sub in subs:
            reason = sub.liveness_check(now, limit, monitor)
            if reason is None:
                sub.wake()
            elif reason is EndReason.NOT_CONSUMING:
                sub.end(reason, f"events waited {limit:g} s ({missed} heartbeats) and the "
                                "subscriber took none")
            else:
                sub.end(reason, f"no consumption or ack for {missed} heartbeats")

    async def sweeps(self, clock: Callable[[], float]) -> None:
        interval = self._config.overflow_check_interval
        while True:
            await anyio.sleep(interval)
            now = clock()
            for ns in list(self._table.live.values()):
                if ns.sweep_due:
                    evict_slow(ns.sweep(now))
