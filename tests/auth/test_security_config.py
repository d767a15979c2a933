"""Security settings: listener defaults, what goes together, and the refusal of
non-loopback listeners without TLS or authentication unless insecure."""

from __future__ import annotations

import pytest

from broadcaster._auth import ListenerSecurity, SecurityConfig, is_loopback
from broadcaster._core._errors import InvalidArgument

TLS = {"tls_cert_file": "c.pem", "tls_key_file": "k.pem"}


def test_listener_defaults() -> None:
    assert SecurityConfig().listener("127.0.0.1:1") == ListenerSecurity(False, "none")
    assert SecurityConfig(**TLS).listener("h:1") == ListenerSecurity(True, "none")
    assert SecurityConfig(**TLS, tls_client_ca_file="ca.pem").listener("h:1") == \
        ListenerSecurity(True, "mtls")
    assert SecurityConfig(token_file="t").listener("h:1") == ListenerSecurity(False, "token")
    # unix sockets: local, whatever TCP does
    assert SecurityConfig(**TLS, token_file="t").listener("unix:/s") == ListenerSecurity()
    own = ListenerSecurity(False, "token")
    assert SecurityConfig(token_file="t", listeners={"unix:/s": own}).listener("unix:/s") == own


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"tls_cert_file": "c"}, r"^security\.tls_key_file: the certificate and its key"),
    ({"tls_client_ca_file": "ca"}, r"^security\.tls_client_ca_file: client certificates need"),
    ({"socket_mode": 0o1777}, r"^security\.socket_mode: must be permission bits"),
    ({"listeners": {"h:1": ListenerSecurity(tls=True)}},
     r'^security\.listeners\."h:1"\.tls: needs a certificate'),
    ({**TLS, "listeners": {"h:1": ListenerSecurity(tls=True, auth="mtls")}},
     r'^security\.listeners\."h:1"\.auth: mtls needs tls = true and '
     r"security\.tls_client_ca_file"),
    ({"listeners": {"h:1": ListenerSecurity(auth="token")}},
     r'^security\.listeners\."h:1"\.auth: token needs security\.token_file'),
    ({**TLS, "listeners": {"unix:/s": ListenerSecurity(tls=True)}},
     r'^security\.listeners\."unix:/s"\.tls: TLS is for TCP listeners'),
])
def test_what_goes_together(kwargs: dict[str, object], error: str) -> None:
    with pytest.raises(InvalidArgument, match=error):
        SecurityConfig(**kwargs)  # type: ignore[arg-type]


def test_non_loopback_without_tls_or_auth_is_refused_unless_insecure() -> None:
    listen = ("127.0.0.1:50051", "unix:/tmp/s", "0.0.0.0:50051")
    with pytest.raises(InvalidArgument, match=r"^listen\[2\]: '0\.0\.0\.0:50051' is not a "
                                              r"loopback address .* --insecure"):
        SecurityConfig().check_exposure(listen, None)
    SecurityConfig(insecure=True).check_exposure(listen, None)
    SecurityConfig(token_file="t").check_exposure(listen, None)
    SecurityConfig(**TLS).check_exposure(listen, None)
    SecurityConfig().check_exposure(listen[:2], "127.0.0.1:9464")  # make serve
    with pytest.raises(InvalidArgument, match=r"^metrics_listen: '\[::\]:9464' is not a "
                                              r"loopback address"):
        SecurityConfig().check_exposure(listen[:2], "[::]:9464")
    SecurityConfig(metrics_token_file="m").check_exposure(listen[:2], "[::]:9464")
    with pytest.raises(InvalidArgument, match=r'^security\.listeners\."h:2": is not one of'):
        SecurityConfig(listeners={"h:2": ListenerSecurity()}).check_exposure(listen, None)


@pytest.mark.parametrize(("address", "loopback"), [
    ("127.0.0.1:1", True), ("127.3.2.1:1", True), ("[::1]:1", True), ("localhost:1", True),
    ("0.0.0.0:1", False), ("[::]:1", False), ("10.1.2.3:1", False), ("example.org:1", False),
])
def test_is_loopback(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback
