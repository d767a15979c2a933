"""Certificates for tests, made with trustme: a CA, server and client certificates
(client identities as DNS names, common names or SPIFFE URIs), written to files."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Pair:
    """A certificate (chain) and its key, as PEM bytes and as files."""

    cert: bytes
    key: bytes
    cert_file: Path
    key_file: Path


def write_pair(directory: Path, name: str, cert: bytes, key: bytes) -> Pair:
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / f"{name}.crt", directory / f"{name}.key"
    cert_file.write_bytes(cert)
    key_file.write_bytes(key)
    return Pair(cert, key, cert_file, key_file)


class Authority:
    """A test CA whose certificate is also written to ``<directory>/<name>-ca.pem``."""

    def __init__(self, directory: Path, name: str = "ca") -> None:
        self.ca = trustme.CA()
        self.directory = directory
        self.name = name
        directory.mkdir(parents=True, exist_ok=True)
        self.ca_file = directory / f"{name}-ca.pem"
        self.ca_file.write_bytes(self.ca.cert_pem.bytes())

    @property
    def ca_pem(self) -> bytes:
        return self.ca.cert_pem.bytes()

    def server(self, name: str = "server") -> Pair:
        """A server certificate for 127.0.0.1, ::1 and localhost."""
        leaf = self.ca.issue_cert("127.0.0.1", "::1", "localhost")
        chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
        return write_pair(self.directory, f"{self.name}-{name}", chain,
                          leaf.private_key_pem.bytes())

    def client(self, *dns_names: str, common_name: str | None = None,
               name: str = "client") -> Pair:
        leaf = self.ca.issue_cert(*dns_names, common_name=common_name)
        return write_pair(self.directory, f"{self.name}-{name}",
                          leaf.cert_chain_pems[0].bytes(), leaf.private_key_pem.bytes())

    def spiffe_client(self, uri: str, name: str = "spiffe") -> Pair:
        """A client certificate whose only SAN is the URI *uri* (trustme makes none)."""
        ca_key = serialization.load_pem_private_key(self.ca.private_key_pem.bytes(), None)
        ca_cert = x509.load_pem_x509_certificate(self.ca_pem)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "workload")]))
                .issuer_name(ca_cert.subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(uri)]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return write_pair(self.directory, f"{self.name}-{name}",
                          cert.public_bytes(serialization.Encoding.PEM), key_pem)
