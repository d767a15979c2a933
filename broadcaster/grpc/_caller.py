"""Who the current call is, and what it may do: set by the interceptor for the call's
task (:data:`CALLER`), asked by the handlers of both APIs.

Every check raises the security model's own errors, which the edge's error mapping
answers: :class:`AccessDenied` (``PERMISSION_DENIED``, naming the field, identity,
permission and namespace) and :class:`LimitExceeded` (``RESOURCE_EXHAUSTED``, naming
the limit).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass

from .. import Broadcaster
from .._auth._access import ANONYMOUS, LOCAL, Permission
from .._auth._config import ListenerSecurity
from .._auth._identity import bearer_token
from ._security import Security

__all__ = [
    "ADMIN_METHODS",
    "CALLER",
    "OPEN_METHODS",
    "STREAMS_NOT_COUNTED",
    "Caller",
    "PublishTicket",
    "authenticate",
    "current_caller",
    "publishing",
]

#: Methods any caller a listener admits may call, credentials or not: health checks
#: (orchestrators and load balancers probe without tokens) and containerd's
#: introspection (``ctr`` asks it before ``events``; it tells a uuid and a pid).
OPEN_METHODS = ("/grpc.health.v1.Health/",
                "/containerd.services.introspection.v1.Introspection/")
#: Methods that need ``admin`` on ``*``: server reflection (the API's whole surface).
ADMIN_METHODS = ("/grpc.reflection.",)
#: Streaming methods not counted in an identity's ``max_streams``.
STREAMS_NOT_COUNTED = ("/grpc.health.v1.Health/",)


@dataclass(slots=True)
class PublishTicket:
    """What :meth:`Caller.before_publish` took, to settle after the publish.

    :ivar events: publish-rate tokens taken
    :ivar new: namespaces that did not exist, which the publish may create
    """

    events: int
    new: list[str]


class Caller:
    """The identity of one call and the checks its handlers make.

    :param security: the server's security
    :param identity: who the call is
    """

    __slots__ = ("identity", "security")

    def __init__(self, security: Security, identity: str) -> None:
        self.security = security
        self.identity = identity

    # -- permissions --------------------------------------------------------------------

    def check(self, permission: Permission, namespace: str | None,
              field: str = "namespace") -> None:
        """:raises AccessDenied: unless the identity has *permission* on *namespace*"""
        self.security.authorizer.check(self.identity, permission, namespace, field)

    def may(self, permission: Permission, namespace: str | None) -> bool:
        """Whether the identity has *permission* on *namespace* (nothing counted)."""
        return self.security.authorizer.allowed(self.identity, permission, namespace)

    # -- publishing ---------------------------------------------------------------------

    def before_publish(self, hub: Broadcaster,
                       runs: Sequence[tuple[str, str, int]]) -> PublishTicket:
        """Check and take what publishing *runs* needs: ``publish`` on each namespace,
        ``create`` and room in ``new_namespaces_per_minute`` for those that do not exist,
        and the events from the publish rate (all or none).

        :param runs: (namespace, the field that named it, events) per namespace
        :raises AccessDenied, LimitExceeded: nothing taken
        """
        new: list[str] = []
        events = 0
        for namespace, field, count in runs:
            self.check(Permission.PUBLISH, namespace, field)
            if not hub.has_namespace(namespace) and namespace not in new:
                self.check(Permission.CREATE, namespace, field)
                new.append(namespace)
            events += count
        limits = self.security.limits
        for i, namespace in enumerate(new):  # each one more than those before it
            limits.check_new_namespace(self.identity, namespace, i + 1)
        limits.take_publish(self.identity, events)
        return PublishTicket(events, new)

    def after_publish(self, hub: Broadcaster, ticket: PublishTicket,
                      published: int) -> None:
        """Settle a publish: give back the rate tokens of events not published, count
        the namespaces it created."""
        if published < ticket.events:
            self.security.limits.refund_publish(self.identity, ticket.events - published)
        for namespace in ticket.new:
            if hub.has_namespace(namespace):
                self.security.limits.created_namespace(self.identity)

    # -- subscribing --------------------------------------------------------------------

    def before_subscribe(self, hub: Broadcaster, namespaces: Sequence[str] | None,
                         field: str = "namespaces") -> tuple[Callable[[str], bool] | None,
                                                             list[str]]:
        """Check a subscription and count it (release it with :meth:`unsubscribed`).

        :param namespaces: the namespaces named, or None for every namespace
        :returns: the admission predicate of the subscription (None when no policy is in
            force) and the namespaces it will create
        :raises AccessDenied: a named namespace without ``subscribe``, or no
            ``subscribe`` anywhere for an all-namespaces subscription
        :raises LimitExceeded: ``max_subscriptions``, ``new_namespaces_per_minute``
        """
        new: list[str] = []
        if namespaces is None:
            if not self.security.authorizer.enforcing:
                admit = None
            else:
                policy = self.security.policy
                assert policy is not None
                if not policy.value.access.grants_anything(self.identity, Permission.SUBSCRIBE):
                    raise self.security.authorizer.denial(
                        self.identity, Permission.SUBSCRIBE, None, field, anywhere=True)
                admit = self.admit
        else:
            admit = self.admit if self.security.authorizer.enforcing else None
            for i, namespace in enumerate(namespaces):
                self.check(Permission.SUBSCRIBE, namespace, f"{field}[{i}]")
                if not hub.has_namespace(namespace) and namespace not in new:
                    new.append(namespace)
        limits = self.security.limits
        limits.add_subscription(self.identity)
        try:
            for i, namespace in enumerate(new):
                limits.check_new_namespace(self.identity, namespace, i + 1)
        except BaseException:
            limits.remove_subscription(self.identity)
            raise
        return admit, new

    def subscribed(self, hub: Broadcaster, new: Sequence[str]) -> None:
        """Count the namespaces a subscription created."""
        for namespace in new:
            if hub.has_namespace(namespace):
                self.security.limits.created_namespace(self.identity)

    def unsubscribed(self) -> None:
        """A subscription counted by :meth:`before_subscribe` ended."""
        self.security.limits.remove_subscription(self.identity)

    def admit(self, namespace: str) -> bool:
        """The admission predicate of its subscriptions: ``subscribe`` on *namespace*
        under the policy in force (asked again after each reload)."""
        return self.security.authorizer.allowed(self.identity, Permission.SUBSCRIBE, namespace)

    # -- figures ------------------------------------------------------------------------

    def sees_stats(self, namespace: str) -> bool:
        return self.may(Permission.STATS, namespace)


#: The caller of the RPC running in this task (None outside RPCs).
CALLER: ContextVar[Caller | None] = ContextVar("broadcaster_caller", default=None)


def current_caller() -> Caller:
    """The current call's caller.

    :raises RuntimeError: outside a call the server's interceptor admitted
    """
    caller = CALLER.get()
    if caller is None:
        raise RuntimeError("no caller: not inside an RPC admitted by the server")
    return caller


def authenticate(security: Security, listener: ListenerSecurity, method: str, *,
                 unix: bool, auth_context: Mapping[str, Iterable[bytes]],
                 metadata: Iterable[tuple[str, str | bytes]] | None, peer: str) -> Caller:
    """The caller of a new call on *listener* (what the interceptor does first).

    :raises Unauthenticated: credentials missing or invalid (a call of
        :data:`OPEN_METHODS` without a token runs as ``local`` or ``anonymous``)
    :raises AccessDenied: a method of :data:`ADMIN_METHODS` without ``admin`` on ``*``
    """
    if (listener.auth == "token" and method.startswith(OPEN_METHODS)
            and bearer_token(metadata) is None):
        identity = LOCAL if unix else ANONYMOUS
    else:
        identity = security.identify(listener, unix=unix, auth_context=auth_context,
                                     metadata=metadata, peer=peer)
    caller = Caller(security, identity)
    if method.startswith(ADMIN_METHODS):
        caller.check(Permission.ADMIN, None, "method")
    return caller


@contextlib.contextmanager
def publishing(hub: Broadcaster, runs: Sequence[tuple[str, str, int]]
               ) -> Iterator[Callable[[int], None]]:
    """``with publishing(hub, runs) as published:`` around a publish by the current
    caller: checks and takes what it needs first (:meth:`Caller.before_publish`), then
    settles with the count of events the block reported through ``published(n)``.
    Without a caller (the services used without the server's interceptor) nothing is
    checked.

    :raises AccessDenied, LimitExceeded: before the block runs
    """
    caller = CALLER.get()
    if caller is None:
        yield lambda count: None
        return
    ticket = caller.before_publish(hub, runs)
    done = [0]

    def published(count: int) -> None:
        done[0] += count

    try:
        yield published
    finally:
        caller.after_publish(hub, ticket, done[0])
