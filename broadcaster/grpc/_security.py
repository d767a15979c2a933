"""The server's security at run time: the files in force (policy, tokens, certificates),
who a call is, what it may do, and the limits of each identity.

::

    Security(config, clock)
    ├── policy: Reloadable[SecurityPolicy] | None     access rules and limits per identity
    ├── tokens, metrics_tokens: Reloadable[TokenTable] | None
    ├── certificates: ServerCertificates | None       reloaded at each TLS handshake
    ├── authorizer: Authorizer                        decisions, denials counted and logged
    └── limits: IdentityLimiter                       per-identity counters

:meth:`Security.reload` (SIGHUP) reloads every file; :meth:`Security.watch` checks them
for changes every ``reload_interval``. A file that fails to load is refused and the one
in force stays. Listeners of a new policy (the server's: end the subscriptions that lost
their permission) are called after each successful policy reload.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TypeVar

import anyio
import grpc
from prometheus_client.core import CounterMetricFamily, Metric

from .. import InvalidArgument
from .._auth._access import ANONYMOUS, LOCAL
from .._auth._authorizer import Authorizer, Unauthenticated
from .._auth._config import ListenerSecurity, SecurityConfig
from .._auth._identity import bearer_token, certificate_identity
from .._auth._limits import IdentityLimiter, LimitTable
from .._auth._policy_file import SecurityPolicy, load_policy
from .._auth._reload import Reloadable
from .._auth._tokens import TokenTable, load_tokens
from ._peers import peer_address
from ._tls import ServerCertificates

__all__ = ["Security"]

logger = logging.getLogger("broadcaster.security")

_NO_LIMITS = LimitTable()

T = TypeVar("T")


def _open(key: str, path: str, load: Callable[[str], T], what: str) -> Reloadable[T]:
    """A file of the security settings, loaded at start.

    :raises InvalidArgument: naming the setting, if the file cannot be read (a file
        that can be read but is bad raises its own error, naming the key or line)
    """
    try:
        return Reloadable(path, load, what)
    except OSError as exc:
        raise InvalidArgument(f"security.{key}",
                              f"cannot read {path!r}: {exc.strerror or exc}") from None


class Security:
    """Everything the edge asks about who a caller is and what it may do.

    :param config: the security settings
    :param clock: monotonic seconds (the event loop's): limits and the denial log
    :raises BroadcasterError: if a policy, token or certificate file cannot be loaded
        at start (naming the setting, key or line)
    """

    def __init__(self, config: SecurityConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self.policy = None if config.policy_file is None else _open(
            "policy_file", config.policy_file, load_policy, "policy")
        self.tokens = None if config.token_file is None else _open(
            "token_file", config.token_file, load_tokens, "token")
        self.metrics_tokens = None if config.metrics_token_file is None else _open(
            "metrics_token_file", config.metrics_token_file, load_tokens, "metrics token")
        self.certificates = None if config.tls_cert_file is None else ServerCertificates(
            config.tls_cert_file, config.tls_key_file or "", config.tls_client_ca_file)
        self.authorizer = Authorizer(self._policy, clock, config.denied_log_interval)
        self.limits = IdentityLimiter(self._limit_table, clock)

    def _policy(self) -> SecurityPolicy | None:
        return None if self.policy is None else self.policy.value

    def _limit_table(self) -> LimitTable:
        return _NO_LIMITS if self.policy is None else self.policy.value.limits

    def on_policy_change(self, listener: Callable[[SecurityPolicy], None]) -> None:
        """Call *listener* after each successful reload of the policy file."""
        if self.policy is not None:
            self.policy.on_reload(listener)

    def describe(self) -> str:
        """One line for the start-up log."""
        policy = self._policy()
        return (f"policy={self.config.policy_file or 'none'}"
                f"{f' rules={policy.rules}' if policy is not None else ''} "
                f"tokens={len(self.tokens.value) if self.tokens else 0} "
                f"tls={'yes' if self.certificates else 'no'}")

    # -- listeners ----------------------------------------------------------------------

    def listener(self, address: str) -> ListenerSecurity:
        return self.config.listener(address)

    def credentials(self, listener: ListenerSecurity) -> grpc.ServerCredentials | None:
        """The TLS credentials of a listener, or None to serve it in plaintext."""
        if not listener.tls:
            return None
        assert self.certificates is not None  # SecurityConfig checked it
        return self.certificates.credentials(client_certificates=listener.auth == "mtls")

    # -- identities ---------------------------------------------------------------------

    def identify(self, listener: ListenerSecurity, *, unix: bool,
                 auth_context: Mapping[str, Iterable[bytes]],
                 metadata: Iterable[tuple[str, str | bytes]] | None, peer: str) -> str:
        """Who the call is.

        ``mtls``: the certificate's identity. ``token``: the token's; a call without one
        is refused. ``none``: a valid token's identity if the call carries one (so that
        several identities can share a socket), else ``local`` on a unix socket and
        ``anonymous`` over TCP.

        :raises Unauthenticated: no token where one is required, or a token that is not
            in the token file (counted and logged)
        """
        if listener.auth == "mtls":
            identity = certificate_identity(auth_context)
            if identity is None:  # gRPC verified a certificate: not expected
                raise self._refuse("no_certificate", peer,
                                   "this listener requires a client "
                                   "certificate")
            return identity
        token = bearer_token(metadata)
        if token is None:
            if listener.auth == "token":
                raise self._refuse("no_token", peer,
                                   "this listener requires a bearer token "
                                   "(metadata 'authorization: Bearer <token>')")
            return LOCAL if unix else ANONYMOUS
        return self._token_identity(token, peer)

    def _token_identity(self, token: str, peer: str) -> str:
        table = self.tokens.value if self.tokens is not None else None
        identity = table.identify(token) if table is not None and token else None
        if identity is None:
            raise self._refuse("invalid_token", peer,
                               "the bearer token is not valid"
                               if token else "expected 'Bearer <token>'")
        return identity

    def identify_scrape(self, authorization: str | None, peer: str) -> str:
        """Who a ``/metrics`` scrape is: the identity of its token in the metrics token
        file, or ``anonymous`` when none is configured.

        :raises Unauthenticated: when a metrics token file is configured and the scrape
            carries no valid token from it
        """
        if self.metrics_tokens is None:
            return ANONYMOUS
        token = bearer_token([("authorization", authorization)] if authorization else None)
        identity = self.metrics_tokens.value.identify(token) if token else None
        if identity is None:
            raise self._refuse("invalid_token" if token else "no_token", peer,
                               "/metrics requires a bearer token from the metrics token file")
        return identity

    def _refuse(self, reason: str, peer: str, message: str) -> Unauthenticated:
        # logged once per client address and interval (not per connection: its port)
        self.authorizer.note(reason, f"peer {peer_address(peer)}", lambda: f"peer={peer}")
        return Unauthenticated(reason, message)

    # -- reloading ----------------------------------------------------------------------

    def _files(self) -> list[Reloadable[SecurityPolicy] | Reloadable[TokenTable]]:
        return [f for f in (self.policy, self.tokens, self.metrics_tokens) if f is not None]

    def reload(self) -> bool:
        """Reload every file (SIGHUP); return whether all of them are in force."""
        ok = all([file.reload() for file in self._files()])
        if self.certificates is not None:
            self.certificates.check()
        return ok

    def check(self) -> None:
        """Reload the files that changed."""
        for file in self._files():
            file.check()
        if self.certificates is not None:
            self.certificates.check()

    async def watch(self) -> None:
        """Check the files every ``reload_interval`` (and forget idle identities'
        counters); runs until cancelled."""
        while True:
            await anyio.sleep(self.config.reload_interval)
            self.check()
            self.limits.prune()

    # -- figures ------------------------------------------------------------------------

    def metrics(self) -> Iterator[Metric]:
        """``broadcaster_auth_denied_total{reason}`` and
        ``broadcaster_security_reloads_total{file,result}``."""
        denied = CounterMetricFamily(
            "broadcaster_auth_denied",
            "Calls refused for want of credentials or of a permission, by reason (the "
            "permission, no_token, invalid_token).", labels=["reason"])
        for reason, count in sorted(self.authorizer.denied.items()):
            denied.add_metric([reason], count)
        reloads = CounterMetricFamily(
            "broadcaster_security_reloads",
            "Reloads of the policy, token and certificate files, by file and result "
            "(refused: the previous file stays in force).", labels=["file", "result"])
        for name, file in (("policy", self.policy), ("tokens", self.tokens),
                           ("metrics_tokens", self.metrics_tokens)):
            if file is not None:
                reloads.add_metric([name, "ok"], file.reloads)
                reloads.add_metric([name, "refused"], file.failures)
        if self.certificates is not None:
            reloads.add_metric(["certificates", "ok"], self.certificates.reloads)
            reloads.add_metric(["certificates", "refused"], self.certificates.failures)
        yield denied
        yield reloads
