"""Identities from what the transport and the call carry (values as grpc gives them)."""

from __future__ import annotations

import pytest

from broadcaster._auth import bearer_token, certificate_identity

SSL = {"transport_security_type": [b"ssl"], "x509_subject": [b"CN=cn-client"],
       "x509_common_name": [b"cn-client"]}


@pytest.mark.parametrize(("context", "identity"), [
    ({**SSL, "peer_spiffe_id": [b"spiffe://example.org/a"],
      "peer_uri": [b"spiffe://example.org/a"], "peer_dns": [b"host"]},
     "spiffe://example.org/a"),
    ({**SSL, "peer_uri": [b"urn:example:x"], "peer_dns": [b"host"]}, "urn:example:x"),
    ({**SSL, "peer_dns": [b"client.example", b"other"]}, "client.example"),
    (SSL, "cn-client"),
    ({"transport_security_type": [b"ssl"]}, None),  # TLS without a client certificate
    ({}, None),  # plaintext
])
def test_certificate_identity(context: dict[str, list[bytes]], identity: str | None) -> None:
    assert certificate_identity(context) == identity


@pytest.mark.parametrize(("metadata", "token"), [
    ([("authorization", "Bearer abc")], "abc"),
    ([("x", "y"), ("authorization", "bearer   abc ")], "abc"),
    ([("authorization", "Basic abc")], ""),
    ([("authorization", "Bearer")], ""),
    ([("authorization", "Bearer a"), ("authorization", "Bearer b")], ""),
    ([("x", "y")], None),
    (None, None),
])
def test_bearer_token(metadata: list[tuple[str, str]] | None, token: str | None) -> None:
    assert bearer_token(metadata) == token
