"""Security settings of the server (:class:`SecurityConfig`), immutable.

Per listener (:class:`ListenerSecurity`): whether it serves TLS, and how callers are
identified (``auth``): ``mtls`` (a client certificate verified against the client CA),
``token`` (a bearer token from the token file) or ``none`` (unix sockets: ``local``;
TCP: ``anonymous``). Listeners not named in ``listeners`` take the defaults:

* TCP: TLS when a certificate is configured; ``mtls`` when a client CA is, else
  ``token`` when a token file is, else ``none``;
* unix sockets: no TLS, ``none`` (the socket file's mode and group decide who gets in).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from .._core._errors import InvalidArgument

__all__ = ["AUTH_MODES", "ListenerSecurity", "SecurityConfig", "is_loopback"]

AuthMode = Literal["none", "token", "mtls"]
AUTH_MODES: tuple[AuthMode, ...] = ("none", "token", "mtls")


@dataclass(frozen=True, slots=True)
class ListenerSecurity:
    """How one listener is secured.

    :ivar tls: serve TLS with the server certificate
    :ivar auth: ``mtls``, ``token`` or ``none``
    """

    tls: bool = False
    auth: AuthMode = "none"

    @property
    def authenticated(self) -> bool:
        return self.auth != "none"


def is_loopback(address: str) -> bool:
    """Whether the ``HOST:PORT`` *address* binds only a loopback interface."""
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: whatever it resolves to is not known here


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    """Authentication, authorization and exposure of the server.

    :ivar policy_file: the access policy and per-identity limits (TOML; see
        docs/security.md); None: every identity may do everything, without limits
    :ivar token_file: hashes of bearer tokens and the identity of each
    :ivar tls_cert_file: the server's certificate chain (PEM)
    :ivar tls_key_file: its private key (PEM)
    :ivar tls_client_ca_file: CA certificates client certificates are verified against
        (mTLS)
    :ivar listeners: per listen address, settings other than the defaults
    :ivar insecure: serve non-loopback TCP addresses (and metrics) without TLS or
        authentication; refused at start otherwise
    :ivar socket_mode: permission bits of the unix sockets (containerd's default too)
    :ivar socket_group: group (name or id) the unix sockets are given, or None
    :ivar metrics_token_file: hashes of the tokens ``/metrics`` accepts (their
        identities' ``stats`` permission decides which namespaces' series they see);
        None: scrapes are ``anonymous`` (with a policy file, they see the namespaces
        ``anonymous`` has ``stats`` on; without one, all)
    :ivar reload_interval: seconds between checks of the policy, token and certificate
        files for changes (also reloaded on SIGHUP)
    :ivar denied_log_interval: seconds between two log lines about one identity's
        denials
    """

    policy_file: str | None = None
    token_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_client_ca_file: str | None = None
    listeners: Mapping[str, ListenerSecurity] = field(default_factory=dict)
    insecure: bool = False
    socket_mode: int = 0o600
    socket_group: str | int | None = None
    metrics_token_file: str | None = None
    reload_interval: float = 2.0
    denied_log_interval: float = 60.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "listeners", dict(self.listeners))
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise InvalidArgument("security.tls_key_file" if self.tls_key_file is None
                                  else "security.tls_cert_file",
                                  "the certificate and its key go together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise InvalidArgument("security.tls_client_ca_file",
                                  "client certificates need TLS: set tls_cert_file and "
                                  "tls_key_file too")
        if not isinstance(self.socket_mode, int) or isinstance(self.socket_mode, bool) \
                or not 0 <= self.socket_mode <= 0o777:
            raise InvalidArgument("security.socket_mode",
                                  "must be permission bits between 0o000 and 0o777")
        for name in ("reload_interval", "denied_log_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise InvalidArgument(f"security.{name}", "must be a positive number of seconds")
        for address, listener in self.listeners.items():
            self._check_listener(address, listener)

    def listener(self, address: str) -> ListenerSecurity:
        """The settings of the listener at *address* (``HOST:PORT`` or ``unix:PATH``)."""
        own = self.listeners.get(address)
        if own is not None:
            return own
        if address.startswith("unix:"):
            return ListenerSecurity()
        auth: AuthMode = "mtls" if self.tls_client_ca_file is not None else (
            "token" if self.token_file is not None else "none")
        return ListenerSecurity(tls=self.tls_cert_file is not None, auth=auth)

    def _check_listener(self, address: str, listener: ListenerSecurity) -> None:
        key = f'security.listeners."{address}"'
        if listener.auth not in AUTH_MODES:
            raise InvalidArgument(f"{key}.auth", f"must be one of {', '.join(AUTH_MODES)}")
        unix = address.startswith("unix:")
        if listener.tls and unix:
            raise InvalidArgument(f"{key}.tls", "TLS is for TCP listeners (a unix socket's "
                                  "file permissions decide who connects)")
        if listener.tls and self.tls_cert_file is None:
            raise InvalidArgument(f"{key}.tls", "needs a certificate: set "
                                  "security.tls_cert_file and tls_key_file")
        if listener.auth == "mtls" and (not listener.tls or self.tls_client_ca_file is None):
            raise InvalidArgument(f"{key}.auth", "mtls needs tls = true and "
                                  "security.tls_client_ca_file")
        if listener.auth == "token" and self.token_file is None:
            raise InvalidArgument(f"{key}.auth", "token needs security.token_file")

    def check_exposure(self, listen: Sequence[str], metrics_listen: str | None) -> None:
        """Refuse what would let anyone on the network in (unless ``insecure``), and
        listener settings for addresses that are not served.

        :raises InvalidArgument: naming the address and how to secure it
        """
        for address in self.listeners:
            if address not in listen:
                raise InvalidArgument(f'security.listeners."{address}"',
                                      "is not one of the listen addresses")
        for i, address in enumerate(listen):
            listener = self.listener(address)
            self._check_listener(address, listener)
            if listener.auth == "token" and self.token_file is None:
                raise InvalidArgument(f"listen[{i}]", "token authentication needs "
                                      "security.token_file")
            if (self.insecure or address.startswith("unix:") or is_loopback(address)
                    or listener.tls or listener.authenticated):
                continue
            raise InvalidArgument(
                f"listen[{i}]",
                f"{address!r} is not a loopback address and would be served without TLS or "
                "authentication: anyone who reaches it could publish into and read every "
                "namespace. Secure it with TLS and client certificates or tokens "
                "(broadcaster serve --tls-cert/--tls-key with --tls-client-ca or "
                "--token-file; [security] in the configuration file, see "
                "docs/security.md), or serve it as it is with --insecure "
                "([security] insecure = true)")
        if (metrics_listen is not None and not self.insecure
                and not is_loopback(metrics_listen) and self.metrics_token_file is None
                and self.policy_file is None):
            raise InvalidArgument(
                "metrics_listen",
                f"{metrics_listen!r} is not a loopback address and /metrics would answer "
                "anyone with every namespace's series. Require a token "
                "(--metrics-token-file; [security] metrics_token_file), let a policy file "
                "decide what an anonymous scrape sees (--policy-file), or serve it as it is "
                "with --insecure ([security] insecure = true)")
