"""Bearer tokens: the server keeps only their SHA-256 hashes, each mapped to an identity.

The token file (one entry a line; ``#`` starts a comment)::

    sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae  kubelet
    sha256:fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9  spiffe://x/shim

Why one fast hash is sound here: a token is 256 random bits (:func:`new_token`), so
its hash cannot be reversed by guessing, and the file leaks nothing usable. (A slow
password hash protects low-entropy secrets chosen by people; these are not.) A token
presented by a client is hashed, found by the first 16 digits of its hash, and the whole
hash compared with :func:`hmac.compare_digest`. Tokens shorter than 32 characters are
refused before hashing. Lines starting with ``#`` are comments.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

from .._core._errors import InvalidArgument
from ._access import ANONYMOUS, LOCAL

__all__ = [
    "MIN_TOKEN_LENGTH",
    "TOKEN_PREFIX",
    "TokenError",
    "TokenTable",
    "hash_token",
    "load_tokens",
    "new_token",
    "parse_tokens",
    "token_line",
]

#: What :func:`new_token` tokens start with (so that a leaked one is recognisable).
TOKEN_PREFIX = "bct_"
#: Shorter tokens are refused: they could not hold enough randomness.
MIN_TOKEN_LENGTH = 32

_LINE = re.compile(r"sha256:([0-9a-f]{64})\s+(\S.*?)\s*")


class TokenError(InvalidArgument):
    """The token file is invalid; ``field`` names the file and line."""


def new_token() -> str:
    """A new token: ``bct_`` and 256 random bits, URL-safe base64 (47 characters)."""
    raw = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    return TOKEN_PREFIX + raw


def hash_token(token: str) -> str:
    """The hex SHA-256 of *token*, as the token file stores it."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_line(token: str, identity: str) -> str:
    """The token file line that maps *token* to *identity*."""
    return f"sha256:{hash_token(token)}  {identity}"


class TokenTable:
    """Token hashes -> identities.

    Looked up by the first 16 hex digits of a token's hash (timing can reveal at most
    those, of a hash of 256 random bits: nothing a guesser can use), then the whole
    hash is compared with :func:`hmac.compare_digest`.

    :param identities: hex SHA-256 -> identity
    :param source: the file it came from
    """

    __slots__ = ("_index", "identities", "source")

    def __init__(self, identities: Mapping[str, str] | None = None, source: str = "") -> None:
        self.identities: Mapping[str, str] = dict(identities or {})
        self.source = source
        self._index: dict[str, list[tuple[str, str]]] = {}
        for digest, identity in self.identities.items():
            self._index.setdefault(digest[:16], []).append((digest, identity))

    def identify(self, token: str) -> str | None:
        """The identity *token* stands for, or None."""
        if len(token) < MIN_TOKEN_LENGTH:
            return None
        digest = hash_token(token)
        found = None
        for stored, identity in self._index.get(digest[:16], ()):
            if hmac.compare_digest(stored, digest):
                found = identity
        return found

    def __len__(self) -> int:
        return len(self.identities)


def parse_tokens(text: str, source: str = "tokens") -> TokenTable:
    """Parse a token file's text.

    :raises TokenError: naming ``source:line``
    """
    identities: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}:{number}"
        match = _LINE.fullmatch(line)
        if match is None:
            raise TokenError(where, "expected 'sha256:<64 hex digits> IDENTITY' (a token's "
                             "hash, never the token; `broadcaster token` makes both)")
        digest, identity = match.groups()
        if identity in (LOCAL, ANONYMOUS, "*"):
            raise TokenError(where, f"identity {identity!r} is reserved (local: unix socket "
                             "peers without a token; anonymous: callers without "
                             "credentials; *: every identity in the policy)")
        if any(ord(c) < 32 or ord(c) == 127 for c in identity) or len(identity) > 1024:
            raise TokenError(where, "an identity must be 1 to 1024 printable characters")
        if digest in identities:
            raise TokenError(where, "this hash is already listed (a token maps to one "
                             "identity)")
        identities[digest] = identity
    return TokenTable(identities, source)


def load_tokens(path: str | Path) -> TokenTable:
    """Read the token file at *path*.

    :raises TokenError: naming the file and line
    :raises OSError: if it cannot be read
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TokenError(str(path), f"not UTF-8 text: {exc}") from None
    return parse_tokens(text, str(path))
