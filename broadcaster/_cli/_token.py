"""``broadcaster token``: make bearer tokens and the token-file lines that admit them.

::

    broadcaster token new kubelet --out kubelet.token >> /etc/broadcaster/tokens
    broadcaster token hash kubelet < kubelet.token

``new`` writes a new token (256 random bits) to ``--out`` (created with mode 0600; an
existing file is never overwritten) and prints the line for the server's token file:
its SHA-256 hash and the identity. The server never holds the token itself. Reload the
server (SIGHUP) or let it notice the file changed.
"""

from __future__ import annotations

import argparse
import os
import sys

from .._auth._tokens import MIN_TOKEN_LENGTH, TokenError, new_token, parse_tokens, token_line
from ..client import read_token

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "token", help="make a bearer token and its token-file line",
        description=__doc__.replace("``", ""), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    new = sub.add_parser("new", help="write a new token to a file, print its token-file line")
    new.add_argument("identity", help="the identity the token stands for")
    new.add_argument("--out", required=True, metavar="FILE",
                     help="file to write the token to (mode 0600; must not exist)")
    new.set_defaults(func=_new)
    hashed = sub.add_parser("hash", help="print the token-file line of an existing token")
    hashed.add_argument("identity", help="the identity the token stands for")
    hashed.add_argument("--token-file", metavar="FILE",
                        help="file holding the token (default: read it from stdin)")
    hashed.set_defaults(func=_hash)


def _line(token: str, identity: str) -> str:
    line = token_line(token, identity)
    parse_tokens(line + "\n", "identity")  # the server must accept what is printed
    return line


def _new(args: argparse.Namespace) -> int:
    token = new_token()
    try:
        line = _line(token, args.identity)
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except TokenError as exc:
        print(f"broadcaster token: {exc.message}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"broadcaster token: --out: cannot create {args.out!r}: {exc.strerror}",
              file=sys.stderr)
        return 1
    with os.fdopen(fd, "w") as file:
        file.write(token + "\n")
    print(line)
    return 0


def _hash(args: argparse.Namespace) -> int:
    try:
        token = read_token(args.token_file or "/dev/stdin")
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"a token has at least {MIN_TOKEN_LENGTH} characters (the "
                             "server refuses shorter ones)")
        print(_line(token, args.identity))
    except TokenError as exc:
        print(f"broadcaster token: {exc.message}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"broadcaster token: {exc}", file=sys.stderr)
        return 2
    return 0
