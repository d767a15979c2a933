"""Checking a publish without publishing: what :meth:`Broadcaster.publish_many` would
check for each of several batches, for an edge that must accept or refuse a request
spanning namespaces as a whole (:meth:`Broadcaster.check_publish`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import anyio.lowlevel

from ._config import HubConfig
from ._errors import QuotaExceeded
from ._items import ItemChecker, PublishItem
from ._namespace import NamespaceState, check_burst
from ._registry import NamespaceTable
from ._validation import validate_namespace

__all__ = ["check_batches"]


async def check_batches(
    batches: Sequence[tuple[str, Sequence[PublishItem]]],
    *,
    config: HubConfig,
    live: Mapping[str, NamespaceState],
    items: ItemChecker,
    table: NamespaceTable,
    now: float,
) -> None:
    """Check ``publish_many(namespace, batch)`` for each ``(namespace, batch)`` in turn,
    as if the earlier ones had been published: the namespace's name, every item, the
    namespace limit counting the new namespaces of the earlier batches, the rate quota
    counting the earlier batches' events of the same namespace. Checks
    ``publish_yield_every`` items between checkpoints.

    Fields are named as one ``publish_many`` of all the items would name them:
    ``items[i]`` counts across batches (``topic`` for the very first item), and a
    namespace is named after the first item of its batch (``items[i].namespace``;
    ``namespace`` for the first batch).
    """
    every = config.publish_yield_every
    counts: dict[str, int] = {}
    new: list[str] = []
    index = 0
    for namespace, batch in batches:
        field = f"items[{index}].namespace" if index else "namespace"
        ns = live.get(namespace)
        if ns is None:
            validate_namespace(namespace, field)
        ns_config = config.namespace(namespace) if ns is None else ns.config
        max_size = min(ns_config.retention.max_bytes, config.max_retained_bytes)
        for item in batch:
            if index and index % every == 0:
                await anyio.lowlevel.checkpoint()
            items.check(ns_config, index, item, max_size)
            index += 1
        if not batch:
            continue
        count = counts[namespace] = counts.get(namespace, 0) + len(batch)
        try:
            if ns is None:
                if namespace not in new:
                    new.append(namespace)
                    table.check_room(new, field)
                check_burst(namespace, ns_config, count)
            else:
                ns.check_tokens(now, count)
        except QuotaExceeded as exc:
            if exc.field == field:
                raise
            raise QuotaExceeded(field, exc.message) from None
