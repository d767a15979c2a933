"""The hub's namespaces: created within the limit, removed when idle, and remembered
after removal so that their sequences continue.

A namespace exists while it is used: it holds retained events, a subscription names it,
or the configuration lists it. One that has held none of these for
``namespace_idle_timeout`` is removed, so that namespaces named once (by a typo, a
rejected request, a client that came and went) do not pile up against
``max_namespaces``. Its head is remembered (up to ``namespace_head_memory`` names): if
it comes back, numbering continues where it stopped, and a client resuming across the
gap gets exactly what it missed. Once that memory is full the oldest entries are
forgotten, and every namespace the hub cannot remember starts numbering after the
highest head it forgot: a client resuming from an older incarnation then gets a
``ResyncNotice(compacted)``, never events it mistakes for the ones it missed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

from ._backend import DurableView
from ._budget import Budget
from ._config import HubConfig
from ._durable import DurableLog
from ._errors import QuotaExceeded
from ._filters import Key
from ._log import EventLog, LogFactory
from ._namespace import NamespaceState, Waiter
from ._payload import FieldLookup
from ._recent import Recent
from ._types import Event

__all__ = ["NamespaceTable"]


class NamespaceTable:
    """The live namespaces and the heads of removed ones.

    :ivar live: the namespaces, by name
    :ivar removed: how many namespaces were removed as idle
    :ivar recent: the live namespaces in the order of their last append (what reads of
        subscriptions over many namespaces look at; see :mod:`._recent`)
    """

    def __init__(self, config: HubConfig, log_factory: LogFactory, budget: Budget,
                 payload_of: Callable[[Event], FieldLookup | None] | None = None,
                 wild_keys: dict[Key, set[Waiter]] | None = None) -> None:
        self._config = config
        self._payload_of = payload_of
        self._wild_keys = wild_keys
        self._log_factory = log_factory
        self._budget = budget
        self.live: dict[str, NamespaceState] = {}
        self.recent: Recent[NamespaceState] = Recent()
        self._heads: OrderedDict[str, int] = OrderedDict()
        self._floor = 0  # above the head of every namespace forgotten
        self.removed = 0

    def check_room(self, new: Sequence[str], field: str) -> None:
        """Whether the namespaces *new* (not live) may be created.

        :raises QuotaExceeded: naming the limit and how to raise it
        """
        limit = self._config.max_namespaces
        if new and len(self.live) + len(new) > limit:
            what = f"{new[0]!r}" if len(new) == 1 else f"{len(new)} new namespaces"
            raise QuotaExceeded(
                field,
                f"creating {what} would exceed the hub's maximum of {limit} namespaces "
                f"({len(self.live)} in use; namespaces with no events, subscribers or "
                "configuration are removed after namespace_idle_timeout): raise "
                "max_namespaces ([hub] max_namespaces in the configuration file)",
            )

    def create(self, name: str, now: float, epoch: str,
               durable: DurableLog | None = None) -> NamespaceState:
        """Create namespace *name* (valid, not live, room checked), over *durable* (its
        open log) or a new memory log."""
        config = self._config.namespace(name)
        if durable is not None:
            log: EventLog = DurableView(durable)
            epoch = durable.epoch
        else:
            head = self._heads.pop(name, self._floor)
            log = self._log_factory(name, config.retention, head)
        ns = self.live[name] = NamespaceState(name, config, log, now, self._budget, epoch,
                                              durable, self._payload_of, self._wild_keys,
                                              recent=self.recent)
        return ns

    def idle(self, ns: NamespaceState, now: float) -> bool:
        """Whether *ns* has been unused for ``namespace_idle_timeout`` (and note since
        when it has been unused)."""
        since = ns.unused_since(now, configured=ns.name in self._config.namespaces)
        # all-namespaces subscriptions must have been given everything of it (looked at
        # once the time is up, not at every heartbeat: there may be many of them)
        return (since is not None and now - since >= self._config.namespace_idle_timeout
                and all(cursor.drained(now) for cursor in list(ns.cursors)))

    def remove(self, ns: NamespaceState) -> None:
        """Remove *ns* (idle, without cursors) and remember its head."""
        del self.live[ns.name]
        self.recent.forget(ns)
        self._budget.forget(ns)
        self.removed += 1
        head = ns.log.head
        if head:
            heads = self._heads
            heads[ns.name] = head
            while len(heads) > self._config.namespace_head_memory:
                _, forgotten = heads.popitem(last=False)
                self._floor = max(self._floor, forgotten)
