"""The policy file: identities, their permissions per namespace pattern, their limits.

::

    # nothing is allowed unless a rule allows it; deny wins over allow
    [identities.local]                      # unix socket peers without a token
    admin = ["*"]

    [identities."spiffe://example.org/ns/runtime/sa/shim"]
    publish = ["k8s.io", "moby"]            # a list: the allow list
    create = ["k8s.io", "moby"]

    [identities.kubelet]
    subscribe = { allow = ["k8s.io"], deny = ["k8s.io-private*"] }
    stats = ["k8s.io"]

    [identities."*"]                        # every identity, anonymous and local included
    stats = { deny = ["secret*"] }

    [limits."*"]                            # every identity, each with its own counters
    publish_rate = 1000
    [limits.kubelet]                        # over "*", bound by bound
    max_subscriptions = 64

Errors name the key: ``identities."shim".publish.allow[1]: 'k8s io' is not a namespace
pattern (letters, digits, '.', '_', '-' and '*')``; TOML syntax errors name the line.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._core._errors import InvalidArgument
from ._access import AccessPolicy, Grant, IdentityEntry, Pattern, Permission
from ._limits import IdentityLimits, LimitTable

__all__ = ["PolicyError", "SecurityPolicy", "load_policy", "parse_policy"]

_NAMESPACE_PATTERN = re.compile(r"[A-Za-z0-9._*-]{1,256}")
_IDENTITY_MAX = 1024


class PolicyError(InvalidArgument):
    """The policy file is invalid; ``field`` is the key at fault (or the file, for a
    TOML syntax error, whose message names the line)."""


class SecurityPolicy:
    """What the policy file says: the access policy and the limits per identity.

    :ivar access: who may do what where
    :ivar limits: limits per identity
    :ivar rules: allow and deny patterns in all (a size figure for logs)
    """

    __slots__ = ("access", "limits", "rules")

    def __init__(self, access: AccessPolicy, limits: LimitTable) -> None:
        self.access = access
        self.limits = limits
        self.rules = sum(len(g.allow) + len(g.deny) for e in access.entries
                         for g in e.grants.values())


def _quote(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else f'"{key}"'


def _patterns(value: Any, key: str) -> tuple[Pattern, ...]:
    if not isinstance(value, list):
        raise PolicyError(key, "must be a list of namespace patterns")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not _NAMESPACE_PATTERN.fullmatch(item):
            raise PolicyError(f"{key}[{i}]", f"{item!r} is not a namespace pattern (letters, "
                              "digits, '.', '_', '-' and '*', at most 256 characters)")
        out.append(Pattern(item))
    return tuple(out)


def _grant(value: Any, key: str) -> Grant:
    if isinstance(value, list):
        return Grant(allow=_patterns(value, key))
    if not isinstance(value, Mapping):
        raise PolicyError(key, "must be a list of namespace patterns (the allow list) or a "
                          "table with allow and deny lists")
    for name in value:
        if name not in ("allow", "deny"):
            raise PolicyError(f"{key}.{_quote(name)}", "unknown key (expected allow, deny)")
    return Grant(allow=_patterns(value.get("allow", []), f"{key}.allow"),
                 deny=_patterns(value.get("deny", []), f"{key}.deny"))


def _identity_key(identity: str, key: str) -> Pattern:
    if not identity or len(identity) > _IDENTITY_MAX or any(
            ord(c) < 32 or ord(c) == 127 for c in identity):
        raise PolicyError(key, "an identity must be 1 to 1024 printable characters")
    return Pattern(identity)


def _entry(identity: str, value: Any) -> IdentityEntry:
    key = f"identities.{_quote(identity)}"
    pattern = _identity_key(identity, key)
    if not isinstance(value, Mapping):
        raise PolicyError(key, "must be a table of permissions")
    grants: dict[Permission, Grant] = {}
    for name, grant in value.items():
        try:
            permission = Permission(name)
        except ValueError:
            raise PolicyError(f"{key}.{_quote(name)}", "unknown permission (expected one of "
                              + ", ".join(p.value for p in Permission) + ")") from None
        grants[permission] = _grant(grant, f"{key}.{name}")
    return IdentityEntry(pattern, grants, key)


def _count(minimum: int) -> Any:
    def check(value: Any, key: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise PolicyError(key, "must be a positive integer" if minimum == 1
                              else f"must be an integer >= {minimum}")
        return value
    return check


def _rate(value: Any, key: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        raise PolicyError(key, "must be a positive number of events per second")
    return float(value)


_LIMITS = {
    "publish_rate": _rate,
    "publish_burst": _count(1),
    "max_streams": _count(0),
    "max_subscriptions": _count(0),
    "new_namespaces_per_minute": _count(0),
}


def _limits(identity: str, value: Any) -> IdentityLimits:
    key = f"limits.{_quote(identity)}"
    if identity != "*":
        _identity_key(identity, key)
    if not isinstance(value, Mapping):
        raise PolicyError(key, "must be a table of limits")
    values: dict[str, Any] = {}
    for name, item in value.items():
        check = _LIMITS.get(name)
        if check is None:
            raise PolicyError(f"{key}.{_quote(name)}",
                              f"unknown limit (expected one of {', '.join(_LIMITS)})")
        values[name] = check(item, f"{key}.{name}")
    return IdentityLimits(**values)


def parse_policy(data: Mapping[str, Any], source: str = "") -> SecurityPolicy:
    """Build the policy from parsed TOML *data*.

    :raises PolicyError: naming the key at fault
    """
    for key in data:
        if key not in ("identities", "limits"):
            raise PolicyError(_quote(key), "unknown section (expected identities, limits)")
    identities = data.get("identities", {})
    if not isinstance(identities, Mapping):
        raise PolicyError("identities", "must be a table of identities")
    limits = data.get("limits", {})
    if not isinstance(limits, Mapping):
        raise PolicyError("limits", "must be a table of identities")
    entries = tuple(_entry(identity, value) for identity, value in identities.items())
    table = LimitTable({identity: _limits(identity, value) for identity, value in limits.items()})
    return SecurityPolicy(AccessPolicy(entries, source), table)


def load_policy(path: str | Path) -> SecurityPolicy:
    """Read and parse the policy file at *path*.

    :raises PolicyError: naming the key at fault, or the line of a TOML syntax error
    :raises OSError: if the file cannot be read
    """
    with open(path, "rb") as file:
        try:
            data = tomllib.load(file)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(str(path), f"not valid TOML: {exc}") from None
        except UnicodeDecodeError as exc:
            raise PolicyError(str(path), f"not UTF-8 text: {exc}") from None
    return parse_policy(data, str(path))
