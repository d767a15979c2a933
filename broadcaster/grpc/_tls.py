"""TLS server credentials whose certificate, key and client CA are reloaded when their
files change, without a restart.

gRPC asks each listener's credentials at every new TLS handshake (from its own
threads): it compares the files' signatures (device, inode, size, modification time)
with those of the configuration in force, and only when they changed loads and checks
the new files (the key must match the certificate; the CA file must hold
certificates). A configuration that fails the check is refused: the one in force
stays, the error is logged once per version of the files. Connections already open keep
the certificate they were made with.
"""

from __future__ import annotations

import logging
import ssl
import threading

import grpc

from .. import InvalidArgument
from .._auth._reload import file_signature

__all__ = ["CertificateError", "ServerCertificates"]

logger = logging.getLogger("broadcaster.security")


class CertificateError(InvalidArgument):
    """A certificate, key or CA file cannot be used; ``field`` names the setting."""


class _Loaded:
    __slots__ = ("ca", "cert", "key", "signatures")

    def __init__(self, cert: bytes, key: bytes, ca: bytes | None,
                 signatures: tuple[object, ...]) -> None:
        self.cert = cert
        self.key = key
        self.ca = ca
        self.signatures = signatures


class ServerCertificates:
    """The server's certificate files, shared by every TLS listener.

    :param cert_file: certificate chain, PEM
    :param key_file: private key, PEM
    :param client_ca_file: CA certificates client certificates are verified against
        (PEM), or None when no listener asks for client certificates
    :raises CertificateError: if the files cannot be used at start
    """

    def __init__(self, cert_file: str, key_file: str, client_ca_file: str | None = None) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.client_ca_file = client_ca_file
        self._lock = threading.Lock()
        self._current = self._load()
        self._refused: tuple[object, ...] | None = None
        #: successful reloads, and changes refused
        self.reloads = 0
        self.failures = 0

    def _paths(self) -> list[str]:
        return [p for p in (self.cert_file, self.key_file, self.client_ca_file) if p]

    def _signatures(self) -> tuple[object, ...]:
        return tuple(file_signature(path) for path in self._paths())

    def _load(self) -> _Loaded:
        """Read and check the files; consistent with one version of each (re-read if
        one changed meanwhile).

        :raises CertificateError: naming the file at fault
        """
        for _ in range(3):
            before = self._signatures()
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            try:
                context.load_cert_chain(self.cert_file, self.key_file)
            except (OSError, ssl.SSLError) as exc:
                raise CertificateError(
                    "tls_cert_file", f"{self.cert_file!r} and {self.key_file!r} are not a "
                    f"PEM certificate chain and its private key: {exc}") from None
            if self.client_ca_file is not None:
                try:
                    context.load_verify_locations(cafile=self.client_ca_file)
                except (OSError, ssl.SSLError) as exc:
                    raise CertificateError(
                        "tls_client_ca_file", f"{self.client_ca_file!r} is not a file of PEM "
                        f"CA certificates: {exc}") from None
            contents = [_read(path) for path in self._paths()]
            if self._signatures() == before:
                cert, key = contents[0], contents[1]
                ca = contents[2] if self.client_ca_file is not None else None
                return _Loaded(cert, key, ca, before)
        raise CertificateError("tls_cert_file", "the certificate files kept changing while "
                               "they were read")

    def _configuration(self, loaded: _Loaded) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(loaded.key, loaded.cert)], root_certificates=loaded.ca)

    def credentials(self, *, client_certificates: bool) -> grpc.ServerCredentials:
        """Credentials of one kind of TLS listener.

        :param client_certificates: require and verify client certificates (mTLS)
        """
        with self._lock:
            initial = self._configuration(self._current)
            given = [self._current]  # what these credentials use

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            current = self.check()
            with self._lock:
                if current is given[0]:
                    return None
                given[0] = current
                return self._configuration(current)

        return grpc.dynamic_ssl_server_credentials(  # the stubs miss that None means "keep"
            initial, fetch, require_client_authentication=client_certificates)  # type: ignore[arg-type]

    def check(self) -> _Loaded:
        """Reload the files if they changed (and are good); return what is in force.
        gRPC calls it at each handshake, from its threads."""
        signatures = self._signatures()
        with self._lock:
            if signatures == self._current.signatures or signatures == self._refused:
                return self._current
            try:
                loaded = self._load()
            except CertificateError as exc:
                self.failures += 1
                self._refused = signatures
                logger.error("certificate files refused, the previous ones stay in force "
                             "error=%r", str(exc))
                return self._current
            self._current = loaded
            self._refused = None
            self.reloads += 1
            logger.info("certificate files reloaded cert=%s client_ca=%s", self.cert_file,
                        self.client_ca_file)
            return loaded


def _read(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()
