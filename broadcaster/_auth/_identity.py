"""Who a caller is, from what the transport and the call carry.

* a verified client certificate (mTLS): its SPIFFE ID (a ``spiffe://`` URI SAN), else
  its first URI SAN, else its first DNS SAN, else its subject's common name;
* a bearer token in the call's ``authorization`` metadata, looked up in the token file;
* a unix socket peer without either: ``local`` (whoever the socket's permissions let in);
* a TCP caller without either: ``anonymous``.

These helpers read plain values (the gRPC auth context as a mapping of property names to
lists of bytes, the metadata as key/value pairs), so that they are tested without a
server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["AUTHORIZATION_METADATA", "bearer_token", "certificate_identity"]

#: The call metadata key a bearer token travels in (``authorization: Bearer <token>``).
AUTHORIZATION_METADATA = "authorization"

#: Auth context properties tried in order: SPIFFE ID, URI SAN, DNS SAN, common name.
_CERT_PROPERTIES = ("peer_spiffe_id", "peer_uri", "peer_dns", "x509_common_name")


def certificate_identity(auth_context: Mapping[str, Iterable[bytes]]) -> str | None:
    """The identity of a verified client certificate, or None if the call has none.

    :param auth_context: ``ServicerContext.auth_context()`` (gRPC fills it from the
        certificate it verified against the client CA)
    """
    if _first(auth_context, "x509_subject") is None and \
            _first(auth_context, "peer_spiffe_id") is None:
        return None  # no client certificate: TLS without client auth, or plaintext
    for name in _CERT_PROPERTIES:
        value = _first(auth_context, name)
        if value:
            return value
    return None


def _first(auth_context: Mapping[str, Iterable[bytes]], name: str) -> str | None:
    value = next(iter(auth_context.get(name) or ()), None)
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The token of an ``authorization: Bearer <token>`` entry, or None if there is
    none; ``""`` if the entry is malformed (another scheme, no token, several entries)."""
    found: str | None = None
    for key, value in metadata or ():
        if key != AUTHORIZATION_METADATA:
            continue
        if found is not None:
            return ""
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        scheme, _, token = text.strip().partition(" ")
        found = token.strip() if scheme.lower() == "bearer" else ""
    return found
