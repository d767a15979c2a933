"""Compiled filter lists, interned by their text, bounded by count and by bytes."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from ._config import FilterConfig
from ._filters import CompiledFilters, PayloadOf, compile_filter_list

__all__ = ["FilterCache"]


class FilterCache:
    """Identical filter lists share one compiled matcher, so that their subscriptions
    share each filtered read of a namespace's log.

    The least recently used lists go first when more than ``cache_entries`` are kept or
    their estimated memory passes ``cache_bytes``; a list larger than that budget is
    compiled for its subscription and not kept. Evicting only ends sharing: live
    subscriptions keep their own compiled filters.
    """

    __slots__ = ("_bytes", "_entries", "_limits", "_payload_of")

    def __init__(self, limits: FilterConfig, payload_of: PayloadOf) -> None:
        self._limits = limits
        self._payload_of = payload_of
        self._entries: OrderedDict[tuple[str, ...], CompiledFilters] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        """Estimated bytes of the compiled lists kept."""
        return self._bytes

    def get(self, filters: Sequence[str]) -> CompiledFilters:
        """The compiled form of *filters*.

        :raises InvalidFilter: naming ``filters[i]`` and what is wrong with it
        """
        key = (filters,) if isinstance(filters, str) else tuple(filters)
        hashable = all(isinstance(f, str) for f in key)
        if hashable:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found
        compiled = compile_filter_list(key, limits=self._limits, payload_of=self._payload_of)
        if hashable and compiled.matcher is not None:
            self._keep(key, compiled)
        return compiled

    def _keep(self, key: tuple[str, ...], compiled: CompiledFilters) -> None:
        limits, entries = self._limits, self._entries
        if compiled.memory > limits.cache_bytes:
            return
        while entries and (len(entries) >= limits.cache_entries
                           or self._bytes + compiled.memory > limits.cache_bytes):
            _, old = entries.popitem(last=False)
            self._bytes -= old.memory
        entries[key] = compiled
        self._bytes += compiled.memory
