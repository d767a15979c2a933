"""`broadcaster token`: a new token goes to a 0600 file, never overwriting one; the line
printed is what the server's token file accepts, and maps the token to the identity."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

from broadcaster._auth import parse_tokens


def cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "broadcaster._cli", "token", *args],
                          input=stdin, capture_output=True, timeout=60, check=False)


def test_new_token_and_its_line(tmp_path: Path) -> None:
    out = tmp_path / "kubelet.token"
    result = cli("new", "kubelet", "--out", str(out))
    assert result.returncode == 0, result.stderr
    token = out.read_text().strip()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    table = parse_tokens(result.stdout.decode())
    assert table.identify(token) == "kubelet"
    assert token.encode() not in result.stdout
    # the same line from the token
    again = cli("hash", "kubelet", stdin=out.read_bytes())
    assert again.stdout == result.stdout
    # never overwrites
    refused = cli("new", "other", "--out", str(out))
    assert refused.returncode == 1 and b"File exists" in refused.stderr
    assert out.read_text().strip() == token


def test_reserved_identities_and_short_tokens_are_refused(tmp_path: Path) -> None:
    result = cli("new", "local", "--out", str(tmp_path / "t"))
    assert result.returncode == 2 and b"identity 'local' is reserved" in result.stderr
    assert not (tmp_path / "t").exists()
    result = cli("hash", "x", stdin=b"short\n")
    assert result.returncode == 2 and b"at least 32 characters" in result.stderr
