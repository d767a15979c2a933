"""How the client commands prove who they are: TLS and token options."""

from __future__ import annotations

import argparse
import os
from typing import Any, NamedTuple

import grpc

from ..client import ClientTLS, grpc_target, read_token

__all__ = ["add_tls_arguments", "channel", "client_options"]


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    """The TLS and token options every client command takes."""
    group = parser.add_argument_group("TLS and authentication (docs/security.md)")
    group.add_argument("--tls", action="store_true",
                       help="connect with TLS, verifying the server with the system's CAs "
                       "(implied by the other --tls-* options)")
    group.add_argument("--tls-ca", metavar="FILE",
                       help="CA certificates (PEM) to verify the server's certificate with")
    group.add_argument("--tls-cert", metavar="FILE",
                       help="client certificate (PEM), for servers requiring one (mTLS)")
    group.add_argument("--tls-key", metavar="FILE", help="its private key (PEM)")
    group.add_argument("--tls-server-name", metavar="NAME",
                       help="name to verify the server's certificate against, when it is "
                       "not the address's host")
    group.add_argument(
        "--token-file", metavar="FILE", default=os.environ.get("BROADCASTER_TOKEN_FILE"),
        help="file holding a bearer token sent with every call (default: "
        "$BROADCASTER_TOKEN_FILE)")


def _tls(args: argparse.Namespace) -> ClientTLS | None:
    if not (args.tls or args.tls_ca or args.tls_cert or args.tls_key or args.tls_server_name):
        return None
    return ClientTLS(ca_file=args.tls_ca, cert_file=args.tls_cert, key_file=args.tls_key,
                     server_name=args.tls_server_name)


def client_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of :class:`broadcaster.client.Client` for these options.

    :raises InvalidArgumentError: naming the option's file that cannot be read
    """
    options: dict[str, Any] = {"tls": _tls(args)}
    if args.token_file:
        options["token"] = read_token(args.token_file)
    return options


class _Details(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


class _Token(grpc.UnaryUnaryClientInterceptor):
    """Adds ``authorization: Bearer <token>`` to every unary call."""

    def __init__(self, token: str) -> None:
        self._metadata = ("authorization", f"Bearer {token}")

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        metadata = [*(details.metadata or ()), self._metadata]
        return continuation(_Details(
            details.method, details.timeout, metadata, details.credentials,
            details.wait_for_ready, details.compression), request)


def channel(args: argparse.Namespace, options: list[tuple[str, Any]]) -> grpc.Channel:
    """A synchronous channel to ``--address`` with the TLS and token options (the token
    is sent with every unary call).

    :raises InvalidArgumentError: for a file that cannot be read
    :raises ValueError: for an empty address
    """
    target = grpc_target(args.address)
    tls = _tls(args)
    if tls is None:
        plain = grpc.insecure_channel(target, options=options)
    else:
        plain = grpc.secure_channel(target, tls.credentials(), options=[*options, *tls.options()])
    if not args.token_file:
        return plain
    return grpc.intercept_channel(plain, _Token(read_token(args.token_file)))
