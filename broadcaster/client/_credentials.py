"""How a client proves who it is: TLS (the server's CA, optionally a client certificate
for mTLS) and bearer tokens."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from ._errors import InvalidArgumentError

__all__ = ["ClientTLS", "read_token"]


@dataclass(frozen=True, slots=True)
class ClientTLS:
    """TLS settings of a client (files in PEM).

    :ivar ca_file: CA certificates to verify the server with (None: the system's)
    :ivar cert_file: the client's certificate chain, for servers requiring one (mTLS)
    :ivar key_file: its private key
    :ivar server_name: the name to verify the server's certificate against, when it
        differs from the address's host
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise InvalidArgumentError("tls.key_file" if self.key_file is None
                                       else "tls.cert_file",
                                       "a client certificate and its key go together")

    def credentials(self) -> grpc.ChannelCredentials:
        """The channel credentials (the files are read now).

        :raises InvalidArgumentError: naming the file that cannot be read
        """
        return grpc.ssl_channel_credentials(
            _read(self.ca_file, "tls.ca_file"), _read(self.key_file, "tls.key_file"),
            _read(self.cert_file, "tls.cert_file"))

    def options(self) -> list[tuple[str, str]]:
        if self.server_name is None:
            return []
        return [("grpc.ssl_target_name_override", self.server_name)]


def _read(path: str | None, field: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InvalidArgumentError(field, f"cannot read {path!r}: {exc.strerror}") from None


def read_token(path: str | Path) -> str:
    """The bearer token in the file at *path* (its first non-empty line; keep the file
    readable by its owner only).

    :raises InvalidArgumentError: naming ``token_file`` if it cannot be read or is empty
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgumentError("token_file", f"cannot read {str(path)!r}: {exc}") from None
    token = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not token:
        raise InvalidArgumentError("token_file", f"{str(path)!r} holds no token")
    if any(c.isspace() for c in token):
        raise InvalidArgumentError("token_file", f"{str(path)!r}: a token has no spaces")
    return token
