"""The policy in force, asked on every call: cached decisions, counted and logged
denials.

Denials are counted by reason (``broadcaster_auth_denied_total{reason}``: the permission
refused, or what was wrong with the credentials) and logged at most once per identity
per ``log_interval`` (60 s), with the count of denials not logged, never once per event.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from .._core._errors import BroadcasterError
from ._access import Decision, Permission, decide
from ._policy_file import SecurityPolicy

__all__ = ["AccessDenied", "Authorizer", "Unauthenticated"]

logger = logging.getLogger("broadcaster.security")

#: Cached decisions kept at most (the cache is emptied when full, and on every reload).
_CACHE_MAX = 65_536
#: Identities whose last denial time is kept at most for the log's rate limit.
_LOGGED_MAX = 10_000


class AccessDenied(BroadcasterError, PermissionError):
    """The caller's identity lacks a permission (gRPC ``PERMISSION_DENIED``: the edge
    maps Python's ``PermissionError`` kind to it).

    :ivar identity: who asked
    :ivar permission: what was refused
    :ivar namespace: where (None: a server-wide action)
    """

    def __init__(self, field: str, identity: str, permission: Permission,
                 namespace: str | None, *, anywhere: bool = False) -> None:
        where = "any namespace" if anywhere else (
            "the server" if namespace is None else f"namespace {namespace!r}")
        super().__init__(field, f"identity {identity!r} lacks permission "
                         f"{permission.value!r} on {where}")
        self.identity = identity
        self.permission = permission
        self.namespace = namespace
        #: the ``reason`` it is counted under in ``broadcaster_grpc_rejected_total``
        self.reject_reason = "permission_denied"


class Unauthenticated(BroadcasterError):
    """The call carries no valid credentials (gRPC ``UNAUTHENTICATED``).

    :ivar reason: ``no_token`` or ``invalid_token``
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__("authorization", message)
        self.reason = reason


class Authorizer:
    """Answers "may this identity do this here" with the policy in force.

    :param policy: returns the policy in force, or None when no policy file is
        configured (then every identity may do everything)
    :param clock: monotonic seconds, for the log's rate limit
    :param log_interval: seconds between two log lines about one identity
    """

    def __init__(self, policy: Callable[[], SecurityPolicy | None],
                 clock: Callable[[], float], log_interval: float = 60.0) -> None:
        self._policy = policy
        self._clock = clock
        self._log_interval = log_interval
        self._cache: dict[tuple[str, Permission, str | None], bool] = {}
        self._cached_for: SecurityPolicy | None = None
        self._logged: dict[str, tuple[float, int]] = {}  # identity -> (when, not logged)
        #: denials by reason
        self.denied: Counter[str] = Counter()

    @property
    def enforcing(self) -> bool:
        """Whether a policy is in force (without one, everything is allowed)."""
        return self._policy() is not None

    def decision(self, identity: str, permission: Permission,
                 namespace: str | None) -> Decision:
        """The full decision, uncached (for logs and tests)."""
        policy = self._policy()
        if policy is None:
            return Decision(True, "no policy file")
        return decide(policy.access, identity, permission, namespace)

    def allowed(self, identity: str, permission: Permission, namespace: str | None) -> bool:
        """Whether *identity* may do *permission* in *namespace* (cached per policy)."""
        policy = self._policy()
        if policy is None:
            return True
        if policy is not self._cached_for:
            self._cache.clear()
            self._cached_for = policy
        key = (identity, permission, namespace)
        answer = self._cache.get(key)
        if answer is None:
            answer = decide(policy.access, identity, permission, namespace).allowed
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[key] = answer
        return answer

    def check(self, identity: str, permission: Permission, namespace: str | None,
              field: str = "namespace") -> None:
        """Refuse unless *identity* may do *permission* in *namespace*.

        :param field: the request field that named the namespace, for the message
        :raises AccessDenied: counted and logged
        """
        if not self.allowed(identity, permission, namespace):
            raise self.denial(identity, permission, namespace, field)

    def denial(self, identity: str, permission: Permission, namespace: str | None,
               field: str = "namespace", *, anywhere: bool = False) -> AccessDenied:
        """Count and log a denial; return the error to raise.

        :param anywhere: the identity has *permission* on no namespace at all
        """
        exc = AccessDenied(field, identity, permission, namespace, anywhere=anywhere)
        self.note(permission.value, identity, lambda: (
            f"permission={permission.value} "
            f"namespace={'(any)' if anywhere else namespace or '-'} "
            f"rule={self.decision(identity, permission, namespace).rule or 'none allows'}"))
        return exc

    def note(self, reason: str, identity: str, details: Callable[[], str]) -> None:
        """Count a denial (any reason: a permission, ``no_token``, ``invalid_token``)
        and log it unless *identity* was logged within the interval."""
        self.denied[reason] += 1
        now = self._clock()
        last = self._logged.get(identity)
        if last is not None and now - last[0] < self._log_interval:
            self._logged[identity] = (last[0], last[1] + 1)
            return
        if len(self._logged) >= _LOGGED_MAX:
            self._prune(now)
        suppressed = 0 if last is None else last[1]
        self._logged[identity] = (now, 0)
        logger.warning("access denied identity=%r reason=%s %s suppressed=%d",
                       identity, reason, details(), suppressed)

    def _prune(self, now: float) -> None:
        for identity, (when, _) in list(self._logged.items()):
            if now - when >= self._log_interval:
                del self._logged[identity]
        if len(self._logged) >= _LOGGED_MAX:
            self._logged.clear()
