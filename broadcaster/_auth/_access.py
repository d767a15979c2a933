"""Who may do what where: the access policy model and its decision function.

Shaped like nats-server's ``Permissions``: each identity entry holds, per permission,
an *allow* list and a *deny* list of namespace patterns, and deny wins::

    AccessPolicy
    └── entries: IdentityEntry (identity pattern: exact, "*" or a glob)
        └── grants: Permission -> Grant(allow=(patterns...), deny=(patterns...))

:func:`decide` is a pure function of (policy, identity, permission, namespace): every
entry whose identity pattern matches the identity contributes; a deny pattern matching
the namespace in any of them refuses, else an allow pattern matching it in any of them
permits, else the action is refused (nothing is allowed unless a rule allows it).

``admin`` stands for every permission: allowing it allows them all on those
namespaces, denying it denies them all. Server-wide actions (reflection, introspection)
are ``admin`` with no namespace: only the pattern ``*`` covers them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "ANONYMOUS",
    "LOCAL",
    "AccessPolicy",
    "Decision",
    "Grant",
    "IdentityEntry",
    "Pattern",
    "Permission",
    "decide",
]

#: The identity of every peer of a unix socket served without tokens: whoever the
#: socket file's permissions let in.
LOCAL = "local"
#: The identity of a caller over TCP without TLS client certificates or tokens
#: (loopback, or a listener the operator declared ``insecure``), and of an
#: unauthenticated ``/metrics`` scrape.
ANONYMOUS = "anonymous"


class Permission(StrEnum):
    """What an identity may do in a namespace."""

    #: publish events into the namespace (both APIs; containerd's Forward too)
    PUBLISH = "publish"
    #: publish into the namespace while it does not exist, creating it
    CREATE = "create"
    #: subscribe to the namespace (named, or seen by an all-namespaces subscription)
    SUBSCRIBE = "subscribe"
    #: see the namespace's figures in Stats and its series on /metrics
    STATS = "stats"
    #: every permission on the namespace; on ``*``, also server-wide actions
    ADMIN = "admin"


class Pattern:
    """A namespace or identity pattern: ``*`` matches any run of characters (none
    included); every other character matches itself. ``*`` alone matches everything.

    :param text: the pattern as written
    """

    __slots__ = ("_exact", "_prefix", "_regex", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._exact: str | None = None
        self._prefix: str | None = None
        self._regex: re.Pattern[str] | None = None
        stars = text.count("*")
        if stars == 0:
            self._exact = text
        elif stars == 1 and text.endswith("*"):
            self._prefix = text[:-1]
        else:
            self._regex = re.compile(".*".join(re.escape(part) for part in text.split("*")),
                                     re.DOTALL)

    @property
    def everything(self) -> bool:
        return self._prefix == ""

    def matches(self, value: str | None) -> bool:
        """Whether *value* matches; None (a server-wide action) matches only ``*``."""
        if value is None:
            return self.everything
        if self._exact is not None:
            return value == self._exact
        if self._prefix is not None:
            return value.startswith(self._prefix)
        assert self._regex is not None
        return self._regex.fullmatch(value) is not None

    def __repr__(self) -> str:
        return f"Pattern({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pattern) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


@dataclass(frozen=True, slots=True)
class Grant:
    """The namespaces one permission is allowed and denied on, for one identity entry."""

    allow: tuple[Pattern, ...] = ()
    deny: tuple[Pattern, ...] = ()


@dataclass(frozen=True, slots=True)
class IdentityEntry:
    """The permissions of the identities matching *identity*.

    :ivar identity: exact identity, ``*`` (everyone) or a glob
    :ivar grants: per permission, its allow and deny lists
    :ivar source: where it was written (the policy file's key), for messages
    """

    identity: Pattern
    grants: Mapping[Permission, Grant] = field(default_factory=dict)
    source: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer of :func:`decide`.

    :ivar allowed: whether the action is permitted
    :ivar rule: the rule that decided (``identities."x".publish.deny 'sys.*'``), or
        None when no rule allowed it
    """

    allowed: bool
    rule: str | None = None


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """An immutable access policy: the identity entries, in the file's order.

    :ivar entries: who may do what where
    :ivar source: where it was loaded from (for messages)
    """

    entries: Sequence[IdentityEntry] = ()
    source: str = ""

    def entries_for(self, identity: str) -> list[IdentityEntry]:
        """The entries that apply to *identity*."""
        return [entry for entry in self.entries if entry.identity.matches(identity)]

    def grants_anything(self, identity: str, permission: Permission) -> bool:
        """Whether *identity* has *permission* on at least one namespace pattern (what a
        caller must have to be told more than "denied")."""
        return any(entry.grants.get(p) is not None and entry.grants[p].allow
                   for entry in self.entries_for(identity)
                   for p in (permission, Permission.ADMIN))


def _rule(entry: IdentityEntry, permission: Permission, kind: str, pattern: Pattern) -> str:
    return f"{entry.source or entry.identity.text}.{permission.value}.{kind} {pattern.text!r}"


def decide(policy: AccessPolicy, identity: str, permission: Permission,
           namespace: str | None) -> Decision:
    """May *identity* do *permission* in *namespace*? Pure: the same arguments give the
    same answer.

    :param policy: the policy in force
    :param identity: who asks (``local``, ``anonymous``, a token's or a certificate's
        identity)
    :param permission: what it wants to do
    :param namespace: where, or None for a server-wide action (covered only by ``*``)
    :returns: denied if any applicable deny pattern matches (``admin`` denies every
        permission), else allowed if any applicable allow pattern matches (``admin``
        allows every permission), else denied
    """
    kinds = (permission,) if permission is Permission.ADMIN else (permission, Permission.ADMIN)
    entries = policy.entries_for(identity)
    allowed_by: str | None = None
    for entry in entries:
        for kind in kinds:
            grant = entry.grants.get(kind)
            if grant is None:
                continue
            for pattern in grant.deny:
                if pattern.matches(namespace):
                    return Decision(False, _rule(entry, kind, "deny", pattern))
            if allowed_by is None:
                for pattern in grant.allow:
                    if pattern.matches(namespace):
                        allowed_by = _rule(entry, kind, "allow", pattern)
                        break
    return Decision(allowed_by is not None, allowed_by)
