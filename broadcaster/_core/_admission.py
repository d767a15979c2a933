"""What a subscription must pass before anything is created for it.

Everything is checked before the hub creates anything (namespaces, cursors), so that a
refused subscription leaves nothing behind: its arguments when it is made
(:func:`check_arguments`), then, when it registers, the names, each namespace's
subscription quota and policy limits, the namespace limit counting the namespaces it
would create and the cursor limit counting the cursors it would create (:func:`plan`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from ._budget import Budget
from ._config import HubConfig
from ._errors import InvalidArgument, QuotaExceeded
from ._namespace import NamespaceState
from ._policy import Policy
from ._registry import NamespaceTable
from ._validation import validate_namespace

__all__ = ["check_arguments", "plan"]


def check_arguments(
    namespaces: str | Sequence[str] | None,
    since: int | Mapping[str, int] | None,
    since_default: int | None,
    policy: Policy | None,
    liveness: str,
) -> tuple[str, ...] | None:
    """The namespaces a subscription names (None: every namespace), its arguments
    checked (see :meth:`Broadcaster.subscribe`).

    :raises InvalidNamespace, InvalidPolicy, InvalidArgument: naming the field
    """
    names: tuple[str, ...] | None
    if namespaces is None:
        names = None
    elif isinstance(namespaces, str):
        names = (validate_namespace(namespaces),)
    else:
        names = tuple(dict.fromkeys(
            validate_namespace(n, f"namespaces[{i}]") for i, n in enumerate(namespaces)
        ))
        if not names:
            raise InvalidArgument("namespaces", "must not be empty (use None for all)")
    if since is not None and not isinstance(since, Mapping) and (
        not isinstance(since, int) or since < 0
    ):
        raise InvalidArgument("since", "must be a non-negative integer")
    if policy is not None:
        policy.validated()
    if liveness not in ("consume", "ack"):
        raise InvalidArgument("liveness", "must be 'consume' or 'ack'")
    if since_default is not None and (not isinstance(since_default, int) or since_default < 0):
        raise InvalidArgument("since_default", "must be a non-negative integer")
    return names


def plan(names: tuple[str, ...] | None, policy: Policy | None, table: NamespaceTable,
         config: HubConfig, budget: Budget, wildcards: int,
         admit: Callable[[str], bool] | None = None
         ) -> tuple[list[NamespaceState], list[str]]:
    """The live namespaces a subscription naming *names* (None: all) with *policy* will
    read, and those it will create, once it passes every limit. *wildcards* is the
    number of all-namespaces subscriptions, which need a cursor in each new namespace.
    *admit*: the namespaces an all-namespaces subscription may read (None: every one).

    :raises QuotaExceeded: a namespace's subscriptions, the hub's namespaces or cursors
    :raises InvalidPolicy: *policy* (or a namespace's default) exceeds a namespace's
        limits
    """
    targets: list[NamespaceState] = []
    new: list[str] = []
    if names is None:
        targets = [ns for ns in table.live.values() if admit is None or admit(ns.name)]
    else:
        for name in names:
            ns = table.live.get(name)
            if ns is None:
                new.append(name)
            else:
                ns.check_subscription_quota()
                targets.append(ns)
        table.check_room(new, "namespaces")
    checked: set[int] = set()  # namespaces share their configuration: each checked once
    for name, ns_config in [(ns.name, ns.config) for ns in targets] + [
            (name, config.namespace(name)) for name in new]:
        if id(ns_config) not in checked:
            ns_config.check_policy(policy or ns_config.default_policy, name)
            checked.add(id(ns_config))
    # a new namespace also costs a cursor for every all-namespaces subscription
    needed = len(targets) + len(new) * (1 + wildcards)
    if budget.cursors + needed > budget.max_cursors:
        raise QuotaExceeded(
            "namespaces",
            f"the hub holds {budget.cursors} of its maximum of {budget.max_cursors} "
            f"cursors (one per subscription and namespace) and this subscription needs "
            f"{needed}: subscribe to fewer namespaces, or raise max_cursors ([hub] "
            "max_cursors in the configuration file)",
        )
    return targets, new
